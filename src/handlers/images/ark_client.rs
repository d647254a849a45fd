//! Calls to Ark's `POST /api/v3/images/generations`, made by the gateway
//! itself (the image route answers locally so it can validate first and
//! issue fallback calls in parallel). Endpoints come from the route's
//! upstream pool: same balancing, health state, SNI and verification as
//! proxied routes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::upstreams::Upstream;

pub const PATH: &str = "/api/v3/images/generations";

/// Why an upstream call produced no usable answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ArkFailure {
    /// No healthy endpoint in the pool.
    NoEndpoint,
    /// Connect, reset or protocol failure.
    Transport(String),
    /// The upstream did not answer in time.
    Timeout,
    /// A non-200 answer, with Ark's error code and message when it sent them.
    Status {
        status: u16,
        code: String,
        message: String,
    },
    /// A 200 whose body is not Ark's JSON.
    BadBody(String),
}

pub struct ArkClient {
    upstream: Arc<Upstream>,
    api_key: String,
    /// One client per endpoint, pinned to its address.
    clients: HashMap<SocketAddr, reqwest::Client>,
}

impl ArkClient {
    pub fn new(
        upstream: Arc<Upstream>,
        api_key: String,
        ca_file: Option<&str>,
    ) -> Result<ArkClient, String> {
        let ca = match ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
                Some(
                    reqwest::Certificate::from_pem_bundle(&pem)
                        .map_err(|e| format!("{path}: {e}"))?,
                )
            }
            None => None,
        };
        let t = &upstream.config.timeouts;
        let mut clients = HashMap::new();
        for ep in upstream.endpoints() {
            let mut b = reqwest::Client::builder()
                .no_proxy()
                .connect_timeout(Duration::from_millis(t.connect_ms))
                .read_timeout(Duration::from_millis(t.read_ms))
                .pool_idle_timeout(Duration::from_secs(upstream.config.keepalive.idle_seconds))
                .resolve(&ep.sni, ep.addr);
            for cert in ca.iter().flatten() {
                b = b.add_root_certificate(cert.clone());
            }
            if upstream.tls && !upstream.verify {
                b = b.danger_accept_invalid_certs(true);
            }
            if !upstream.config.keepalive.enabled {
                b = b.pool_max_idle_per_host(0);
            }
            clients.insert(ep.addr, b.build().map_err(|e| e.to_string())?);
        }
        Ok(ArkClient {
            upstream,
            api_key,
            clients,
        })
    }

    pub async fn generate(&self, body: &Value) -> Result<Value, ArkFailure> {
        let ep = self
            .upstream
            .select_endpoint()
            .ok_or(ArkFailure::NoEndpoint)?;
        let client = self.clients.get(&ep.addr).ok_or(ArkFailure::NoEndpoint)?;
        let url = if self.upstream.tls {
            format!("https://{}:{}{PATH}", ep.sni, ep.addr.port())
        } else {
            format!("http://{}{PATH}", ep.addr)
        };
        let resp = client
            .post(url)
            .header(reqwest::header::HOST, &ep.host_header)
            .bearer_auth(&self.api_key)
            .json(body)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(transport)?;
        if status != 200 {
            let err: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let field = |name: &str| err["error"][name].as_str().unwrap_or_default().to_string();
            return Err(ArkFailure::Status {
                status,
                code: field("code"),
                message: field("message"),
            });
        }
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|e| ArkFailure::BadBody(e.to_string()))?;
        if !v["data"].is_array() {
            return Err(ArkFailure::BadBody("no data array".into()));
        }
        Ok(v)
    }
}

fn transport(e: reqwest::Error) -> ArkFailure {
    if e.is_timeout() {
        ArkFailure::Timeout
    } else {
        // The chain of causes says what happened (refused, reset, TLS).
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg = format!("{msg}: {s}");
            src = s.source();
        }
        ArkFailure::Transport(msg)
    }
}
