//! Calls to Ark's `POST /api/v3/images/generations`, made by the gateway
//! itself (the image route answers locally so it can validate first and
//! issue fallback calls in parallel). Endpoints come from the route's
//! upstream pool: same balancing, health state, SNI and verification as
//! proxied routes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

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
        let clients = upstream.http_clients(ca_file)?;
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
        let url = format!("{}{PATH}", self.upstream.base_url(ep));
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
