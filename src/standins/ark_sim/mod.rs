//! The Ark simulator (DESIGN §9): speaks BytePlus ModelArk's
//! `POST /api/v3/images/generations` so the gateway runs and is tested with
//! no network. Real JPEGs at the requested size, `url` answers it serves
//! itself, `b64_json`, Ark's usage and error envelopes, per-image errors.
//!
//! Knobs for tests and benchmarks: added latency, a content-filter trigger
//! word, `auto` returning fewer images than asked, and faults (5xx, reset,
//! hang) every Nth request.
//!
//! Runs standalone (`kikaku-edge sim-ark --listen ADDR`) or in-process from
//! the gateway config's `simulators.ark` section.

mod api;
pub mod jpeg;
mod stream;

pub use crate::config::{Fault, SimConfig};

use std::collections::HashMap;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;

/// An answer's body: whole, or a stream of events.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A body held whole.
pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) struct StoredImage {
    pub w: u32,
    pub h: u32,
    /// Made with `output_format: png`.
    pub png: bool,
    pub created: Instant,
}

pub struct Simulator {
    pub config: SimConfig,
    pub(crate) jpegs: jpeg::JpegCache,
    pub(crate) images: Mutex<HashMap<String, StoredImage>>,
    pub(crate) next_id: AtomicU64,
    pub(crate) requests: AtomicU64,
    /// The body of the last generation request (tests read it at `/_sim/last-request`).
    pub(crate) last_request: Mutex<Option<Bytes>>,
    /// The HTTP version of the last generation request (`/_sim/last-version`).
    pub(crate) last_version: Mutex<Option<String>>,
}

/// Largest request body accepted (14 inline images of 10 MB, base64).
const MAX_BODY: usize = 256 << 20;

impl Simulator {
    pub fn new(config: SimConfig) -> Arc<Simulator> {
        Arc::new(Simulator {
            config,
            jpegs: Default::default(),
            images: Default::default(),
            next_id: AtomicU64::new(1),
            requests: AtomicU64::new(0),
            last_request: Mutex::new(None),
            last_version: Mutex::new(None),
        })
    }

    pub fn base_url(&self) -> String {
        self.config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.config.listen))
    }

    /// Accept and serve until the task is dropped.
    pub async fn serve(self: Arc<Self>) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(&self.config.listen).await?;
        self.serve_on(listener).await
    }

    /// Serve on a listener bound by the caller (the gateway binds it before
    /// its first health check, so the check never sees a closed port).
    pub async fn serve_on(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
    ) -> std::io::Result<()> {
        log::info!("sim-ark listening on {}", self.config.listen);
        let tls = match (&self.config.tls_cert_file, &self.config.tls_key_file) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            _ => None,
        };
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("sim-ark accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let sim = self.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| sim.clone().route(req));
                match tls {
                    None => {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    }
                    // HTTPS: HTTP/2 or HTTP/1.1, as ALPN settled it.
                    Some(acceptor) => {
                        let Ok(stream) = acceptor.accept(stream).await else {
                            return;
                        };
                        let _ = hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                    }
                }
            });
        }
    }

    /// `Err` makes hyper drop the connection: the `reset` fault.
    async fn route(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, ResetConnection> {
        let path = req.uri().path().to_string();
        if req.method() == hyper::Method::POST && path == "/api/v3/images/generations" {
            *self.last_version.lock() = Some(format!("{:?}", req.version()));
            return self.generate(req).await;
        }
        if req.method() == hyper::Method::GET {
            if let Some(id) = path
                .strip_prefix("/images/")
                .and_then(|p| p.strip_suffix(".jpeg").or_else(|| p.strip_suffix(".png")))
            {
                return Ok(self.image(id).await);
            }
            if path == "/_sim/last-request" {
                let body = self.last_request.lock().clone().unwrap_or_default();
                return Ok(Response::builder()
                    .header("content-type", "application/json")
                    .body(full(body))
                    .unwrap_or_else(|_| Response::new(full(Bytes::new()))));
            }
            if path == "/_sim/last-version" {
                let v = self.last_version.lock().clone().unwrap_or_default();
                return Ok(Response::new(full(Bytes::from(v))));
            }
            if path == "/healthz" {
                return Ok(api::json(200, &serde_json::json!({"status": "ok"})));
            }
        }
        if req.method() == hyper::Method::POST && path == "/_sim/forget-images" {
            self.forget_images();
            return Ok(api::json(200, &serde_json::json!({"forgotten": true})));
        }
        Ok(api::ark_error(
            404,
            "NotFound",
            "The requested resource was not found.",
        ))
    }

    async fn generate(
        self: &Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, ResetConnection> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let token = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("")
            .to_string();
        if token.is_empty() || self.config.api_key.as_deref().is_some_and(|k| k != token) {
            return Ok(api::ark_error(
                401,
                "AuthenticationError",
                "The API key in the request is missing or invalid.",
            ));
        }
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return Ok(api::ark_error(
                    400,
                    "InvalidParameter",
                    "The request body is too large.",
                ))
            }
        };
        let plan = match api::plan(self, &body) {
            Ok(p) => p,
            Err(refused) => return Ok(*refused),
        };
        let fault = (self.config.fault != Fault::None
            && n.is_multiple_of(self.config.fault_every.max(1)))
        .then_some(self.config.fault);
        if plan.stream {
            return Ok(stream::generate(self, plan, fault).await);
        }
        if self.config.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.config.latency_ms)).await;
        }
        match fault {
            Some(Fault::Http500) => {
                return Ok(api::ark_error(
                    500,
                    "InternalServiceError",
                    "The service encountered an unexpected internal error.",
                ))
            }
            Some(Fault::Http503) => {
                return Ok(api::ark_error(
                    503,
                    "ServiceUnavailable",
                    "The service is temporarily overloaded. Please retry later.",
                ))
            }
            Some(Fault::Reset) => return Err(ResetConnection),
            Some(Fault::Hang) => std::future::pending::<()>().await,
            Some(Fault::None) | None => {}
        }
        Ok(api::generate(self, &plan).await)
    }

    async fn image(&self, id: &str) -> Response<Body> {
        let ttl = Duration::from_secs(self.config.image_ttl_seconds);
        let size = {
            let mut images = self.images.lock();
            images.retain(|_, im| im.created.elapsed() < ttl);
            images.get(id).map(|im| (im.w, im.h, im.png))
        };
        match size {
            Some((w, h, png)) => {
                let bytes = self.jpegs.get_as(w, h, png).await;
                Response::builder()
                    .header("content-type", if png { "image/png" } else { "image/jpeg" })
                    .header("content-length", bytes.len())
                    .body(full(bytes))
                    .unwrap_or_else(|_| Response::new(full(Bytes::new())))
            }
            None => api::ark_error(404, "NotFound", "The image does not exist or has expired."),
        }
    }

    /// Forget every stored image, as Ark does after 24 h.
    pub fn forget_images(&self) {
        self.images.lock().clear();
    }
}

#[derive(Debug)]
pub struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("simulated connection reset")
    }
}

impl std::error::Error for ResetConnection {}

/// Run a standalone simulator until killed.
pub fn run_standalone(config: SimConfig) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(Simulator::new(config).serve())
}

/// A TLS acceptor offering `h2` then `http/1.1`, on these PEM files.
fn tls_acceptor(cert: &str, key: &str) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    let bad = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let pem = std::fs::read(cert)?;
    let chain = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("{cert}: {e}")))?;
    let pem = std::fs::read(key)?;
    let key = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| bad(format!("{key}: {e}")))?
        .ok_or_else(|| bad(format!("{key} holds no private key")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| bad(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
}
