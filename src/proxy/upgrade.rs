//! SIGUSR2: upgrade to the binary now on disk without dropping a
//! connection, as nginx does on USR2.
//!
//! The running process starts its own executable's path again with
//! `serve -u` (and `-d` when it is a daemon), which waits for the listening
//! sockets on the upgrade socket; then it sends itself SIGQUIT, Pingora's
//! graceful hand-over: the sockets go to the new process and this one
//! drains and exits. The new process is this one's child, so it stays in
//! the same service (systemd follows it through the pid file). A new
//! process that exits at once (a config that no longer loads, a binary that
//! does not start) cancels the upgrade: this one keeps serving.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

/// How long the new process must stay up before the sockets go to it.
const SETTLE: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Upgrader {
    /// The executable's path as started (`/proc/self/exe` names a replaced
    /// binary "(deleted)"; the path names the new one).
    pub exe: PathBuf,
    /// The config file, absolute (a daemon runs in `/`).
    pub config: PathBuf,
    pub daemon: bool,
}

impl Upgrader {
    /// For this process: its executable and config as given at start.
    pub fn here(config: &std::path::Path, daemon: bool) -> Option<Upgrader> {
        let exe = std::env::current_exe().ok()?;
        let config = std::path::absolute(config).ok()?;
        Some(Upgrader {
            exe,
            config,
            daemon,
        })
    }

    fn upgrade(&self) {
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.arg("serve").arg("-u");
        if self.daemon {
            cmd.arg("-d");
        }
        cmd.arg("-c").arg(&self.config);
        log::info!("SIGUSR2: starting {} to take over", self.exe.display());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                log::error!(
                    "upgrade cancelled: cannot start {}: {e}",
                    self.exe.display()
                );
                return;
            }
        };
        std::thread::sleep(SETTLE);
        match child.try_wait() {
            Ok(None) => {
                log::info!(
                    "upgrade: process {} is waiting for the sockets; handing over",
                    child.id()
                );
                // Reap it if it ends while this process still drains.
                std::thread::spawn(move || child.wait());
                // SAFETY: kill(2) on our own pid with a valid signal.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGQUIT);
                }
            }
            Ok(Some(status)) => {
                log::error!("upgrade cancelled: the new process exited ({status}); still serving")
            }
            Err(e) => log::error!("upgrade cancelled: {e}; still serving"),
        }
    }
}

#[async_trait]
impl BackgroundService for Upgrader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut usr2 = match signal(SignalKind::user_defined2()) {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot listen for SIGUSR2: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = usr2.recv() => {
                    let me = self.clone();
                    if let Err(e) = tokio::task::spawn_blocking(move || me.upgrade()).await {
                        log::error!("upgrade task failed: {e}");
                    }
                }
            }
        }
    }
}
