//! A proxied request's tries: which endpoint each goes to, what a failure
//! means for the endpoint (passive health) and whether the request goes
//! once more to another endpoint (`retry`). The phases in `phases.rs` call
//! these at Pingora's hooks, with the route's upstream.

use std::sync::Arc;

use kikaku_filters::{ErrorKind, GatewayError, RequestCtx};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};

use crate::upstreams::{Affinity, Attempt, Failure, PickError, Upstream};

/// What the proxy keeps of a request's tries.
#[derive(Default)]
pub struct Tries {
    /// The try in flight.
    attempt: Option<Attempt>,
    /// Endpoints that failed this request.
    tried: Vec<usize>,
    /// The last answer was refused for a retry (the error that follows is
    /// ours, not the endpoint's).
    status_retry: bool,
    /// A response header went to the client: nothing can be tried again.
    answered: bool,
}

/// Whether the request's body, if any, can be sent again.
fn body_kept(session: &Session, up: &Upstream) -> bool {
    let h = &session.req_header().headers;
    let has_body = h.contains_key(http::header::TRANSFER_ENCODING)
        || h.get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    !has_body || (up.config.retry.buffer_body && !session.as_ref().retry_buffer_truncated())
}

/// Before the first try: keep the body (bounded) when it may be resent.
pub fn prepare(session: &mut Session, up: &Upstream) {
    if up.config.retry.buffer_body && up.retries_method(&session.req_header().method) {
        session.as_mut().enable_retry_buffering();
    }
}

impl Tries {
    /// `upstream_peer`: choose the endpoint of the next try; its peer and
    /// the `Host` to send, or the error the client is told.
    pub fn pick(
        &mut self,
        session: &Session,
        up: &Arc<Upstream>,
        req: &RequestCtx,
    ) -> Result<(Box<HttpPeer>, String), GatewayError> {
        let head = session.req_header();
        let aff = Affinity {
            client_ip: req.client_ip,
            path: Some(head.uri.path()),
            key: req.key.as_ref().map(|k| k.key_ref.as_str()),
            headers: Some(&head.headers),
        };
        // The last try ends (and leaves the in-flight counts) before the next.
        self.attempt = None;
        match up.pick(&aff, &self.tried) {
            Ok(attempt) => {
                let found = (
                    Box::new(attempt.peer()),
                    attempt.endpoint().host_header.clone(),
                );
                self.attempt = Some(attempt);
                Ok(found)
            }
            Err(PickError::Full) => Err(GatewayError::new(
                ErrorKind::ServiceUnavailable,
                format!(
                    "Upstream '{}' is at its limit of requests in flight.",
                    up.name
                ),
            )
            .with_retry_after(up.retry_after())),
            Err(PickError::NoEndpoint) => Err(GatewayError::new(
                ErrorKind::ServiceUnavailable,
                format!("No healthy endpoint for upstream '{}'.", up.name),
            )),
        }
    }

    /// `upstream_request_filter`: the try goes out now.
    pub fn sending(&mut self) {
        if let Some(a) = self.attempt.as_mut() {
            a.sending();
        }
    }

    /// Settle the try in flight as failed; the endpoint is not tried again
    /// for this request.
    fn fail(&mut self, why: Failure) {
        if let Some(mut a) = self.attempt.take() {
            a.failed(why);
            self.tried.push(a.index());
        }
    }

    /// `fail_to_connect`: the request never left, so any method may go to
    /// another endpoint.
    pub fn connect_failed(&mut self, up: Option<&Upstream>, mut e: Box<Error>) -> Box<Error> {
        self.fail(Failure::Connect);
        let retry = up.is_some_and(|up| {
            up.config.retry.retries > 0 && up.may_retry(&self.tried, Failure::Connect)
        });
        e.set_retry(retry);
        e
    }

    /// `upstream_response_filter`: the try answered. A status in
    /// `retry.on_status` is turned into a retry while one is allowed.
    pub fn answered(
        &mut self,
        session: &Session,
        up: Option<&Upstream>,
        resp: &ResponseHeader,
    ) -> pingora::Result<()> {
        let status = resp.status.as_u16();
        if let Some(a) = self.attempt.as_mut() {
            a.answered(status);
        }
        let Some(up) = up else {
            return Ok(());
        };
        if up.retries_status(status) && up.retries_method(&session.req_header().method) {
            if !body_kept(session, up) {
                up.retry_refused_for_body();
            } else {
                let mut tried = self.tried.clone();
                tried.extend(self.attempt.as_ref().map(|a| a.index()));
                if up.may_retry(&tried, Failure::Status) {
                    self.tried = tried;
                    self.attempt = None;
                    self.status_retry = true;
                    let mut e = Error::new(ErrorType::HTTPStatus(status));
                    e.set_retry(true);
                    return Err(e);
                }
            }
        }
        self.answered = true;
        Ok(())
    }

    /// `error_while_proxy`: the try broke after it was sent.
    pub fn broke(
        &mut self,
        session: &Session,
        up: Option<&Upstream>,
        mut e: Box<Error>,
        reused: bool,
    ) -> Box<Error> {
        if std::mem::take(&mut self.status_retry) {
            return e; // our own refusal of an answer: the retry stands
        }
        if e.esource() != &ErrorSource::Upstream || self.answered {
            e.set_retry(false);
            return e;
        }
        let method_ok = up.is_some_and(|up| up.retries_method(&session.req_header().method));
        let why = match e.etype() {
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => Failure::Timeout,
            _ => Failure::Broken,
        };
        if reused && why == Failure::Broken {
            // A pooled connection the endpoint had closed: not the endpoint's
            // failure; once more (to any endpoint) as Pingora does, when the
            // request can be sent again.
            let again = method_ok && up.is_some_and(|up| body_kept(session, up));
            e.set_retry(again);
            return e;
        }
        self.fail(why);
        let retry = match up {
            Some(up) if method_ok => {
                if body_kept(session, up) {
                    up.may_retry(&self.tried, why)
                } else {
                    up.retry_refused_for_body();
                    false
                }
            }
            _ => false,
        };
        e.set_retry(retry);
        e
    }
}
