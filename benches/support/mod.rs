//! What the benches that run the real binary share: free ports, and a
//! gateway process that is stopped when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The gateway process, and its temp dir (kept until the process is gone).
pub struct Running(Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Write `yaml` to `dir`, start `kikaku-edge serve` on it, and wait until
/// every port of `ready` accepts connections.
pub fn start_gateway(dir: tempfile::TempDir, yaml: &str, ready: &[u16]) -> Running {
    let cfg = dir.path().join("bench.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_kikaku-edge"))
        .args(["serve", "-c"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline
        && ready
            .iter()
            .any(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_err())
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    Running(child, dir)
}
