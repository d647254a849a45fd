//! An HTTP/1.1 upstream that misbehaves on command, for the load-balancing
//! tests: it answers a chosen status, answers slowly, or dies (its port
//! refuses connections and open connections close) and comes back on the
//! same port.
//!
//! Every request is answered `{"server": id, "received": body bytes}` with
//! the status set (200 by default), after the delay set.

#![allow(dead_code)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::sync::watch;

struct Behaviour {
    status: AtomicU16,
    delay_ms: AtomicU64,
    hits: AtomicU64,
}

pub struct Flaky {
    pub id: &'static str,
    pub port: u16,
    behaviour: Arc<Behaviour>,
    /// The accept loop and the switch that closes its connections.
    running: Mutex<Option<(tokio::task::JoinHandle<()>, watch::Sender<bool>)>>,
}

impl Drop for Flaky {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Flaky {
    pub async fn start(id: &'static str) -> Flaky {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let f = Flaky {
            id,
            port,
            behaviour: Arc::new(Behaviour {
                status: AtomicU16::new(200),
                delay_ms: AtomicU64::new(0),
                hits: AtomicU64::new(0),
            }),
            running: Mutex::new(None),
        };
        f.serve(listener);
        f
    }

    /// One started upstream per id, in order.
    pub async fn several<const N: usize>(ids: [&'static str; N]) -> [Flaky; N] {
        let mut ups = Vec::new();
        for id in ids {
            ups.push(Flaky::start(id).await);
        }
        match ups.try_into() {
            Ok(all) => all,
            Err(_) => unreachable!("one per id"),
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Requests received so far.
    pub fn hits(&self) -> u64 {
        self.behaviour.hits.load(Relaxed)
    }

    /// Answer every request with this status from now on.
    pub fn answer(&self, status: u16) {
        self.behaviour.status.store(status, Relaxed);
    }

    /// Wait this long before each answer from now on.
    pub fn delay(&self, ms: u64) {
        self.behaviour.delay_ms.store(ms, Relaxed);
    }

    /// Stop listening (connections are refused) and close every open
    /// connection.
    pub fn kill(&self) {
        if let Some((accept, close)) = self.running.lock().take() {
            accept.abort();
            let _ = close.send(true);
        }
    }

    /// Listen again on the same port.
    pub async fn revive(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.serve(listener);
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (close, closed) = watch::channel(false);
        let (id, behaviour) = (self.id, self.behaviour.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (behaviour, mut closed) = (behaviour.clone(), closed.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(id, behaviour.clone(), req));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = closed.changed() => {}
                    }
                });
            }
        });
        *self.running.lock() = Some((accept, close));
    }
}

async fn answer(
    id: &'static str,
    b: Arc<Behaviour>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    b.hits.fetch_add(1, Relaxed);
    let received = match req.into_body().collect().await {
        Ok(body) => body.to_bytes().len(),
        Err(_) => 0,
    };
    let delay = b.delay_ms.load(Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let body = serde_json::json!({"server": id, "received": received});
    Ok(Response::builder()
        .status(b.status.load(Relaxed))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap())
}

/// `endpoints: [...]` of a pool of these upstreams, as a YAML line of the
/// pool's block.
pub fn endpoints(ups: &[&Flaky]) -> String {
    let list: Vec<String> = ups
        .iter()
        .map(|u| format!("{{address: '{}'}}", u.address()))
        .collect();
    format!("    endpoints: [{}]\n", list.join(", "))
}
