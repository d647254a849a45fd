//! A proxied request's tries: which endpoint each goes to, what a failure
//! means for the endpoint (passive health) and whether the request goes
//! once more to another endpoint (`retry`). The phases in `phases.rs` call
//! these at Pingora's hooks.

use std::sync::Arc;

use kikaku_filters::{ErrorKind, GatewayError};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};

use crate::proxy::phases::Ctx;
use crate::proxy::routing::Target;
use crate::upstreams::{Affinity, Attempt, Failure, PickError, Upstream};

/// What the proxy keeps of a request's tries.
#[derive(Default)]
pub struct Tries {
    /// The try in flight.
    pub attempt: Option<Attempt>,
    /// Endpoints that failed this request.
    pub tried: Vec<usize>,
    /// The last answer was refused for a retry (the error that follows is
    /// ours, not the endpoint's).
    status_retry: bool,
    /// A response header went to the client: nothing can be tried again.
    answered: bool,
}

fn upstream(ctx: &Ctx) -> Option<Arc<Upstream>> {
    match ctx.route.as_ref().map(|r| &r.target) {
        Some(Target::Upstream(up)) => Some(up.clone()),
        _ => None,
    }
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

/// `upstream_peer`: choose the endpoint of the next try.
pub fn pick(session: &Session, ctx: &mut Ctx) -> pingora::Result<Box<HttpPeer>> {
    let up =
        upstream(ctx).ok_or_else(|| Error::explain(ErrorType::InternalError, "no upstream"))?;
    let req = session.req_header();
    let aff = Affinity {
        client_ip: ctx.req.client_ip,
        path: Some(req.uri.path()),
        key: ctx.req.key.as_ref().map(|k| k.key_ref.as_str()),
        headers: Some(&req.headers),
    };
    // The last try ends (and leaves the in-flight counts) before the next.
    ctx.tries.attempt = None;
    match up.pick(&aff, &ctx.tries.tried) {
        Ok(attempt) => {
            let peer = attempt.peer();
            ctx.upstream_host = Some(attempt.endpoint().host_header.clone());
            ctx.tries.attempt = Some(attempt);
            Ok(Box::new(peer))
        }
        Err(why) => {
            let err = match why {
                PickError::Full => GatewayError::new(
                    ErrorKind::ServiceUnavailable,
                    format!(
                        "Upstream '{}' is at its limit of requests in flight.",
                        up.name
                    ),
                )
                .with_retry_after(up.retry_after()),
                PickError::NoEndpoint => GatewayError::new(
                    ErrorKind::ServiceUnavailable,
                    format!("No healthy endpoint for upstream '{}'.", up.name),
                ),
            };
            ctx.error = Some(err);
            Error::e_explain(
                ErrorType::HTTPStatus(503),
                "no upstream endpoint to send to",
            )
        }
    }
}

/// Settle the try in flight as failed; the endpoint is not tried again
/// for this request.
fn fail(ctx: &mut Ctx, why: Failure) {
    if let Some(mut a) = ctx.tries.attempt.take() {
        a.failed(why);
        ctx.tries.tried.push(a.index());
    }
}

/// `fail_to_connect`: the request never left, so any method may go to
/// another endpoint.
pub fn connect_failed(ctx: &mut Ctx, mut e: Box<Error>) -> Box<Error> {
    fail(ctx, Failure::Connect);
    let retry = upstream(ctx).is_some_and(|up| {
        up.config.retry.retries > 0 && up.may_retry(&ctx.tries.tried, Failure::Connect)
    });
    e.set_retry(retry);
    e
}

/// `upstream_response_filter`: the try answered. A status in
/// `retry.on_status` is turned into a retry while one is allowed.
pub fn answered(session: &Session, resp: &ResponseHeader, ctx: &mut Ctx) -> pingora::Result<()> {
    let status = resp.status.as_u16();
    if let Some(a) = ctx.tries.attempt.as_mut() {
        a.answered(status);
    }
    let Some(up) = upstream(ctx) else {
        return Ok(());
    };
    if up.retries_status(status) && up.retries_method(&session.req_header().method) {
        if !body_kept(session, &up) {
            up.retry_refused_for_body();
        } else {
            let index = ctx.tries.attempt.as_ref().map(|a| a.index());
            let mut tried = ctx.tries.tried.clone();
            tried.extend(index);
            if up.may_retry(&tried, Failure::Status) {
                ctx.tries.tried = tried;
                ctx.tries.attempt = None;
                ctx.tries.status_retry = true;
                let mut e = Error::new(ErrorType::HTTPStatus(status));
                e.set_retry(true);
                return Err(e);
            }
        }
    }
    ctx.tries.answered = true;
    Ok(())
}

/// `error_while_proxy`: the try broke after it was sent.
pub fn broke(session: &Session, ctx: &mut Ctx, mut e: Box<Error>, reused: bool) -> Box<Error> {
    if std::mem::take(&mut ctx.tries.status_retry) {
        return e; // our own refusal of an answer: the retry stands
    }
    let up = upstream(ctx);
    let method_ok = up
        .as_ref()
        .is_some_and(|up| up.retries_method(&session.req_header().method));
    if e.esource() != &ErrorSource::Upstream || ctx.tries.answered {
        e.set_retry(false);
        return e;
    }
    let why = match e.etype() {
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => Failure::Timeout,
        _ => Failure::Broken,
    };
    if reused && why == Failure::Broken {
        // A pooled connection the endpoint had closed: not the endpoint's
        // failure; once more (to any endpoint) as Pingora does, when the
        // request can be sent again.
        let again = method_ok && up.as_ref().is_some_and(|up| body_kept(session, up));
        e.set_retry(again);
        return e;
    }
    fail(ctx, why);
    let retry = match &up {
        Some(up) if method_ok => {
            if body_kept(session, up) {
                up.may_retry(&ctx.tries.tried, why)
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
