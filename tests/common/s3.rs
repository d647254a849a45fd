//! A gateway with storage behind HTTPS, three tenants, and either backend:
//! the embedded s3s-fs or moto's server (a second, independent S3). The
//! client scenarios themselves live in `tests/s3/scenarios.py`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{free_port, wait_for_port, Gateway};

pub const BACKEND_ID: &str = "kikaku-test-backend";
pub const BACKEND_SECRET: &str = "kikaku-test-backend-secret";

/// The tenants: (name, key, access key id, secret, bucket, quota).
pub const TENANTS: &[(&str, &str, &str, &str, &str, &str)] = &[
    (
        "A",
        "kikaku_s3_tenant_alpha",
        "TENANTAACCESSKEY0001",
        "tenant-a-secret-key-00000000000000000000",
        "alpha",
        "2GiB",
    ),
    (
        "B",
        "kikaku_s3_tenant_beta",
        "TENANTBACCESSKEY0002",
        "tenant-b-secret-key-00000000000000000000",
        "beta",
        "1GiB",
    ),
    (
        "Q",
        "kikaku_s3_tenant_quota",
        "TENANTQACCESSKEY0003",
        "tenant-q-secret-key-00000000000000000000",
        "gamma",
        "10MiB",
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Moto,
    /// An S3 server someone else runs (several gateways sharing one).
    External(u16),
}

/// moto's S3 server on a free port, stopped when dropped. Started through
/// `tests/s3/moto_server.py`, which fixes a race in moto's own GET first.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let child = super::tool("python3")
            .args([
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/s3/moto_server.py"),
                "-p",
                &port.to_string(),
                "-H",
                "127.0.0.1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tests/s3/moto_server.py on the project's venv (scripts/test-prereqs.sh)");
        wait_for_port(port);
        Moto { child, port }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct StorageGateway {
    pub gw: Gateway,
    pub backend: Backend,
    pub ca: PathBuf,
    pub backend_port: u16,
    _moto: Option<Moto>,
}

/// A self-signed certificate for `localhost`, written as PEM files.
fn write_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    // A name of its own: OpenSSL finds a bundle's certificates by subject.
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("kikaku test {}", dir.display()),
    );
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

impl StorageGateway {
    pub fn start(backend: Backend) -> StorageGateway {
        Self::start_with(backend, "")
    }

    /// `state`: a `state:` section (default: embedded).
    pub fn start_with(backend: Backend, state: &str) -> StorageGateway {
        Self::start_full(backend, state, &[], "")
    }

    /// The backend pool with endpoints `before` the backend (e.g. dead
    /// ports) and `pool` settings added to it.
    pub fn start_pool(backend: Backend, before: &[u16], pool: &str) -> StorageGateway {
        Self::start_full(backend, "", before, pool)
    }

    fn start_full(backend: Backend, state: &str, before: &[u16], pool: &str) -> StorageGateway {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_cert(dir.path());
        let moto = (backend == Backend::Moto).then(Moto::start);
        let backend_port = match backend {
            Backend::External(p) => p,
            _ => moto.as_ref().map(|m| m.port).unwrap_or_else(free_port),
        };
        let embedded = match backend {
            Backend::Embedded => format!("  embedded: {{listen: '127.0.0.1:{backend_port}'}}\n"),
            _ => String::new(),
        };
        let mut keys = String::from("keys:\n");
        for (name, k, id, secret, bucket, quota) in TENANTS {
            keys.push_str(&format!(
                "  - {{key: {k}, owner: Tenant {name}, quota: {quota}, bucket: {bucket}, s3: {{access_key_id: {id}, secret_access_key: {secret}}}}}\n"
            ));
        }
        let body = format!(
            "listeners:
  public: {{address: '127.0.0.1:{{PUBLIC}}', tls: {{cert_file: '{cert}', key_file: '{key}'}}}}
  admin: {{address: '127.0.0.1:{{ADMIN}}'}}
data_dir: '{{DATA}}'
server: {{threads: 2}}
logging: {{access_log: off}}
{state}
storage:
  backend: {{upstream: s3, access_key_id: {BACKEND_ID}, secret_access_key: {BACKEND_SECRET}}}
{embedded}upstreams:
  s3:
    endpoints: [{endpoints}]
    timeouts: {{connect_ms: 2000, read_ms: 120000, write_ms: 120000}}
{pool}routes:
  - name: s3
    match: {{path_prefix: /, sigv4: true}}
    filters:
      - request_id: {{}}
      - s3_auth: {{}}
      - key_type: {{require: storage}}
      - rate_limit: {{per_minute: 100000}}
    handler: {{type: s3_endpoint}}
  - name: storage
    match: {{path_prefix: /s3}}
    filters:
      - request_id: {{}}
      - key_auth: {{}}
      - key_type: {{require: storage}}
      - rate_limit: {{per_minute: 100000}}
    handler: {{type: storage_api}}
{keys}",
            cert = cert.display(),
            key = key.display(),
            endpoints = before
                .iter()
                .chain([&backend_port])
                .map(|p| format!("{{address: '127.0.0.1:{p}'}}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let gw = Gateway::start_in(dir, &body, free_port(), free_port());
        wait_for_port(backend_port);
        StorageGateway {
            ca: gw.dir.path().join("cert.pem"),
            gw,
            backend,
            backend_port,
            _moto: moto,
        }
    }

    /// A client for the HTTPS listener that trusts the test certificate.
    pub fn client(&self) -> reqwest::Client {
        let pem = std::fs::read(&self.ca).unwrap();
        reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint())
    }

    pub fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.gw.public)
    }

    /// Run one scenario of `tests/s3/scenarios.py`; panics with its output
    /// when it fails. Returns its stdout.
    pub fn scenario(&self, name: &str) -> String {
        self.scenario_across(name, &[])
    }

    /// The same, with clients spread over these gateways too (same CA).
    pub fn scenario_across(&self, name: &str, others: &[&StorageGateway]) -> String {
        self.scenario_full(name, others, &[])
    }

    /// With extra environment (e.g. a tenant `S` created at run time).
    pub fn scenario_env(&self, name: &str, env: &[(&str, &str)]) -> String {
        self.scenario_full(name, &[], env)
    }

    /// Start a scenario without waiting for it (stdout piped).
    pub fn scenario_spawn(&self, name: &str, env: &[(&str, &str)]) -> std::process::Child {
        let mut cmd = self.scenario_command(name, &[]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).spawn().expect("python3")
    }

    fn scenario_full(
        &self,
        name: &str,
        others: &[&StorageGateway],
        env: &[(&str, &str)],
    ) -> String {
        let mut cmd = self.scenario_command(name, others);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("python3");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "scenario {name} failed:\n{stdout}\n{}\n--- gateway stderr ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.gw.stderr()
        );
        stdout
    }

    /// Run every check of `tests/s3/conformance.py` (or those named);
    /// panics with its output when one fails. Returns its stdout.
    pub fn conformance(&self, names: &[&str]) -> String {
        let mut cmd = self.script_command("conformance.py", &names.join(","), &[]);
        let out = cmd.output().expect("python3");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "conformance failed:\n{stdout}\n{}\n--- gateway stderr ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.gw.stderr()
        );
        stdout
    }

    /// `.venv/bin/python3 tests/s3/scenarios.py <name>` with the tenants' environment.
    fn scenario_command(&self, name: &str, others: &[&StorageGateway]) -> Command {
        self.script_command("scenarios.py", name, others)
    }

    fn script_command(&self, file: &str, name: &str, others: &[&StorageGateway]) -> Command {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/s3")
            .join(file);
        // One CA bundle trusting every gateway's certificate.
        let bundle = self.gw.dir.path().join("bundle.pem");
        let pems: Vec<u8> = std::iter::once(self)
            .chain(others.iter().copied())
            .flat_map(|g| std::fs::read(&g.ca).unwrap())
            .collect();
        std::fs::write(&bundle, pems).unwrap();
        let mut cmd = super::tool("python3");
        cmd.arg(script)
            .arg(name)
            .env("KK_ENDPOINT", self.endpoint())
            .env(
                "KK_ENDPOINTS",
                std::iter::once(self)
                    .chain(others.iter().copied())
                    .map(|g| g.endpoint())
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .env("AWS_CA_BUNDLE", &bundle)
            .env(
                "KK_BACKEND",
                match self.backend {
                    Backend::Embedded => "embedded",
                    Backend::Moto => "moto",
                    Backend::External(_) => "external",
                },
            )
            // No credentials or config from the machine's own AWS set-up.
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
        for (t, key, id, secret, bucket, _) in TENANTS {
            cmd.env(format!("KK_{t}_KEY"), key)
                .env(format!("KK_{t}_ID"), id)
                .env(format!("KK_{t}_SECRET"), secret)
                .env(format!("KK_{t}_BUCKET"), bucket);
        }
        cmd
    }
}
