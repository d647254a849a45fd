//! Answers the gateway writes itself. The one place a [`GatewayError`]
//! becomes an HTTP answer:
//! `{"error":{"code","message"}}` with the right status, `Retry-After` when
//! known, and the route's response filters (request id, rate-limit headers).

use bytes::Bytes;
use kikaku_filters::{ErrorFormat, FilterChain, GatewayError, RequestCtx};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// The status, content type and body of an error, in the request's format:
/// JSON, or an S3 `<Error>` document on the S3 endpoint.
pub fn error_parts(
    err: &GatewayError,
    ctx: &RequestCtx,
    path: &str,
) -> (u16, &'static str, Vec<u8>) {
    match ctx.error_format {
        ErrorFormat::Json => (err.status(), "application/json", err.body()),
        ErrorFormat::Upload => (
            err.status(),
            "application/json",
            crate::reply::json_body(&serde_json::json!({
                "success": false,
                "code": err.status(),
                "msg": err.message,
            })),
        ),
        ErrorFormat::PlainText => (
            err.status(),
            "text/plain; charset=utf-8",
            format!("ERROR {}", err.message.replace(['\r', '\n'], " ")).into_bytes(),
        ),
        ErrorFormat::FileHost => (
            err.status(),
            "application/json",
            crate::reply::json_body(&serde_json::json!({
                "status": false,
                "error": err.message,
                "code": err.kind.code(),
            })),
        ),
        ErrorFormat::S3Xml => (
            err.s3_status(),
            "application/xml",
            crate::s3_xml::error_document(
                err.s3_code(),
                &err.message,
                path,
                ctx.request_id.as_deref().unwrap_or(""),
            )
            .into_bytes(),
        ),
    }
}

/// Build the response header for an error.
fn error_header(
    status: u16,
    content_type: &str,
    err: &GatewayError,
    body_len: usize,
    chain: Option<&FilterChain>,
    ctx: &RequestCtx,
) -> pingora::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(status, Some(6))?;
    resp.insert_header("content-type", content_type)?;
    resp.insert_header("content-length", body_len.to_string())?;
    resp.insert_header("cache-control", "no-store")?;
    if let Some(after) = err.retry_after {
        let secs = (after.as_millis().div_ceil(1000) as u64).max(1);
        resp.insert_header("retry-after", secs.to_string())?;
    }
    if let Some(chain) = chain {
        chain.on_response(&mut resp, ctx);
    } else if let Some(id) = &ctx.request_id {
        resp.insert_header("x-request-id", id.as_str())?;
    }
    Ok(resp)
}

/// Whether the client already has its final answer's header. A
/// `100 Continue` is not one: an upload refused after it still needs its
/// error.
pub fn answered(session: &Session) -> bool {
    session
        .response_written()
        .is_some_and(|r| !r.status.is_informational())
}

/// Answer the client with `err`. Extra headers (e.g. `Allow`) go on top.
pub async fn respond(
    session: &mut Session,
    err: &GatewayError,
    chain: Option<&FilterChain>,
    ctx: &RequestCtx,
    extra: &[(&'static str, String)],
) -> pingora::Result<()> {
    if answered(session) {
        // A handler already answered; a second answer would corrupt the stream.
        return Ok(());
    }
    let (status, content_type, body) = error_parts(err, ctx, session.req_header().uri.path());
    let head_request = session.req_header().method == http::Method::HEAD;
    let mut resp = error_header(status, content_type, err, body.len(), chain, ctx)?;
    for (name, value) in extra {
        resp.insert_header(*name, value.as_str())?;
    }
    // The request body was not read; do not try to reuse the connection.
    session.set_keepalive(None);
    if head_request {
        // HEAD answers carry the length, never a body.
        session.write_response_header(Box::new(resp), true).await?;
    } else {
        session.write_response_header(Box::new(resp), false).await?;
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await?;
    }
    linger(session).await;
    Ok(())
}

/// Most clients send the whole body before reading the answer: closing on
/// them mid-upload turns a clear 4xx into a broken pipe. Like nginx's
/// lingering close, read and discard what is left, within bounds.
async fn linger(session: &mut Session) {
    const MAX_BYTES: usize = 256 << 20;
    const MAX_TIME: std::time::Duration = std::time::Duration::from_secs(5);
    let deadline = tokio::time::Instant::now() + MAX_TIME;
    let mut drained = 0;
    while !session.is_body_done() && drained < MAX_BYTES {
        match tokio::time::timeout_at(deadline, session.read_request_body()).await {
            Ok(Ok(Some(chunk))) => drained += chunk.len(),
            _ => break,
        }
    }
}
