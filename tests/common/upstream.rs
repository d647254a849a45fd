//! A real HTTP/1.1 and HTTP/2 upstream for tests, served by hyper in the
//! test process (TLS ones offer `h2` by ALPN).
//!
//! Verbs may follow any prefix (`/v1/echo`).
//! - `GET /echo...`      → JSON of method, path, HTTP version and request headers, plus `server` id
//! - `PUT|POST /sink`    → reads the body as it streams, answers `{"received": N}`
//! - `GET /bytes/N`      → N bytes, streamed in 64 KiB chunks
//! - `GET /slow/MS`      → waits MS milliseconds, then answers
//! - `GET /health`       → 200

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

pub struct Upstream {
    pub port: u16,
    pub hits: Arc<AtomicU64>,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

impl Upstream {
    /// Start on a free port; `id` is reported by `/echo` to tell endpoints apart.
    pub async fn start(id: &'static str) -> Upstream {
        Self::listen(id, None).await
    }

    /// Accept connections (TLS ones when an acceptor is given) and serve the verbs.
    async fn listen(id: &'static str, tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicU64::new(0));
        let counter = hits.clone();
        let handle = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (tls, counter) = (tls.clone(), counter.clone());
                tokio::spawn(async move {
                    match tls {
                        None => serve_connection(id, stream, counter).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve_connection(id, stream, counter).await;
                            }
                        }
                    }
                });
            }
        });
        Upstream { port, hits, handle }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

async fn handle(id: &'static str, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    // Routes may keep a prefix (`/v1/echo`), so verbs are found anywhere.
    let verb = |v: &str| path.find(v).map(|i| &path[i + v.len()..]);
    if verb("/echo").is_some() {
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("<bin>").into()))
            .collect();
        let body = serde_json::json!({
            "server": id,
            "method": req.method().as_str(),
            "version": format!("{:?}", req.version()),
            "path": path,
            "query": req.uri().query(),
            "headers": headers,
        });
        return Ok(Response::builder()
            .header("content-type", "application/json")
            .body(full(serde_json::to_vec(&body).unwrap()))
            .unwrap());
    }
    if verb("/sink").is_some() {
        let mut body = req.into_body();
        let mut n: u64 = 0;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => n += f.data_ref().map(|d| d.len() as u64).unwrap_or(0),
                Err(_) => break,
            }
        }
        return Ok(Response::new(full(format!("{{\"received\":{n}}}"))));
    }
    if let Some(n) = verb("/bytes/") {
        let total: u64 = n.parse().unwrap_or(0);
        const CHUNK: u64 = 64 * 1024;
        let chunk = Bytes::from(vec![b'k'; CHUNK as usize]);
        let frames = stream::iter((0..total.div_ceil(CHUNK)).map(move |i| {
            let len = CHUNK.min(total - i * CHUNK) as usize;
            Ok::<_, Infallible>(Frame::data(chunk.slice(..len)))
        }));
        return Ok(Response::builder()
            .header("content-length", total)
            .body(StreamBody::new(frames).boxed())
            .unwrap());
    }
    if let Some(ms) = verb("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        return Ok(Response::new(full("slow done")));
    }
    if verb("/health").is_some() {
        return Ok(Response::new(full("ok")));
    }
    Ok(Response::builder()
        .status(404)
        .body(full("upstream: no such path"))
        .unwrap())
}

/// A TLS upstream with a fresh self-signed certificate for `name`; serves the
/// same verbs. Returns the server and the certificate's PEM.
pub async fn start_tls(id: &'static str, name: &str) -> (Upstream, String) {
    use std::sync::Arc as StdArc;
    use tokio_rustls::rustls;
    let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    let pem = cert.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(StdArc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(StdArc::new(config));
    (Upstream::listen(id, Some(acceptor)).await, pem)
}

async fn serve_connection<IO>(id: &'static str, io: IO, counter: Arc<AtomicU64>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        counter.fetch_add(1, Ordering::Relaxed);
        handle(id, req)
    });
    // HTTP/1.1, or HTTP/2 when the client opens with its preface.
    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(TokioIo::new(io), svc)
        .await;
}
