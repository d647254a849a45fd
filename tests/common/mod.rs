//! Test harness: start the real `kikaku-edge` binary on free ports with a
//! generated config, and a real HTTP upstream (hyper) in the test process.
#![allow(dead_code)]

pub mod admin;
pub mod flaky;
pub mod images;
pub mod redis;
pub mod s3;
pub mod tls;
pub mod uploads;
pub mod upstream;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const IMAGE_KEY: &str = "kikaku_test_image_key";
pub const STORAGE_KEY: &str = "kikaku_s3_test_storage_key";
pub const SUSPENDED_KEY: &str = "kikaku_test_suspended";
pub const EXPIRED_KEY: &str = "kikaku_test_expired";

/// A test tool run as the project installs it (`scripts/test-prereqs.sh`):
/// `python3` is the venv's (`.venv/`), and the venv's `bin` (the AWS CLI)
/// comes first on the child's PATH, so scripts and snippets that call
/// `python3` or `aws` get the pinned tools, never the machine's.
pub fn tool(program: &str) -> Command {
    let venv_bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin");
    assert!(
        venv_bin.join("python3").exists(),
        "{} is missing: run ./scripts/test-prereqs.sh (make test does)",
        venv_bin.display()
    );
    let path = match std::env::var_os("PATH") {
        Some(p) => {
            std::env::join_paths(std::iter::once(venv_bin.clone()).chain(std::env::split_paths(&p)))
                .expect("PATH entries without ':'")
        }
        None => venv_bin.clone().into_os_string(),
    };
    let mut cmd = match program {
        "python3" => Command::new(venv_bin.join("python3")),
        other => Command::new(other),
    };
    cmd.env("PATH", path).env_remove("PYTHONHOME");
    cmd
}

/// The project's pinned AWS CLI with this credential and no config files:
/// `aws --endpoint-url <endpoint> --region us-east-1 <args>`.
pub fn aws(endpoint: &str, id: &str, secret: &str, args: &[&str]) -> std::process::Output {
    tool("aws")
        .args(["--endpoint-url", endpoint, "--region", "us-east-1"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap()
}

/// A port nothing listens on now, never handed out before in this test
/// process: tests of one binary run in parallel, and two gateways given the
/// same port would meet on it (the public listener's `SO_REUSEPORT` shares
/// it silently; Pingora retries a refused bind for 30 s while the other
/// gateway answers in its place).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// Listening TCP sockets (any process), from /proc/net/tcp{,6}: each
/// socket's local port and inode.
pub fn listening_sockets() -> Vec<(u16, u64)> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| {
            t.lines()
                .skip(1)
                .filter_map(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    if cols.len() < 10 || cols[3] != "0A" {
                        return None;
                    }
                    let port = u16::from_str_radix(cols[1].rsplit(':').next()?, 16).ok()?;
                    Some((port, cols[9].parse().ok()?))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Whether process `pid` holds a listening socket on `port`.
pub fn listens(pid: u32, port: u16) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let inodes: std::collections::HashSet<u64> = fds
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect();
    listening_sockets()
        .iter()
        .any(|(p, inode)| *p == port && inodes.contains(inode))
}

/// Start a server on a free port (`start` spawns it on the port given) and
/// wait until that very process listens there. Should the child exit first
/// (another process took the port between `free_port` and its bind), it is
/// tried again on another port.
pub fn spawn_listening(mut start: impl FnMut(u16) -> Child) -> (Child, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut child = start(port);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if listens(child.id(), port) {
                return (child, port);
            }
            if matches!(child.try_wait(), Ok(Some(_))) || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("no server came up on a free port in 5 tries");
}

/// The keys every test config carries.
pub fn test_keys() -> String {
    format!(
        r#"keys:
  - {{key: {IMAGE_KEY}, owner: Image Tester, email: i@example.com, quota: 100}}
  - {{key: {STORAGE_KEY}, owner: Storage Tester, quota: 1GiB}}
  - {{key: {SUSPENDED_KEY}, owner: Paused, status: suspended}}
  - {{key: {EXPIRED_KEY}, owner: Old, expires_at: "2020-01-01"}}
  - {{key: kikaku_test_fast, owner: Fast, rate_limit_per_minute: 100000}}
"#
    )
}

pub struct Gateway {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub public: u16,
    pub admin: u16,
    pub config_path: PathBuf,
}

impl Gateway {
    /// Write the config (with `{PUBLIC}`, `{ADMIN}` and `{DATA}` filled in)
    /// and start the gateway on it.
    pub fn start(body: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, body, free_port(), free_port())
    }

    /// Start on a config file as shipped, steering it only through the
    /// environment variables it reads.
    pub fn start_file(config: &Path, env: &[(&str, String)], public: u16, admin: u16) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let child = spawn_with(config, dir.path(), env);
        let mut gw = Gateway {
            child,
            dir,
            public,
            admin,
            config_path: config.to_path_buf(),
        };
        gw.wait_ready();
        gw
    }

    pub fn start_in(dir: tempfile::TempDir, body: &str, public: u16, admin: u16) -> Gateway {
        let config_path = dir.path().join("kikaku.yaml");
        std::fs::write(&config_path, fill(body, public, admin, dir.path())).unwrap();
        let child = spawn(&config_path, dir.path());
        let mut gw = Gateway {
            child,
            dir,
            public,
            admin,
            config_path,
        };
        gw.wait_ready();
        gw
    }

    /// A config with the standard listener/data section followed by `rest`.
    pub fn with(rest: &str) -> Gateway {
        Gateway::start(&format!("{}{rest}", header()))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.public)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("gateway exited early ({status}):\n{}", self.stderr());
            }
            // Ours, not another test's gateway on a port it was also given.
            if listens(self.pid(), self.admin)
                && listens(self.pid(), self.public)
                && (self.admin_tls() || http_get_status(self.admin, "/healthz") == Some(200))
                && std::net::TcpStream::connect(("127.0.0.1", self.public)).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gateway did not become ready:\n{}", self.stderr());
    }

    /// Whether the config's admin listener speaks TLS (plain-text
    /// readiness probes cannot reach it then).
    fn admin_tls(&self) -> bool {
        std::fs::read_to_string(&self.config_path)
            .ok()
            .and_then(|t| serde_yaml::from_str::<serde_yaml::Value>(&t).ok())
            .is_some_and(|v| !v["listeners"]["admin"]["tls"].is_null())
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// Replace the config file (placeholders filled as at start).
    pub fn write_config(&self, body: &str) {
        let text = fill(body, self.public, self.admin, self.dir.path());
        // Write then rename, as editors and config managers do.
        let tmp = self.dir.path().join("kikaku.yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config_path).unwrap();
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// `kill -9` (unless already dead), then start again on the same dir,
    /// ports and config.
    pub fn kill9_and_restart(mut self) -> Gateway {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let child = spawn(&self.config_path, self.dir.path());
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let mut gw = Gateway {
            child,
            dir,
            public: self.public,
            admin: self.admin,
            config_path: self.config_path.clone(),
        };
        wait_port_free_or_ready(&mut gw);
        gw
    }

    /// Peak resident memory (VmHWM) of the gateway process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    pub fn metrics(&self) -> String {
        let mut s = String::new();
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.admin)).unwrap();
        use std::io::Write;
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        stream.read_to_string(&mut s).unwrap();
        s
    }

    /// The value of one metric line (`name{labels}`), 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

impl Gateway {
    /// Poll a metric until it equals `want` (metrics are recorded in the
    /// logging phase, just after the client has its answer); returns the
    /// last value seen, so `assert_eq!` shows it on timeout.
    pub fn wait_metric(&self, series: &str, want: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.metric(series);
            if v == want || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn wait_port_free_or_ready(gw: &mut Gateway) {
    gw.wait_ready();
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(config: &Path, dir: &Path) -> Child {
    spawn_with(config, dir, &[])
}

fn spawn_with(config: &Path, dir: &Path, env: &[(&str, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kikaku-edge"))
        .args(["serve", "-c"])
        .arg(config)
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("stdout.log"))
                .unwrap(),
        )
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("stderr.log"))
                .unwrap(),
        )
        .spawn()
        .expect("start kikaku-edge")
}

fn fill(body: &str, public: u16, admin: u16, dir: &Path) -> String {
    body.replace("{PUBLIC}", &public.to_string())
        .replace("{ADMIN}", &admin.to_string())
        .replace("{DATA}", &dir.join("data").to_string_lossy())
}

/// Listeners and data dir with placeholders; access log to stdout.
pub fn header() -> String {
    "listeners:\n  public: {address: '127.0.0.1:{PUBLIC}'}\n  admin: {address: '127.0.0.1:{ADMIN}'}\ndata_dir: '{DATA}'\nserver: {threads: 2, watch_interval_ms: 200}\n".to_string()
}

/// A route with the standard auth chain in front of `target`
/// (`upstream: x` or `handler: {...}`).
pub fn authed_route(name: &str, prefix: &str, key_type: &str, target: &str) -> String {
    format!(
        "  - name: {name}\n    match: {{path_prefix: {prefix}}}\n    filters:\n      - request_id: {{}}\n      - key_auth: {{}}\n      - key_type: {{require: {key_type}}}\n      - rate_limit: {{}}\n    {target}\n"
    )
}

/// Minimal blocking GET for readiness polling (no client runtime needed).
pub fn http_get_status(port: u16, path: &str) -> Option<u16> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).ok()?;
    std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// The seed's eight curl examples (seed 000), with how many images each yields.
pub fn seed_examples() -> Vec<(serde_json::Value, usize)> {
    use serde_json::json;
    vec![
        (
            json!({"model":"seedream-4.5","prompt":"Vibrant close-up editorial portrait, model with piercing gaze, wearing a sculptural hat","size":"2K","response_format":"url","watermark":false}),
            1,
        ),
        (
            json!({"model":"seedream-4.5","prompt":"Keep the model pose unchanged. Change the clothing material from silver metal to clear water.","image":"https://example.com/my-photo.jpg","size":"2K","watermark":false}),
            1,
        ),
        (
            json!({"model":"seedream-4.5","prompt":"Replace the clothing in image 1 with the outfit from image 2.","image":["https://example.com/model-photo.jpg","https://example.com/outfit-photo.jpg"],"size":"2K","sequential_image_generation":"disabled","watermark":false}),
            1,
        ),
        (
            json!({"model":"seedream-4.5","prompt":"Generate 4 illustrations of the same courtyard across seasons","size":"2K","sequential_image_generation":"auto","sequential_image_generation_options":{"max_images":4},"watermark":false}),
            4,
        ),
        (
            json!({"model":"seedream-4.5","prompt":"Using this LOGO as reference, create a visual design system for GREEN","image":"https://example.com/my-logo.png","size":"2K","sequential_image_generation":"auto","sequential_image_generation_options":{"max_images":4},"watermark":false}),
            4,
        ),
        (
            json!({"model":"seedream-4.5","prompt":"Generate 3 images of a girl and a cow plushie riding a roller coaster","image":["https://example.com/girl-character.png","https://example.com/cow-plushie.png"],"sequential_image_generation":"auto","sequential_image_generation_options":{"max_images":3},"size":"2K","watermark":false}),
            3,
        ),
        (
            json!({"model":"seedream-4.0","prompt":"Generate 4 coherent illustrations of a courtyard across four seasons","size":"2K","sequential_image_generation":"auto","sequential_image_generation_options":{"max_images":4},"optimize_prompt_options":{"mode":"fast"},"watermark":false}),
            4,
        ),
        (
            json!({"model":"seedream-4.5","prompt":"A cute cat in different poses: sitting, jumping, sleeping","n":3,"size":"2K","watermark":false}),
            3,
        ),
    ]
}

/// Wait (up to 5 s) until something listens on `port`: the in-process
/// simulator starts beside the gateway's listeners.
pub fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// GET `url` with `key` as bearer, as JSON.
pub async fn get_json(url: &str, key: &str) -> serde_json::Value {
    client()
        .get(url)
        .header("authorization", bearer(key))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The JSON at `url` (GET, no key), whatever the status.
pub async fn json_at(url: &str) -> serde_json::Value {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The body at `url` (GET, no key).
pub async fn get_bytes(url: &str) -> bytes::Bytes {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
}

/// Download a JPEG and read its dimensions from the header.
pub async fn jpeg_dimensions(url: &str) -> (usize, usize) {
    let dim = imagesize::blob_size(&get_bytes(url).await).unwrap();
    (dim.width, dim.height)
}

/// A config file of `conf/` as shipped, on free ports, with its data in a
/// temporary directory; returns the gateway, the simulator's port, and the
/// data directory (keep it alive with the gateway).
pub fn start_shipped(name: &str) -> (Gateway, u16, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let (gw, sim, _) = start_shipped_on(name, data.path());
    (gw, sim, data)
}

/// `start_shipped` on a data directory of the caller's (to start again on
/// the same data); returns the gateway, the simulator's port and the
/// embedded S3 backend's port.
pub fn start_shipped_on(name: &str, data: &Path) -> (Gateway, u16, u16) {
    start_shipped_with(name, data, &[])
}

/// `start_shipped_on` with more environment (e.g. `KIKAKU_REDIS_URL` for
/// `conf/redis.example.yaml`).
pub fn start_shipped_with(
    name: &str,
    data: &Path,
    extra: &[(&str, String)],
) -> (Gateway, u16, u16) {
    let (public, admin, sim, s3) = (free_port(), free_port(), free_port(), free_port());
    let mut env = vec![
        ("KIKAKU_HTTP_ADDR", format!("127.0.0.1:{public}")),
        ("KIKAKU_ADMIN_ADDR", format!("127.0.0.1:{admin}")),
        ("KIKAKU_SIM_ARK_ADDR", format!("127.0.0.1:{sim}")),
        ("KIKAKU_S3_EMBEDDED_ADDR", format!("127.0.0.1:{s3}")),
        ("KIKAKU_DATA_DIR", data.display().to_string()),
        ("KIKAKU_ACCESS_LOG", "off".into()),
    ];
    env.extend(extra.iter().cloned());
    let gw = Gateway::start_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(name),
        &env,
        public,
        admin,
    );
    wait_for_port(sim);
    wait_for_port(s3);
    (gw, sim, s3)
}

/// The status `GET /probe` answers with this key (the test configs route
/// `/probe` through key_auth to a not_implemented handler: 501 admitted).
pub async fn probe(gw: &Gateway, key: &str) -> u16 {
    client()
        .get(gw.url("/probe"))
        .header("authorization", bearer(key))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Time until every gateway answers `want` for `key` at `/probe` (at most 5 s).
pub async fn until_all(
    gws: &[std::sync::Arc<Gateway>],
    key: &str,
    want: u16,
) -> std::time::Duration {
    let start = std::time::Instant::now();
    for gw in gws {
        while probe(gw, key).await != want {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(5),
                "never {want}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    start.elapsed()
}
