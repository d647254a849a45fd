//! Calls to Ark's `POST /api/v3/images/generations`, made by the gateway
//! itself (the image route answers locally so it can validate first and
//! issue fallback calls in parallel). Endpoints come from the route's
//! upstream pool: same balancing, health state, SNI, verification, timeouts
//! and keepalive as proxied routes.
//!
//! The call runs on Pingora's own connector and HTTP/1.1 client session, in
//! the request's task: no per-request URL parsing and no hand-off to a
//! connection task, which made the reqwest client a quarter of the image
//! route's CPU (BENCHMARKS.md, "Profile"). The request goes out in one write,
//! its four header lines written straight into the buffer that carries the
//! body (a Pingora `RequestHeader` built, cloned for the retry and
//! serialised cost ~8,000 instructions per call).
//!
//! A TLS upstream with `tls.http2` (the default) is offered HTTP/2 by ALPN,
//! as Ark's endpoint serves it: those calls go through Pingora's HTTP
//! connector, which pools HTTP/2 connections and their streams
//! (`ark_session`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use pingora::connectors::http::Connector as HttpConnector;
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::protocols::http::v1::client::HttpSession;
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{Error, ErrorType};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::ark_session::ArkSession;
use crate::upstreams::Upstream;

pub const PATH: &str = "/api/v3/images/generations";

/// Larger answers are refused: 15 base64 images of 4K fit many times over.
pub(super) const MAX_ANSWER_BYTES: usize = 512 << 20;

/// Why an upstream call produced no usable answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ArkFailure {
    /// No healthy endpoint in the pool.
    NoEndpoint,
    /// The pool's circuit breaker is full; try again after this long.
    Full(std::time::Duration),
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
    /// A stream that Ark broke off with an error event, or that ended
    /// before its `completed` event.
    MidStream { code: String, message: String },
}

impl ArkFailure {
    /// A non-200 answer, with Ark's error code and message when its body
    /// is Ark's error envelope.
    pub fn from_error_body(status: u16, body: &[u8]) -> ArkFailure {
        let err: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let field = |name: &str| err["error"][name].as_str().unwrap_or_default().to_string();
        ArkFailure::Status {
            status,
            code: field("code"),
            message: field("message"),
        }
    }
}

pub struct ArkClient {
    pub(super) upstream: Arc<Upstream>,
    /// `Bearer <Ark key>`, checked to be a valid header value.
    pub(super) authorization: String,
    /// Pingora's transport connectors (TLS with the server's CA file, and a
    /// pool of idle connections per endpoint), one per worker thread: a
    /// connection is registered with the reactor of the runtime that opened
    /// it, and with `server.reuse_port` each thread has its own runtime: a
    /// connection taken from another thread's pool would be driven by that
    /// thread's reactor, its reads waiting until that thread polls.
    connectors: Box<[OnceLock<TransportConnector>]>,
    /// The same per thread for negotiated (HTTP/2) calls.
    http_connectors: Box<[OnceLock<HttpConnector>]>,
    options: ConnectorOptions,
}

/// Connector slots; threads beyond it share (a shared runtime does not care).
const CONNECTOR_SLOTS: usize = 16;

/// A small number of this thread's own, for its connector slot.
fn thread_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % CONNECTOR_SLOTS;
    }
    SLOT.with(|s| *s)
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
        let authorization = format!("Bearer {api_key}");
        if !header_value_ok(&authorization) {
            return Err("the Ark API key contains characters not allowed in a header".into());
        }
        Ok(ArkClient {
            upstream,
            authorization,
            connectors: (0..CONNECTOR_SLOTS).map(|_| OnceLock::new()).collect(),
            http_connectors: (0..CONNECTOR_SLOTS).map(|_| OnceLock::new()).collect(),
            options: opts,
        })
    }

    /// This thread's connector.
    pub(super) fn connector(&self) -> &TransportConnector {
        self.connectors[thread_slot()]
            .get_or_init(|| TransportConnector::new(Some(self.options.clone())))
    }

    /// This thread's HTTP connector (negotiated calls).
    pub(super) fn http_connector(&self) -> &HttpConnector {
        self.http_connectors[thread_slot()]
            .get_or_init(|| HttpConnector::new(Some(self.options.clone())))
    }

    /// The whole request as it goes on the wire: header lines, then the body.
    pub(super) fn request_wire(&self, host: &str, payload: &[u8]) -> Result<Vec<u8>, ArkFailure> {
        if !header_value_ok(host) {
            return Err(ArkFailure::Transport(format!(
                "upstream host {host:?} is not a valid Host header"
            )));
        }
        let mut len = itoa::Buffer::new();
        let len = len.format(payload.len());
        let mut wire = Vec::with_capacity(
            128 + host.len() + self.authorization.len() + len.len() + payload.len(),
        );
        for part in [
            "POST ",
            PATH,
            " HTTP/1.1\r\nHost: ",
            host,
            "\r\nAuthorization: ",
            &self.authorization,
            "\r\nContent-Type: application/json\r\nContent-Length: ",
            len,
        ] {
            wire.extend_from_slice(part.as_bytes());
        }
        if !self.upstream.keepalive() {
            wire.extend_from_slice(b"\r\nConnection: close");
        }
        wire.extend_from_slice(b"\r\n\r\n");
        wire.extend_from_slice(payload);
        Ok(wire)
    }

    /// Give a finished session's connection back to the pool when it can
    /// be reused.
    pub(super) async fn release(&self, s: ArkSession, peer: &HttpPeer) {
        let mut s = match s {
            ArkSession::H1(s) => s,
            ArkSession::Negotiated(s) => {
                if self.upstream.keepalive() {
                    self.http_connector()
                        .release_http_session(s, peer, peer.options.idle_timeout)
                        .await;
                }
                return;
            }
        };
        s.respect_keepalive();
        // The session never saw our `Connection: close`, so ask the pool too.
        if let Some(stream) = s.reuse().await.filter(|_| self.upstream.keepalive()) {
            self.connector()
                .release_stream(stream, peer.reuse_hash(), peer.options.idle_timeout);
        }
    }

    /// Write the request and read the answer's header on `stream`.
    pub(super) async fn send(
        &self,
        peer: &HttpPeer,
        mut stream: pingora::protocols::Stream,
        wire: &[u8],
    ) -> Result<HttpSession, Box<Error>> {
        // Header and body in one write: Pingora's session flushes the
        // header on its own, and Ark would read the request in two wake-ups.
        let write = async {
            stream.write_all(wire).await?;
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
            Error::because(kind, "while sending the request", e)
        })?;
        let mut s = HttpSession::new_with_options(stream, peer);
        s.read_timeout = peer.options.read_timeout;
        s.read_response().await?;
        Ok(s)
    }
}

/// What `http::HeaderValue` accepts (visible ASCII, space, tab, obs-text):
/// above all no CR or LF, which would end the header line early.
fn header_value_ok(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// What a failed call means for its endpoint's passive health.
pub(super) fn failure_kind(f: &ArkFailure) -> crate::upstreams::Failure {
    match f {
        ArkFailure::Timeout => crate::upstreams::Failure::Timeout,
        _ => crate::upstreams::Failure::Broken,
    }
}

pub(super) fn failure(e: &Error) -> ArkFailure {
    match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            ArkFailure::Timeout
        }
        // The chain of causes says what happened (refused, reset, TLS).
        _ => ArkFailure::Transport(e.to_string().trim().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamConfig;

    fn client(yaml: &str, key: &str) -> Result<ArkClient, String> {
        let cfg: UpstreamConfig = serde_yaml::from_str(yaml).unwrap();
        let up = Upstream::build("ark", &cfg, None).unwrap();
        ArkClient::new(Arc::new(up), key.into(), None)
    }

    /// The hand-written request parses as HTTP/1.1 with exactly the
    /// header lines a `RequestHeader` would have carried, then the body.
    #[test]
    fn the_request_on_the_wire_is_well_formed() {
        for (keepalive, close) in [(true, None), (false, Some("close"))] {
            let yaml = format!(
                "endpoints: [{{address: '127.0.0.1:9100'}}]\nkeepalive: {{enabled: {keepalive}}}"
            );
            let c = client(&yaml, "sim-ark-key").unwrap();
            let body = br#"{"prompt":"a cat"}"#;
            let wire = c.request_wire("127.0.0.1:9100", body).unwrap();
            let mut headers = [httparse::EMPTY_HEADER; 8];
            let mut req = httparse::Request::new(&mut headers);
            let httparse::Status::Complete(at) = req.parse(&wire).unwrap() else {
                panic!("incomplete request head")
            };
            assert_eq!(
                (req.method, req.path, req.version),
                (Some("POST"), Some(PATH), Some(1))
            );
            let get = |n: &str| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(n))
                    .map(|h| std::str::from_utf8(h.value).unwrap())
            };
            assert_eq!(get("host"), Some("127.0.0.1:9100"));
            assert_eq!(get("authorization"), Some("Bearer sim-ark-key"));
            assert_eq!(get("content-type"), Some("application/json"));
            assert_eq!(get("content-length"), Some("18"));
            assert_eq!(get("connection"), close);
            assert_eq!(req.headers.len(), 4 + close.is_some() as usize);
            assert_eq!(&wire[at..], body);
        }
    }

    /// A CR or LF in the key or the Host would end the header line early
    /// and let the rest pass as headers of its own.
    #[test]
    fn header_breaking_values_are_refused() {
        let yaml = "endpoints: [{address: '127.0.0.1:9100'}]";
        assert!(client(yaml, "key\r\nX-Injected: 1").is_err());
        let c = client(yaml, "sim-ark-key").unwrap();
        assert!(matches!(
            c.request_wire("ark.example\r\nX-Injected: 1", b"{}"),
            Err(ArkFailure::Transport(_))
        ));
        assert!(header_value_ok("Bearer abc\tdef"));
        assert!(!header_value_ok("a\u{7f}b"));
    }
}
