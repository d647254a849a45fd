//! `GET|HEAD /f/{hash}`, `/f/{hash}.{ext}` and `/f/{hash}/{name}`: hosted
//! content, without a key, while someone holds it (else 404). The ETag is
//! the content's hash, so conditions on it are answered here; Range and
//! date conditions go to the backend. The content type is the one recorded
//! at the first upload, and the answer is sandboxed (`Content-Security-
//! Policy: sandbox`): a hosted HTML page cannot script the gateway's origin,
//! where the portal keeps its key.

use kikaku_filters::{ErrorKind, GatewayError};
use pingora::http::RequestHeader;

use super::{parse_hash, unavailable, FileHost};
use crate::reply::{internal, Exchange};
use crate::storage::s3_endpoint::relay::{relay, Relay};

/// How long clients may cache content (it never changes under its hash,
/// but may be deleted).
const MAX_AGE_SECS: u32 = 86_400;

fn not_found() -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, "No such file.")
}

/// The hash in `{hash}`, `{hash}.{ext}` or `{hash}/{name}`.
fn hash_of(rest: &str) -> Option<String> {
    let end = rest.find(['.', '/']).unwrap_or(rest.len());
    parse_hash(&rest[..end])
}

/// Whether an `If-None-Match` / `If-Match` list names `etag` (weakly: the
/// `W/` prefix is ignored, as RFC 9110 has it for If-None-Match).
fn names_etag(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// What the request's conditions on the ETag decide before the backend
/// is asked.
#[derive(Debug, PartialEq, Eq)]
enum Precondition {
    /// Send the content (or the range).
    Go {
        keep_range: bool,
    },
    NotModified,
    Failed,
}

fn precondition(req: &RequestHeader, etag: &str) -> Precondition {
    let header = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(m) = header("if-match") {
        if !names_etag(m, etag) {
            return Precondition::Failed;
        }
    }
    if let Some(m) = header("if-none-match") {
        if names_etag(m, etag) {
            return Precondition::NotModified;
        }
    }
    // If-Range with an entity tag: the range only while it is ours. A date
    // always holds (the content never changes under its hash).
    let keep_range = header("if-range")
        .is_none_or(|v| !(v.starts_with('"') || v.starts_with("W/")) || v == etag);
    Precondition::Go { keep_range }
}

impl FileHost {
    pub(super) async fn serve(
        &self,
        ex: &mut Exchange<'_>,
        rest: &str,
    ) -> Result<(), GatewayError> {
        let req = ex.session.req_header();
        if !matches!(req.method, http::Method::GET | http::Method::HEAD) {
            return Err(GatewayError::new(
                ErrorKind::MethodNotAllowed,
                format!("{} is not allowed on a file; use GET or HEAD.", req.method),
            ));
        }
        let hash = hash_of(rest).ok_or_else(not_found)?;
        let state = &self.storage.state;
        let content = match state.hosted_get(&hash).await.map_err(unavailable)? {
            Some((c, holders)) if holders > 0 => c,
            _ => return Err(not_found()),
        };
        let etag = format!("\"{hash}\"");
        let cache = format!("public, max-age={MAX_AGE_SECS}");
        let keep_range = match precondition(req, &etag) {
            Precondition::Go { keep_range } => keep_range,
            Precondition::Failed => {
                return Err(GatewayError::new(
                    ErrorKind::PreconditionFailed,
                    "If-Match does not name this file's ETag.",
                ))
            }
            Precondition::NotModified => {
                let headers = vec![("etag", etag), ("cache-control", cache)];
                return ex.send(304, headers, bytes::Bytes::new()).await;
            }
        };
        // The backend sees Range and the date conditions only.
        let mut backend_req =
            RequestHeader::build(req.method.clone(), b"/", None).map_err(internal)?;
        for name in ["range", "if-modified-since", "if-unmodified-since"] {
            if name == "range" && !keep_range {
                continue;
            }
            if let Some(v) = req.headers.get(name) {
                backend_req
                    .insert_header(name, v.clone())
                    .map_err(internal)?;
            }
        }
        let resp = self
            .storage
            .read_object(&backend_req, self.cfg.bucket.clone(), hash, not_found)
            .await?;
        let set = vec![
            ("content-type", content.content_type),
            ("etag", etag),
            ("cache-control", cache),
            ("x-content-type-options", "nosniff".to_string()),
            ("content-security-policy", "sandbox".to_string()),
            ("accept-ranges", "bytes".to_string()),
        ];
        relay(ex, resp, Relay::with(set)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&'static str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/f/x", None).unwrap();
        for (n, v) in headers {
            r.insert_header(*n, *v).unwrap();
        }
        r
    }

    #[test]
    fn hashes_in_the_three_url_forms() {
        let h = "ab".repeat(32);
        assert_eq!(hash_of(&h), Some(h.clone()));
        assert_eq!(hash_of(&format!("{h}.png")), Some(h.clone()));
        assert_eq!(hash_of(&format!("{h}/my cat.jpg")), Some(h.clone()));
        assert_eq!(hash_of("abc.png"), None);
        assert_eq!(hash_of(""), None);
    }

    #[test]
    fn conditions_on_the_hash_etag() {
        let etag = "\"abc\"";
        let go = Precondition::Go { keep_range: true };
        assert_eq!(precondition(&req(&[]), etag), go);
        assert_eq!(
            precondition(&req(&[("if-none-match", "\"x\", \"abc\"")]), etag),
            Precondition::NotModified
        );
        assert_eq!(
            precondition(&req(&[("if-none-match", "W/\"abc\"")]), etag),
            Precondition::NotModified
        );
        assert_eq!(precondition(&req(&[("if-none-match", "\"x\"")]), etag), go);
        assert_eq!(
            precondition(&req(&[("if-match", "\"x\"")]), etag),
            Precondition::Failed
        );
        assert_eq!(precondition(&req(&[("if-match", "*")]), etag), go);
        assert_eq!(
            precondition(&req(&[("if-range", "\"old\"")]), etag),
            Precondition::Go { keep_range: false }
        );
        assert_eq!(precondition(&req(&[("if-range", "\"abc\"")]), etag), go);
        assert_eq!(
            precondition(&req(&[("if-range", "Wed, 21 Oct 2015 07:28:00 GMT")]), etag),
            go
        );
    }
}
