//! Hot reload: the holder of the serving snapshot, and the watcher that
//! reloads on SIGHUP and when the file's content, or a listener's
//! certificate or key file, changes.
//!
//! A reload parses and compiles a whole new snapshot off the request path and
//! swaps it in atomically; requests in flight keep the snapshot they started
//! with. A bad file is rejected, logged and counted, and the old snapshot
//! keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::state::StateStore;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use kikaku_filters::{StateError, StoredKeys};

/// How long a stored key (or its absence) may be served from cache: the
/// bound on how long a suspension takes to reach every instance.
pub const STORED_KEY_TTL: Duration = Duration::from_millis(500);
use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::{load_str, ConfigError, ConfigErrors};
use crate::proxy::metrics::{CONFIG_GENERATION, RELOADS};
use crate::proxy::snapshot::Snapshot;
use crate::tls::{file_stamps, FileStamp};

pub struct ConfigHolder {
    path: PathBuf,
    current: ArcSwap<Snapshot>,
    state: Arc<dyn StateStore>,
    /// Keys in the state store, cached for `STORED_KEY_TTL`; shared by every snapshot.
    stored_keys: Arc<StoredKeys>,
    /// Serialises reloads; holds the text of the last file tried and the
    /// stamps of the certificate files it read.
    last_tried: Mutex<(String, Vec<FileStamp>)>,
}

impl ConfigHolder {
    /// Load and compile the file for the first start.
    pub fn open(
        path: &Path,
        state_for: impl FnOnce(&crate::config::Config) -> Result<Arc<dyn StateStore>, StateError>,
    ) -> Result<ConfigHolder, ConfigErrors> {
        let text = read(path)?;
        let config = load_str(&text, &env_lookup)?;
        let state = state_for(&config)
            .map_err(|e| ConfigErrors(vec![ConfigError::new("state", e.to_string())]))?;
        let stored_keys = Arc::new(StoredKeys::new(state.clone(), STORED_KEY_TTL));
        let snapshot_config = config.clone();
        let snapshot =
            Snapshot::compile(config, state.clone(), Some(stored_keys.clone()), None, 1)?;
        CONFIG_GENERATION.set(1);
        Ok(ConfigHolder {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(snapshot),
            state,
            stored_keys,
            last_tried: Mutex::new((text, file_stamps(&snapshot_config))),
        })
    }

    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn state(&self) -> &Arc<dyn StateStore> {
        &self.state
    }

    /// Re-read the file (and the certificate files) and swap in a new
    /// snapshot when it is valid. `only_if_changed`: skip when the text and
    /// the certificate files' stamps equal the last ones tried.
    /// Blocking (file read, name resolution): call from a blocking context.
    pub fn reload(&self, only_if_changed: bool) -> Option<Result<u64, ConfigErrors>> {
        let mut last = self.last_tried.lock();
        let text = match read(&self.path) {
            Ok(t) => t,
            Err(e) => return Some(self.rejected(e)),
        };
        let stamps = file_stamps(&self.current().config);
        if only_if_changed && text == last.0 && stamps == last.1 {
            return None;
        }
        *last = (text.clone(), stamps);
        let result = load_str(&text, &env_lookup).and_then(|config| {
            let old = self.current();
            warn_fixed_settings(&old.config, &config);
            Snapshot::compile(
                config,
                self.state.clone(),
                Some(self.stored_keys.clone()),
                Some(&old),
                old.generation + 1,
            )
        });
        Some(match result {
            Ok(snapshot) => {
                let generation = snapshot.generation;
                self.current.store(Arc::new(snapshot));
                RELOADS.with_label_values(&["ok"]).inc();
                CONFIG_GENERATION.set(generation as i64);
                log::info!(
                    "config reloaded from {}: generation {generation}",
                    self.path.display()
                );
                Ok(generation)
            }
            Err(e) => self.rejected(e),
        })
    }

    fn rejected(&self, e: ConfigErrors) -> Result<u64, ConfigErrors> {
        RELOADS.with_label_values(&["error"]).inc();
        log::error!(
            "config reload rejected, still serving generation {}:\n{e}",
            self.current().generation
        );
        Err(e)
    }
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn read(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::new(
            "",
            format!("cannot read {}: {e}", path.display()),
        )])
    })
}

/// Listeners, threads, data dir and state backend are bound at start.
fn warn_fixed_settings(old: &crate::config::Config, new: &crate::config::Config) {
    // Certificate and key files reload; the rest of a listener is bound.
    let bound = |l: &crate::config::ListenerConfig| {
        let tls = l.tls.as_ref();
        (
            l.address.clone(),
            l.h2c,
            tls.map(|t| (t.http2, t.client_ca_file.clone())),
        )
    };
    if bound(&old.listeners.public) != bound(&new.listeners.public)
        || old.listeners.admin.as_ref().map(bound) != new.listeners.admin.as_ref().map(bound)
    {
        log::warn!(
            "listener address, TLS on/off, http2, h2c or client_ca_file changed: they take effect at the next start or upgrade (-u)"
        );
    }
    if old.state != new.state || old.data_dir != new.data_dir {
        log::warn!("state/data_dir changed: they take effect at the next start");
    }
    if old.server.threads != new.server.threads
        || old.server.reuse_port != new.server.reuse_port
        || old.server.work_stealing != new.server.work_stealing
        || old.server.ca_file != new.server.ca_file
    {
        log::warn!(
            "server.threads/reuse_port/work_stealing/ca_file changed: they take effect at the next start"
        );
    }
}

/// Reloads on SIGHUP and on file change.
pub struct Watcher {
    pub holder: Arc<ConfigHolder>,
}

#[async_trait]
impl BackgroundService for Watcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                log::error!("cannot listen for SIGHUP: {e}");
                None
            }
        };
        let watch_ms = self.holder.current().config.server.watch_interval_ms;
        let mut tick = tokio::time::interval(Duration::from_millis(watch_ms.max(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    log::info!("SIGHUP: reloading config");
                    self.reload(false).await;
                }
                _ = tick.tick(), if watch_ms > 0 => self.reload(true).await,
            }
        }
    }
}

impl Watcher {
    async fn reload(&self, only_if_changed: bool) {
        let holder = self.holder.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || holder.reload(only_if_changed)).await {
            log::error!("config reload task failed: {e}");
        }
    }
}
