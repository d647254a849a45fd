//! The one way a handler answers: an [`Exchange`] holds the request (its
//! session and typed context) and writes the answer, running the route's
//! response filters on its header exactly there, so a handler never sees
//! the filter chain. Errors a handler returns are answered by
//! [`crate::reply::error`], through the same filters, by the proxy.

pub mod error;

use bytes::{Bytes, BytesMut};
use kikaku_filters::{ErrorKind, FilterChain, GatewayError, RequestCtx};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use serde_json::Value;

pub struct Exchange<'a> {
    pub session: &'a mut Session,
    pub ctx: &'a mut RequestCtx,
    chain: &'a FilterChain,
}

impl<'a> Exchange<'a> {
    /// Made by the proxy for the route's handler.
    pub(crate) fn new(
        session: &'a mut Session,
        chain: &'a FilterChain,
        ctx: &'a mut RequestCtx,
    ) -> Exchange<'a> {
        Exchange {
            session,
            ctx,
            chain,
        }
    }

    /// The route's response filters on a header about to be sent (rate
    /// limit headers, request id, ...). Call it once per answer, just
    /// before its header goes out.
    pub fn filter_response(&self, resp: &mut ResponseHeader) {
        self.chain.on_response(resp, self.ctx);
    }

    /// `v` as the JSON answer (a `Value` always serializes), through the
    /// response filters; `Err` only when the client could not be written to.
    pub async fn send_json(&mut self, status: u16, v: &Value) -> pingora::Result<()> {
        let body = Bytes::from(json_body(v));
        let mut resp = ResponseHeader::build(status, Some(4))?;
        resp.insert_header("content-type", "application/json")?;
        resp.insert_header("content-length", body.len().to_string())?;
        resp.insert_header("cache-control", "no-store")?;
        self.filter_response(&mut resp);
        self.session
            .write_response_header(Box::new(resp), false)
            .await?;
        self.session.write_response_body(Some(body), true).await
    }

    /// `send_json`, for handlers with nothing left to do when the client
    /// has gone (noted at debug level).
    pub async fn json(&mut self, status: u16, v: Value) -> Result<(), GatewayError> {
        if let Err(e) = self.send_json(status, &v).await {
            log::debug!("answer not delivered: {e}");
        }
        Ok(())
    }
}

impl Exchange<'_> {
    /// A small answer written whole: `headers`, then `body` (none for HEAD
    /// or when it is empty), through the response filters. A client that
    /// has gone is noted at debug level.
    pub async fn send(
        &mut self,
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Bytes,
    ) -> Result<(), GatewayError> {
        let mut resp = ResponseHeader::build(status, Some(headers.len())).map_err(internal)?;
        for (name, value) in headers {
            resp.insert_header(name, value).map_err(internal)?;
        }
        self.filter_response(&mut resp);
        let bodyless = body.is_empty() || self.session.req_header().method == http::Method::HEAD;
        let sent = async {
            self.session
                .write_response_header(Box::new(resp), bodyless)
                .await?;
            if !bodyless {
                self.session.write_response_body(Some(body), true).await?;
            }
            Ok::<(), Box<pingora::Error>>(())
        };
        if let Err(e) = sent.await {
            log::debug!("answer not delivered: {e}");
        }
        Ok(())
    }

    /// Start an answer whose body follows in pieces ([`Exchange::write_chunk`]):
    /// `headers` and chunked framing, through the response filters. Each
    /// piece is flushed as it is written (server-sent events).
    pub async fn open_stream(
        &mut self,
        status: u16,
        headers: Vec<(&'static str, String)>,
    ) -> pingora::Result<()> {
        let mut resp = ResponseHeader::build(status, Some(headers.len() + 1))?;
        for (name, value) in headers {
            resp.insert_header(name, value)?;
        }
        resp.insert_header("transfer-encoding", "chunked")?;
        self.filter_response(&mut resp);
        self.session
            .write_response_header(Box::new(resp), false)
            .await
    }

    /// One piece of a streamed answer; `end` finishes it.
    pub async fn write_chunk(&mut self, piece: Bytes, end: bool) -> pingora::Result<()> {
        self.session.write_response_body(Some(piece), end).await
    }

    /// A short plain-text answer (seed 001's `OK <hash>`).
    pub async fn text(&mut self, status: u16, text: String) -> Result<(), GatewayError> {
        let headers = vec![
            ("content-type", "text/plain; charset=utf-8".to_string()),
            ("content-length", text.len().to_string()),
            ("cache-control", "no-store".to_string()),
        ];
        self.send(status, headers, Bytes::from(text)).await
    }
}

/// A failure of the gateway itself (500), from whatever says what it was.
pub fn internal(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::new(ErrorKind::Internal, e.to_string())
}

/// A JSON value's bytes. `to_vec` writes straight into the buffer; `Value`'s
/// `Display` goes through `fmt::Write` a token at a time (2.3% more
/// instructions on the image route). A `Value` always serializes; were it
/// ever not to, the text form is still the whole answer, never an empty one.
pub fn json_body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|_| v.to_string().into_bytes())
}

/// The base of absolute URLs handed to a client: `configured`, or the
/// scheme and Host of the request (`http://127.0.0.1:8080`).
pub fn public_base(session: &Session, configured: Option<&str>) -> String {
    if let Some(u) = configured {
        return u.trim_end_matches('/').to_string();
    }
    let host = session
        .req_header()
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    format!("{}://{host}", if tls { "https" } else { "http" })
}

/// The request's `Content-Length`, when it has a valid one.
pub fn declared_length(session: &Session) -> Option<u64> {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Read the whole request body, refusing past `max` bytes.
pub async fn read_body(session: &mut Session, max: usize) -> Result<Bytes, GatewayError> {
    let declared = declared_length(session).map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let too_large = || {
        GatewayError::new(
            ErrorKind::PayloadTooLarge,
            format!("The request body is larger than {max} bytes."),
        )
    };
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(max));
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > max {
                    return Err(too_large());
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => {
                return Err(GatewayError::new(
                    ErrorKind::BadRequest,
                    format!("The request body could not be read: {e}"),
                ))
            }
        }
    }
}
