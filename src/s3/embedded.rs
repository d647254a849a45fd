//! The embedded storage backend: a real S3 server (s3s-fs) on local disk,
//! started in-process on a loopback port. The gateway reaches it exactly as
//! it would reach MinIO or AWS — over HTTP, signed — so switching to an
//! external backend changes YAML only.

use std::path::PathBuf;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

use super::embedded_fs::EmbeddedFs;

/// What the embedded server needs: where to listen, where objects live,
/// and the one credential it accepts (the backend credential of the config).
#[derive(Debug, Clone)]
pub struct EmbeddedS3 {
    pub listen: String,
    pub root: PathBuf,
    pub access_key_id: String,
    pub secret_access_key: String,
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
            self.access_key_id.as_str(),
            self.secret_access_key.as_str(),
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
