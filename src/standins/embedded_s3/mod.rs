//! The embedded storage backend: a real S3 server (s3s-fs) on local disk,
//! started in-process on a loopback port. The gateway reaches it exactly as
//! it would reach MinIO or AWS — over HTTP, signed — so switching to an
//! external backend changes YAML only.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::distributions::{Alphanumeric, DistString};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

pub mod fs;

use crate::storage::backend::BackendCredential;
use fs::EmbeddedFs;

/// What the embedded server needs: where to listen, where objects live,
/// and the one credential it accepts (`backend_credential`).
#[derive(Debug, Clone)]
pub struct EmbeddedS3 {
    pub listen: String,
    pub root: PathBuf,
    pub credential: BackendCredential,
}

impl EmbeddedS3 {
    /// Bind and serve until the future is dropped. When the address is
    /// already served (two gateways sharing one offline config), return at
    /// once and let the other server answer.
    pub async fn serve(&self) -> Result<(), String> {
        match tokio::net::TcpListener::bind(&self.listen).await {
            Ok(l) => self.serve_on(l).await,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                log::info!(
                    "embedded S3 backend: {} is already served, using that server",
                    self.listen
                );
                Ok(())
            }
            Err(e) => Err(format!("cannot listen on {}: {e}", self.listen)),
        }
    }

    /// Serve on a listener bound by the caller.
    pub async fn serve_on(&self, listener: tokio::net::TcpListener) -> Result<(), String> {
        std::fs::create_dir_all(&self.root)
            .map_err(|e| format!("cannot create {}: {e}", self.root.display()))?;
        let fs = EmbeddedFs::new(&self.root)?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(
            self.credential.access_key_id.as_str(),
            self.credential.secret_access_key.as_str(),
        ));
        let service = builder.build();
        log::info!(
            "embedded S3 backend on {} (objects in {})",
            self.listen,
            self.root.display()
        );
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("embedded S3 accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let service = service.clone();
            tokio::spawn(async move {
                let _ = ConnBuilder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

/// Where the embedded backend keeps the credential it made itself: an env
/// file, so a second instance sharing this backend can be started with
/// `env $(cat <data_dir>/embedded-s3-credential.env) kikaku-edge serve ...`.
pub const CREDENTIAL_FILE: &str = "embedded-s3-credential.env";
const ID_VAR: &str = "KIKAKU_S3_BACKEND_ACCESS_KEY_ID";
const SECRET_VAR: &str = "KIKAKU_S3_BACKEND_SECRET_ACCESS_KEY";

/// The backend credential of a storage config: the configured one, or
/// (with none configured, which only the embedded backend allows) the one
/// in `<data_dir>/embedded-s3-credential.env`, made at the first start.
/// The file is created once, whole, with mode 0600 (several processes
/// starting together agree on one); a file others may read is made
/// private again.
pub fn backend_credential(
    storage: &crate::config::StorageConfig,
    data_dir: &Path,
) -> Result<BackendCredential, String> {
    let b = &storage.backend;
    if !b.access_key_id.is_empty() && !b.secret_access_key.is_empty() {
        return Ok(BackendCredential {
            access_key_id: b.access_key_id.clone(),
            secret_access_key: b.secret_access_key.clone(),
        });
    }
    let path = data_dir.join(CREDENTIAL_FILE);
    let io = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mode = std::fs::metadata(&path)
                .map_err(|e| io("cannot read", &path, e))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                log::warn!(
                    "{} was readable by others (mode {:o}); making it 0600",
                    path.display(),
                    mode & 0o777
                );
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| io("cannot restrict", &path, e))?;
            }
            parse_credential(&text).ok_or_else(|| {
                format!(
                    "{} is not {ID_VAR}=... and {SECRET_VAR}=... lines",
                    path.display()
                )
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_credential(&path),
        Err(e) => Err(io("cannot read", &path, e)),
    }
}

fn parse_credential(text: &str) -> Option<BackendCredential> {
    let value = |var: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(var)?.strip_prefix('='))
            .map(str::to_string)
            .filter(|v| !v.is_empty())
    };
    Some(BackendCredential {
        access_key_id: value(ID_VAR)?,
        secret_access_key: value(SECRET_VAR)?,
    })
}

/// Write a new credential to a private temporary file, then link it into
/// place: the link fails when another process got there first, and then
/// that one's credential is the one.
fn create_credential(path: &Path) -> Result<BackendCredential, String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut rng = rand::thread_rng();
    let cred = BackendCredential {
        access_key_id: format!(
            "KKEMBEDDED{}",
            Alphanumeric
                .sample_string(&mut rng, 10)
                .to_ascii_uppercase()
        ),
        secret_access_key: Alphanumeric.sample_string(&mut rng, 40),
    };
    let tmp = dir.join(format!(
        ".{CREDENTIAL_FILE}.{}.tmp",
        Alphanumeric.sample_string(&mut rng, 8)
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(
            f,
            "{ID_VAR}={}\n{SECRET_VAR}={}",
            cred.access_key_id, cred.secret_access_key
        )?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => {
            log::info!(
                "embedded S3 backend: made its credential in {} (mode 0600)",
                path.display()
            );
            Ok(cred)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            parse_credential(&text).ok_or_else(|| format!("{} is torn", path.display()))
        }
        Err(e) => Err(format!("cannot write {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(yaml: &str) -> crate::config::StorageConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    const EMBEDDED: &str = "backend: {upstream: s3}\nembedded: {listen: '127.0.0.1:1'}\n";

    #[test]
    fn a_configured_credential_is_used_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let s = storage(
            "backend: {upstream: s3, access_key_id: id, secret_access_key: sk}\nembedded: {listen: '127.0.0.1:1'}\n",
        );
        let c = backend_credential(&s, dir.path()).unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.as_str()),
            ("id", "sk")
        );
        assert!(!dir.path().join(CREDENTIAL_FILE).exists());
    }

    #[test]
    fn none_configured_makes_one_private_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = storage(EMBEDDED);
        let first = backend_credential(&s, &dir.path().join("data")).unwrap();
        let file = dir.path().join("data").join(CREDENTIAL_FILE);
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(first.secret_access_key.len(), 40);
        assert_ne!(first.access_key_id, "kikaku-embedded-backend");
        // Read back, not made again.
        assert_eq!(
            backend_credential(&s, &dir.path().join("data")).unwrap(),
            first
        );
        // No temporary file is left behind.
        assert_eq!(
            std::fs::read_dir(dir.path().join("data")).unwrap().count(),
            1
        );
    }

    #[test]
    fn processes_starting_together_agree_on_one() {
        let dir = tempfile::tempdir().unwrap();
        let creds: Vec<BackendCredential> = (0..8)
            .map(|_| {
                let d = dir.path().to_path_buf();
                std::thread::spawn(move || backend_credential(&storage(EMBEDDED), &d).unwrap())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        assert!(creds.iter().all(|c| *c == creds[0]));
    }

    #[test]
    fn a_file_others_can_read_is_made_private_and_a_bad_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(CREDENTIAL_FILE);
        std::fs::write(&file, format!("{ID_VAR}=AK\n{SECRET_VAR}=SK\n")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = backend_credential(&storage(EMBEDDED), dir.path()).unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.as_str()),
            ("AK", "SK")
        );
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::write(&file, "garbage\n").unwrap();
        let e = backend_credential(&storage(EMBEDDED), dir.path()).unwrap_err();
        assert!(e.contains(ID_VAR), "{e}");
    }
}
