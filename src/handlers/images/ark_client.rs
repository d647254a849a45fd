//! Calls to Ark's `POST /api/v3/images/generations`, made by the gateway
//! itself (the image route answers locally so it can validate first and
//! issue fallback calls in parallel). Endpoints come from the route's
//! upstream pool: same balancing, health state, SNI, verification, timeouts
//! and keepalive as proxied routes.
//!
//! The call runs on Pingora's own connector and HTTP/1.1 client session, in
//! the request's task: no per-request URL parsing and no hand-off to a
//! connection task, which made the reqwest client a quarter of the image
//! route's CPU (BENCHMARKS.md, "Profile"). The request goes out in one write.

use std::sync::Arc;

use bytes::BytesMut;
use http::header;
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::http::RequestHeader;
use pingora::protocols::http::v1::client::{http_req_header_to_wire, HttpSession};
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{Error, ErrorType};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::upstreams::Upstream;

pub const PATH: &str = "/api/v3/images/generations";

/// Larger answers are refused: 15 base64 images of 4K fit many times over.
const MAX_ANSWER_BYTES: usize = 512 << 20;

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
    /// `Bearer <Ark key>`.
    authorization: String,
    /// Pingora's transport connector: TLS with the server's CA file, and a
    /// pool of idle connections per endpoint.
    connector: TransportConnector,
}

/// A finished exchange: status and the whole body.
struct Exchange {
    status: u16,
    body: BytesMut,
}

impl ArkClient {
    pub fn new(
        upstream: Arc<Upstream>,
        api_key: String,
        ca_file: Option<&str>,
    ) -> Result<ArkClient, String> {
        // Idle connections kept per connector (Pingora's default pool size).
        let mut opts = ConnectorOptions::new(128);
        opts.ca_file = ca_file.map(str::to_string);
        Ok(ArkClient {
            upstream,
            authorization: format!("Bearer {api_key}"),
            connector: TransportConnector::new(Some(opts)),
        })
    }

    pub async fn generate(&self, body: &Value) -> Result<Value, ArkFailure> {
        let (peer, host) = self.upstream.select().ok_or(ArkFailure::NoEndpoint)?;
        let payload = serde_json::to_vec(body).map_err(|e| ArkFailure::BadBody(e.to_string()))?;
        let header = self.request_header(host, payload.len())?;
        let ex = self.exchange(&peer, header, &payload).await?;
        if ex.status != 200 {
            let err: Value = serde_json::from_slice(&ex.body).unwrap_or(Value::Null);
            let field = |name: &str| err["error"][name].as_str().unwrap_or_default().to_string();
            return Err(ArkFailure::Status {
                status: ex.status,
                code: field("code"),
                message: field("message"),
            });
        }
        let v: Value =
            serde_json::from_slice(&ex.body).map_err(|e| ArkFailure::BadBody(e.to_string()))?;
        if !v["data"].is_array() {
            return Err(ArkFailure::BadBody("no data array".into()));
        }
        Ok(v)
    }

    fn request_header(&self, host: &str, len: usize) -> Result<RequestHeader, ArkFailure> {
        let build = || -> pingora::Result<RequestHeader> {
            let mut req = RequestHeader::build("POST", PATH.as_bytes(), Some(6))?;
            req.insert_header(header::HOST, host)?;
            req.insert_header(header::AUTHORIZATION, self.authorization.as_str())?;
            req.insert_header(header::CONTENT_TYPE, "application/json")?;
            req.insert_header(header::CONTENT_LENGTH, len)?;
            if !self.upstream.keepalive() {
                req.insert_header(header::CONNECTION, "close")?;
            }
            Ok(req)
        };
        build().map_err(|e| ArkFailure::Transport(e.to_string()))
    }

    /// One request and its whole answer. A pooled connection the server has
    /// meanwhile closed fails before any answer arrives; the request is then
    /// sent once more on a new connection (it never reached Ark).
    async fn exchange(
        &self,
        peer: &HttpPeer,
        header: RequestHeader,
        payload: &[u8],
    ) -> Result<Exchange, ArkFailure> {
        let (stream, reused) = self
            .connector
            .get_stream(peer)
            .await
            .map_err(|e| failure(&e))?;
        match self.send(peer, stream, header.clone(), payload).await {
            Err((e, false)) if reused => {
                log::debug!("pooled Ark connection failed before an answer ({e}); retrying");
                let stream = self
                    .connector
                    .new_stream(peer)
                    .await
                    .map_err(|e| failure(&e))?;
                self.send(peer, stream, header, payload)
                    .await
                    .map_err(|(e, _)| failure(&e))
            }
            r => r.map_err(|(e, _)| failure(&e)),
        }
    }

    /// Write the request and read the answer on `stream`; the stream goes
    /// back to the pool if the exchange leaves it reusable. An error says
    /// whether an answer had started to arrive.
    async fn send(
        &self,
        peer: &HttpPeer,
        mut stream: pingora::protocols::Stream,
        header: RequestHeader,
        payload: &[u8],
    ) -> Result<Exchange, (Box<Error>, bool)> {
        let before = |e| (e, false);
        // Header and body in one write: Pingora's session flushes the
        // header on its own, and Ark would read the request in two wake-ups.
        let mut wire = http_req_header_to_wire(&header).ok_or_else(|| {
            before(Error::explain(
                ErrorType::InvalidHTTPHeader,
                "request header not writable",
            ))
        })?;
        wire.extend_from_slice(payload);
        let write = async {
            stream.write_all(&wire).await?;
            stream.flush().await
        };
        let written = match peer.options.write_timeout {
            Some(t) => tokio::time::timeout(t, write)
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
            None => write.await,
        };
        written.map_err(|e| {
            let kind = match e.kind() {
                std::io::ErrorKind::TimedOut => ErrorType::WriteTimedout,
                _ => ErrorType::WriteError,
            };
            before(Error::because(kind, "while sending the request", e))
        })?;
        let mut s = HttpSession::new_with_options(stream, peer);
        s.read_timeout = peer.options.read_timeout;
        s.read_response().await.map_err(before)?;
        let status = s.get_status().map(|c| c.as_u16()).unwrap_or(0);
        let mut body = BytesMut::new();
        while let Some(chunk) = s.read_body_ref().await.map_err(|e| (e, true))? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                let e = Error::explain(ErrorType::ReadError, "answer larger than 512 MiB");
                return Err((e, true));
            }
            body.extend_from_slice(chunk);
        }
        s.respect_keepalive();
        // The session never saw our `Connection: close`, so ask the pool too.
        if let Some(stream) = s.reuse().await.filter(|_| self.upstream.keepalive()) {
            self.connector
                .release_stream(stream, peer.reuse_hash(), peer.options.idle_timeout);
        }
        Ok(Exchange { status, body })
    }
}

fn failure(e: &Error) -> ArkFailure {
    match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            ArkFailure::Timeout
        }
        // The chain of causes says what happened (refused, reset, TLS).
        _ => ArkFailure::Transport(e.to_string().trim().to_string()),
    }
}
