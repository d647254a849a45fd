//! One Ark call, from connecting to the answer's header, and the image
//! route's Ark calls under the pool's rules, as proxied routes are: the endpoint is picked by the pool's `balance` (`hash_on: key`
//! keeps a key on one endpoint), the try counts in flight and feeds passive
//! health, a connection that cannot be made goes to another endpoint, and
//! the `retry` settings (`on_status`, `methods` with POST) and its budget
//! apply to the rest.

use bytes::{Bytes, BytesMut};
use pingora::protocols::http::v1::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;
use pingora::Error;
use pingora_http::RequestHeader;
use serde_json::Value;

use super::ark_client::{failure, failure_kind, ArkClient, ArkFailure, MAX_ANSWER_BYTES, PATH};
use super::ark_session::{send_negotiated, ArkSession};
use crate::upstreams::{Affinity, Attempt, Failure, PickError};

/// A finished exchange: status and the whole body.
struct Exchange {
    status: u16,
    body: BytesMut,
}

/// How starting a call failed: before a connection existed (the request
/// never left, so it may go elsewhere) or after it was sent.
pub(super) enum StartError {
    Connect(ArkFailure),
    Sent(ArkFailure),
}

/// A call whose answer's header has arrived.
pub(super) struct Started {
    pub session: ArkSession,
    pub peer: HttpPeer,
    /// Holds the endpoint's place in flight while the answer is read.
    pub attempt: Attempt,
}

impl ArkClient {
    /// One generation (`stream` off): Ark's JSON answer.
    pub async fn generate(&self, body: &Value, aff: &Affinity<'_>) -> Result<Value, ArkFailure> {
        let payload = serde_json::to_vec(body).map_err(|e| ArkFailure::BadBody(e.to_string()))?;
        let ex = self.exchange(aff, &payload).await?;
        if ex.status != 200 {
            return Err(ArkFailure::from_error_body(ex.status, &ex.body));
        }
        let v: Value =
            serde_json::from_slice(&ex.body).map_err(|e| ArkFailure::BadBody(e.to_string()))?;
        if !v["data"].is_array() {
            return Err(ArkFailure::BadBody("no data array".into()));
        }
        Ok(v)
    }

    /// Send one request and read the answer's header. A pooled connection
    /// the server has meanwhile closed fails before any answer arrives; the
    /// request is then sent once more on a new connection (it never
    /// reached Ark).
    pub(super) async fn start(
        &self,
        peer: &HttpPeer,
        host: &str,
        payload: &[u8],
    ) -> Result<ArkSession, StartError> {
        if self.upstream.http2() {
            return self.start_negotiated(peer, host, payload).await;
        }
        let wire = self.request_wire(host, payload).map_err(StartError::Sent)?;
        self.start_h1(peer, &wire).await.map(ArkSession::H1)
    }

    /// [`start`](Self::start) over a negotiated protocol: the same request
    /// as a `RequestHeader`, on Pingora's HTTP connector.
    async fn start_negotiated(
        &self,
        peer: &HttpPeer,
        host: &str,
        payload: &[u8],
    ) -> Result<ArkSession, StartError> {
        let bad = |e: Box<Error>| {
            StartError::Sent(ArkFailure::Transport(format!("the request to Ark: {e}")))
        };
        let mut req = RequestHeader::build("POST", PATH.as_bytes(), Some(4)).map_err(bad)?;
        let len = payload.len().to_string();
        for (name, value) in [
            ("host", host),
            ("authorization", self.authorization.as_str()),
            ("content-type", "application/json"),
            ("content-length", len.as_str()),
        ] {
            req.insert_header(name, value).map_err(bad)?;
        }
        let payload = Bytes::copy_from_slice(payload);
        let (mut s, reused) = self
            .http_connector()
            .get_http_session(peer)
            .await
            .map_err(|e| StartError::Connect(failure(&e)))?;
        match send_negotiated(&mut s, peer, &req, &payload).await {
            // A pooled connection the server has meanwhile closed: once more
            // on a new one (the request never reached Ark).
            Err(e) if reused => {
                log::debug!("pooled Ark connection failed before an answer ({e}); retrying");
                let (mut s, _) = self
                    .http_connector()
                    .get_http_session(peer)
                    .await
                    .map_err(|e| StartError::Connect(failure(&e)))?;
                send_negotiated(&mut s, peer, &req, &payload)
                    .await
                    .map_err(|e| StartError::Sent(failure(&e)))?;
                Ok(ArkSession::Negotiated(s))
            }
            r => r
                .map(|()| ArkSession::Negotiated(s))
                .map_err(|e| StartError::Sent(failure(&e))),
        }
    }

    /// [`start`](Self::start) over HTTP/1.1 on the client's own connections.
    async fn start_h1(&self, peer: &HttpPeer, wire: &[u8]) -> Result<HttpSession, StartError> {
        let connect = |e: Box<Error>| StartError::Connect(failure(&e));
        let sent = |e: Box<Error>| StartError::Sent(failure(&e));
        let (stream, reused) = self.connector().get_stream(peer).await.map_err(connect)?;
        match self.send(peer, stream, wire).await {
            Err(e) if reused => {
                log::debug!("pooled Ark connection failed before an answer ({e}); retrying");
                let stream = self.connector().new_stream(peer).await.map_err(connect)?;
                self.send(peer, stream, wire).await.map_err(sent)
            }
            r => r.map_err(sent),
        }
    }

    /// One request and its whole answer.
    async fn exchange(&self, aff: &Affinity<'_>, payload: &[u8]) -> Result<Exchange, ArkFailure> {
        let Started {
            session: mut s,
            peer,
            attempt: _attempt,
        } = self.start_tried(aff, payload).await?;
        let peer = &peer;
        let status = s.status();
        let mut body = BytesMut::new();
        while let Some(chunk) = s.read_body().await.map_err(|e| failure(&e))? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(ArkFailure::BadBody("answer larger than 512 MiB".into()));
            }
            body.extend_from_slice(&chunk);
        }
        self.release(s, peer).await;
        Ok(Exchange { status, body })
    }

    /// Send `payload` to an endpoint of the pool and read the answer's
    /// header, trying others as the pool's retry rules allow.
    pub(super) async fn start_tried(
        &self,
        aff: &Affinity<'_>,
        payload: &[u8],
    ) -> Result<Started, ArkFailure> {
        let up = &self.upstream;
        let mut tried = Vec::new();
        let post_retried = up.retries_method(&http::Method::POST);
        loop {
            let mut attempt = up.pick(aff, &tried).map_err(|e| match e {
                PickError::Full => ArkFailure::Full(up.retry_after()),
                PickError::NoEndpoint => ArkFailure::NoEndpoint,
            })?;
            let peer = attempt.peer();
            attempt.sending();
            let host = &attempt.endpoint().host_header;
            let (why, err) = match self.start(&peer, host, payload).await {
                Ok(session) => {
                    let status = session.status();
                    attempt.answered(status);
                    let mut again = tried.clone();
                    again.push(attempt.index());
                    if status != 200
                        && post_retried
                        && up.retries_status(status)
                        && up.may_retry(&again, Failure::Status)
                    {
                        log::debug!("Ark answered {status}; trying another endpoint");
                        tried = again;
                        continue;
                    }
                    return Ok(Started {
                        session,
                        peer,
                        attempt,
                    });
                }
                Err(StartError::Connect(f)) => (Failure::Connect, f),
                Err(StartError::Sent(f)) => (failure_kind(&f), f),
            };
            attempt.failed(why);
            tried.push(attempt.index());
            let may = up.config.retry.retries > 0 && (why == Failure::Connect || post_retried);
            if !(may && up.may_retry(&tried, why)) {
                return Err(err);
            }
            log::debug!("Ark call failed ({}); trying another endpoint", why.label());
        }
    }
}
