//! Headers in, answers out: which client headers reach the backend, and how
//! the backend's answer reaches the client (streamed, or — for the few XML
//! documents that name buckets — rewritten to the tenant's names).

use crate::reply::Exchange;
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use kikaku_filters::{ErrorKind, GatewayError};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;

use crate::s3_xml as xml;

/// Client headers forwarded to the backend, besides `x-amz-meta-*`.
const FORWARD: &[&str] = &[
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-md5",
    "content-type",
    "expires",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-unmodified-since",
    "range",
    "x-amz-checksum-mode",
    "x-amz-copy-source-if-match",
    "x-amz-copy-source-if-modified-since",
    "x-amz-copy-source-if-none-match",
    "x-amz-copy-source-if-unmodified-since",
    "x-amz-copy-source-range",
    "x-amz-metadata-directive",
    "x-amz-storage-class",
    "x-amz-website-redirect-location",
];

/// Checksum headers travel only with bodies the backend gets unchanged
/// (not aws-chunked: there the gateway checks the trailer itself).
const CHECKSUMS: &[&str] = &[
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
    "x-amz-sdk-checksum-algorithm",
    "x-amz-checksum-algorithm",
];

/// Backend answer headers the client sees.
const RELAY: &[&str] = &[
    "accept-ranges",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-range",
    "content-type",
    "etag",
    "expires",
    "last-modified",
    "x-amz-delete-marker",
    "x-amz-mp-parts-count",
    "x-amz-storage-class",
    "x-amz-version-id",
    "x-amz-server-side-encryption",
    "x-amz-copy-source-version-id",
    "x-amz-website-redirect-location",
];

/// The client headers to send on, with `aws-chunked` taken out of
/// Content-Encoding. A date condition that RFC 9110 (and S3) ignores beside
/// its ETag condition (`If-Unmodified-Since` with `If-Match`,
/// `If-Modified-Since` with `If-None-Match`) is left out, so no backend
/// can weigh it.
pub fn forward_headers(req: &RequestHeader, streaming: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let has = |n: &str| req.headers.contains_key(n);
    let outranked = |n: &str| {
        (n == "if-unmodified-since" && has("if-match"))
            || (n == "if-modified-since" && has("if-none-match"))
    };
    for (name, value) in req.headers.iter() {
        let n = name.as_str();
        if outranked(n) {
            continue;
        }
        let keep = FORWARD.contains(&n)
            || n.starts_with("x-amz-meta-")
            || (!streaming && CHECKSUMS.contains(&n));
        if !keep {
            continue;
        }
        let Some(v) = sigv4::header_text(value) else {
            continue;
        };
        let v = v.as_str();
        if n == "content-encoding" {
            let rest: Vec<&str> = v
                .split(',')
                .map(str::trim)
                .filter(|e| !e.eq_ignore_ascii_case("aws-chunked") && !e.is_empty())
                .collect();
            if !rest.is_empty() {
                out.push((n.to_string(), rest.join(",")));
            }
            continue;
        }
        out.push((n.to_string(), v.to_string()));
    }
    out
}

/// How to hand the backend's answer on.
pub struct Relay<'a> {
    /// `(backend name, tenant name)` of the bucket, for XML that names it.
    pub bucket: Option<(&'a str, &'a str)>,
    /// Buffer XML bodies of successful answers to rewrite bucket names.
    pub rewrite_success: bool,
    /// An `<Owner>` element for every listed object that lacks one
    /// (ListObjects always, ListObjectsV2 with `fetch-owner=true`).
    pub owner: Option<String>,
    /// ListObjects (v1): the `Marker` S3 always echoes (some backends
    /// leave it out).
    pub marker: Option<String>,
    /// Headers set on a successful answer over the backend's (the stored
    /// content type of an upload, `Content-Disposition: attachment`).
    pub set: Vec<(&'static str, String)>,
}

impl Relay<'_> {
    /// An answer passed on as it is (no bucket names, nothing added).
    pub fn plain() -> Self {
        Relay {
            bucket: None,
            rewrite_success: false,
            owner: None,
            marker: None,
            set: Vec::new(),
        }
    }

    /// An answer passed on with these headers set (when it succeeds).
    pub fn with(set: Vec<(&'static str, String)>) -> Self {
        Relay {
            set,
            ..Relay::plain()
        }
    }
}

/// Largest XML answer buffered for rewriting (a 1,000-key listing with long
/// keys stays far below).
const MAX_XML: usize = 16 << 20;

pub async fn relay(
    ex: &mut Exchange<'_>,
    resp: reqwest::Response,
    how: Relay<'_>,
) -> Result<(), GatewayError> {
    let status = resp.status().as_u16();
    let head = ex.session.req_header().method == http::Method::HEAD;
    let mut header = ResponseHeader::build(status, Some(12)).map_err(internal)?;
    for name in RELAY {
        if let Some(v) = resp.headers().get(*name) {
            header
                .insert_header(*name, v.as_bytes())
                .map_err(internal)?;
        }
    }
    for (name, v) in resp.headers() {
        let n = name.as_str();
        if n.starts_with("x-amz-meta-") || n.starts_with("x-amz-checksum-") {
            header
                .insert_header(n.to_string(), v.as_bytes())
                .map_err(internal)?;
        }
    }
    if let Some(id) = &ex.ctx.request_id {
        header
            .insert_header("x-amz-request-id", id.as_str())
            .map_err(internal)?;
    }
    let success = (200..300).contains(&status);
    if success {
        for (name, v) in &how.set {
            header.insert_header(*name, v.as_str()).map_err(internal)?;
        }
    }
    let rewrite = !head && (!success || how.rewrite_success);
    if rewrite {
        let body = read_bounded(resp).await?;
        let mut text = String::from_utf8_lossy(&body).into_owned();
        if !success && error_code(&body).as_deref() == Some("NoSuchBucket") {
            return Err(access_denied());
        }
        if let Some((backend, tenant)) = how.bucket {
            text = xml::rewrite_bucket_names(&text, backend, tenant);
        }
        if let (true, Some(owner)) = (success, &how.owner) {
            text = xml::add_owner(&text, owner);
        }
        if let (true, Some(marker)) = (success, &how.marker) {
            text = xml::ensure_marker(&text, marker);
        }
        header
            .insert_header("content-length", text.len().to_string())
            .map_err(internal)?;
        ex.filter_response(&mut header);
        write(ex.session, header, Some(Bytes::from(text)), true).await;
        return Ok(());
    }
    if let Some(len) = resp.headers().get("content-length") {
        header
            .insert_header("content-length", len.as_bytes())
            .map_err(internal)?;
    }
    ex.filter_response(&mut header);
    if head {
        write(ex.session, header, None, true).await;
        return Ok(());
    }
    if ex
        .session
        .write_response_header(Box::new(header), false)
        .await
        .is_err()
    {
        return Ok(());
    }
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let mut bytes = match chunk {
            Ok(b) => b,
            Err(e) => {
                cut_short(ex.session, e);
                return Ok(());
            }
        };
        // Backends often send small pieces: join what is already here (up
        // to COALESCE) so each downstream write carries more than a few KiB.
        if bytes.len() < COALESCE {
            let mut joined = bytes::BytesMut::from(&bytes[..]);
            while joined.len() < COALESCE {
                match stream.next().now_or_never() {
                    Some(Some(Ok(more))) => joined.extend_from_slice(&more),
                    Some(Some(Err(e))) => {
                        cut_short(ex.session, e);
                        return Ok(());
                    }
                    _ => break,
                }
            }
            bytes = joined.freeze();
        }
        if ex
            .session
            .write_response_body(Some(bytes), false)
            .await
            .is_err()
        {
            // The client left; dropping the stream closes the backend side.
            return Ok(());
        }
    }
    let _ = ex.session.write_response_body(None, true).await;
    Ok(())
}

/// Pieces smaller than this are joined with what is already buffered.
const COALESCE: usize = 256 << 10;

/// The backend failed mid-body. Headers are out: all we can do is cut the
/// answer short (no keep-alive), so the client sees an incomplete body.
fn cut_short(session: &mut Session, e: reqwest::Error) {
    log::warn!("storage backend body failed mid-stream: {e}");
    session.set_keepalive(None);
}

pub fn access_denied() -> GatewayError {
    GatewayError::new(ErrorKind::Forbidden, "Access Denied").with_s3(403, "AccessDenied")
}

fn error_code(body: &[u8]) -> Option<String> {
    xml::texts_at(body, &["Error", "Code"])?.pop()
}

async fn read_bounded(resp: reqwest::Response) -> Result<Vec<u8>, GatewayError> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            GatewayError::new(ErrorKind::BadGateway, format!("storage backend: {e}"))
        })?;
        if out.len() + chunk.len() > MAX_XML {
            return Err(GatewayError::new(
                ErrorKind::BadGateway,
                "storage backend answer too large to rewrite",
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn write(session: &mut Session, header: ResponseHeader, body: Option<Bytes>, end: bool) {
    let has_body = body.is_some();
    if session
        .write_response_header(Box::new(header), !has_body && end)
        .await
        .is_err()
    {
        return;
    }
    if has_body {
        let _ = session.write_response_body(body, end).await;
    }
}

pub use crate::reply::internal;

/// Answer with an XML document the gateway made (ListBuckets, ...).
pub async fn respond_xml(
    ex: &mut Exchange<'_>,
    status: u16,
    body: String,
    extra: &[(&str, String)],
) -> Result<(), GatewayError> {
    let mut header = ResponseHeader::build(status, Some(6)).map_err(internal)?;
    header
        .insert_header("content-type", "application/xml")
        .map_err(internal)?;
    header
        .insert_header("content-length", body.len().to_string())
        .map_err(internal)?;
    if let Some(id) = &ex.ctx.request_id {
        header
            .insert_header("x-amz-request-id", id.as_str())
            .map_err(internal)?;
    }
    for (n, v) in extra {
        header
            .insert_header(n.to_string(), v.as_str())
            .map_err(internal)?;
    }
    ex.filter_response(&mut header);
    let head = ex.session.req_header().method == http::Method::HEAD;
    if head || body.is_empty() {
        write(ex.session, header, None, true).await;
    } else {
        write(ex.session, header, Some(Bytes::from(body)), true).await;
    }
    Ok(())
}
