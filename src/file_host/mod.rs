//! The content-addressed file host (DESIGN §6, seed 001).
//!
//! - `POST /api/upload` with a storage key: multipart `file`, registered to
//!   the key's account; without a key it is an anonymous upload (when
//!   `file_host.anonymous.enabled`, else 401). Answers `{hash, status,
//!   urls:{base, full, ext, hash}}` (`receive.rs`);
//! - `POST /upload`, the form URL: always anonymous (seed 001: files sent
//!   there "can't be registered to your account");
//! - `?api=1` on either: `OK <hash>` / `ERROR <message>` as plain text;
//! - `GET /api/upload` lists the key's files, `DELETE /api/upload/{hash}`
//!   lets one go (its bytes return to the quota at once);
//! - `GET|HEAD /f/{hash}`, `/f/{hash}.{ext}`, `/f/{hash}/{name}` serve the
//!   content without a key (`serve.rs`);
//! - the collector deletes content nobody holds (`collect.rs`, run by the
//!   upload sweeper's job).
//!
//! Each distinct content is stored once, as the object `{hash}` of the
//! bucket `file_host.bucket`, and recorded in the state store
//! ([`crate::state::HostedFiles`]). Each holder (an account, or the
//! anonymous pool) is charged its size once, in the ledger slot
//! `#file-host/{hash}`, however often it uploads it.

mod collect;
mod receive;
mod serve;

pub use collect::collect;

use std::sync::Arc;

use kikaku_filters::{ApiKey, ErrorFormat, ErrorKind, GatewayError, KeyType};
use pingora::http::RequestHeader;
use serde_json::{json, Value};

use crate::config::FileHostConfig;
use crate::reply::Exchange;
use crate::state::hosted::{ledger_name, HostedContent, ANONYMOUS_HOLDER};
use crate::storage::mime;
use crate::storage::Storage;

pub struct FileHost {
    storage: Arc<Storage>,
    cfg: FileHostConfig,
    /// `public_url` (or its default), without a trailing slash.
    base: String,
    bucket_ready: tokio::sync::OnceCell<()>,
}

/// Whose upload it is: what it is charged to, and how large it may be.
struct Holder {
    subject: String,
    limit: u64,
    max_bytes: u64,
}

/// The most a listing shows per page.
const MAX_PAGE: usize = 1000;

/// Content hashes: 64 hex digits (taken in either case, kept lower case).
fn parse_hash(s: &str) -> Option<String> {
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// Whether the request asks for seed 001's plain-text answers (`api=1`).
fn wants_text(req: &RequestHeader) -> bool {
    req.uri.query().is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "api" && v == "1")
    })
}

fn no_file(hash: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::NotFound,
        format!("This key holds no file {hash}."),
    )
}

fn unavailable(e: kikaku_filters::StateError) -> GatewayError {
    GatewayError::unavailable("The file host's records", e)
}

impl FileHost {
    pub fn new(storage: Arc<Storage>, cfg: FileHostConfig, base: String) -> FileHost {
        FileHost {
            storage,
            cfg,
            base,
            bucket_ready: tokio::sync::OnceCell::new(),
        }
    }

    /// Errors in seed 001's shape from the first check on: plain text with
    /// `api=1`, else `{"status": false, "error"}`.
    pub fn error_format(req: &RequestHeader) -> ErrorFormat {
        if wants_text(req) {
            ErrorFormat::PlainText
        } else {
            ErrorFormat::FileHost
        }
    }

    pub async fn handle(&self, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
        let req = ex.session.req_header();
        let method = req.method.clone();
        let path = req.uri.path().to_string();
        if let Some(rest) = path.strip_prefix("/f/") {
            return self.serve(ex, rest).await;
        }
        let key = ex.ctx.key.clone();
        if let Some(k) = &key {
            if k.key_type != KeyType::Storage {
                return Err(GatewayError::new(
                    ErrorKind::WrongKeyType,
                    "The file host takes a storage key (kikaku_s3_xxx).",
                ));
            }
        }
        let trimmed = path.trim_end_matches('/');
        let post = method == http::Method::POST;
        match (trimmed, key) {
            ("/upload", _) if post => {
                let holder = self.anonymous(ex, "/upload").await?;
                self.upload(ex, holder).await
            }
            ("/api/upload", Some(k)) if post => self.upload(ex, self.holder(&k)).await,
            ("/api/upload", None) if post => {
                let holder = self.anonymous(ex, "/api/upload").await?;
                self.upload(ex, holder).await
            }
            ("/api/upload", Some(k)) if method == http::Method::GET => self.list(ex, &k).await,
            (p, Some(k)) if p.starts_with("/api/upload/") && method == http::Method::DELETE => {
                let hash = p["/api/upload/".len()..].to_string();
                self.delete(ex, &k, &hash).await
            }
            (p, None) if p.starts_with("/api/upload") => Err(GatewayError::new(
                ErrorKind::Unauthorized,
                "Send your storage key as `Authorization: Bearer kikaku_s3_...`.",
            )),
            (p, _) if p == "/upload" || p.starts_with("/api/upload") => Err(GatewayError::new(
                ErrorKind::MethodNotAllowed,
                format!("{method} is not supported on {p}."),
            )),
            (p, _) => Err(GatewayError::new(
                ErrorKind::NotFound,
                format!("No file host endpoint {p}."),
            )),
        }
    }

    fn holder(&self, key: &ApiKey) -> Holder {
        Holder {
            subject: key.subject(),
            limit: key.quota,
            max_bytes: self.cfg.max_bytes.0,
        }
    }

    /// The anonymous pool, if anonymous uploads are on and this client's
    /// per-minute budget has room.
    async fn anonymous(&self, ex: &Exchange<'_>, path: &str) -> Result<Holder, GatewayError> {
        let anon = &self.cfg.anonymous;
        if !anon.enabled {
            return Err(if path == "/upload" {
                GatewayError::new(
                    ErrorKind::Forbidden,
                    "Anonymous uploads are off on this gateway: POST the file to /api/upload \
                     with a storage key.",
                )
            } else {
                GatewayError::new(
                    ErrorKind::Unauthorized,
                    "Anonymous uploads are off on this gateway: send your storage key as \
                     `Authorization: Bearer kikaku_s3_...`.",
                )
            });
        }
        let ip = ex
            .ctx
            .client_ip
            .map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
        // The braces are a Redis Cluster hash tag: one slot per client.
        let bucket = format!("rl:file_host_anonymous:{{{ip}}}");
        let decision = self
            .storage
            .state
            .rate_limit(
                &bucket,
                1,
                anon.per_minute_per_ip,
                std::time::Duration::from_secs(60),
            )
            .await
            .map_err(|e| GatewayError::unavailable("Rate limiting", e))?;
        if !decision.allowed {
            return Err(GatewayError::new(
                ErrorKind::TooManyRequestsFromIp,
                format!(
                    "Too many anonymous uploads from this address: {} a minute.",
                    anon.per_minute_per_ip
                ),
            )
            .with_retry_after(decision.reset_after));
        }
        Ok(Holder {
            subject: ANONYMOUS_HOLDER.to_string(),
            limit: anon.quota.0,
            max_bytes: anon.max_bytes.0,
        })
    }

    /// The four URLs of seed 001's answer.
    fn urls(&self, hash: &str, name: &str, content_type: &str) -> Value {
        let base = format!("{}/f/", self.base);
        json!({
            "base": base,
            "full": format!("{base}{hash}/{}", sigv4::uri_encode(name.as_bytes(), true)),
            "ext": format!("{base}{hash}.{}", extension(name, content_type)),
            "hash": format!("{base}{hash}"),
        })
    }

    /// `GET /api/upload?page=&limit=`: the key's files, newest first.
    async fn list(&self, ex: &mut Exchange<'_>, key: &ApiKey) -> Result<(), GatewayError> {
        let (page, limit) = paging(ex.session.req_header())?;
        let state = &self.storage.state;
        let held = state
            .hosted_held(&key.subject())
            .await
            .map_err(unavailable)?;
        let total = held.len();
        let mut files = Vec::new();
        for r in held
            .into_iter()
            .skip((page - 1).saturating_mul(limit))
            .take(limit)
        {
            let Some((c, _)) = state.hosted_get(&r.hash).await.map_err(unavailable)? else {
                continue;
            };
            files.push(json!({
                "hash": r.hash,
                "name": r.file_name,
                "size": c.size,
                "content_type": c.content_type,
                "uploaded_at": crate::account::rfc3339(r.uploaded_ms),
                "urls": self.urls(&r.hash, &r.file_name, &c.content_type),
            }));
        }
        ex.json(
            200,
            json!({
                "status": true,
                "files": files,
                "pagination": {"page": page, "limit": limit, "total": total},
            }),
        )
        .await
    }

    /// `DELETE /api/upload/{hash}`: the key lets its file go; its bytes
    /// return to the quota now, the content goes when nobody holds it.
    async fn delete(
        &self,
        ex: &mut Exchange<'_>,
        key: &ApiKey,
        raw: &str,
    ) -> Result<(), GatewayError> {
        let hash = parse_hash(raw).ok_or_else(|| no_file(raw))?;
        let subject = key.subject();
        let state = &self.storage.state;
        let (lease, me) = receive::lock_content(state.as_ref(), &hash).await?;
        let released = async {
            let now = chrono::Utc::now().timestamp_millis();
            match state
                .hosted_release(&hash, &subject, now)
                .await
                .map_err(unavailable)?
            {
                None => Ok(None),
                Some(_) => state
                    .storage_remove(&subject, &ledger_name(&hash))
                    .await
                    .map(Some)
                    .map_err(|e| GatewayError::unavailable("The storage ledger", e)),
            }
        }
        .await;
        let _ = state.lease_drop(&lease, &me).await;
        let freed = released?.ok_or_else(|| no_file(&hash))?;
        ex.json(
            200,
            json!({"status": true, "hash": hash, "deleted": true, "freed_bytes": freed}),
        )
        .await
    }

    /// Seed 001's answer for a stored file.
    async fn reply(
        &self,
        ex: &mut Exchange<'_>,
        content: &HostedContent,
        name: &str,
    ) -> Result<(), GatewayError> {
        if wants_text(ex.session.req_header()) {
            return ex.text(200, format!("OK {}", content.hash)).await;
        }
        let urls = self.urls(&content.hash, name, &content.content_type);
        ex.json(
            200,
            json!({"hash": content.hash, "status": true, "urls": urls}),
        )
        .await
    }
}

/// `page` (from 1) and `limit` (1..=1000, default 100) of a listing.
fn paging(req: &RequestHeader) -> Result<(usize, usize), GatewayError> {
    let (mut page, mut limit) = (1usize, 100usize);
    for (k, v) in url::form_urlencoded::parse(req.uri.query().unwrap_or("").as_bytes()) {
        let bad = |rule: &str| {
            GatewayError::new(
                ErrorKind::InvalidParameter,
                format!("{k} must be {rule}, not {v:?}."),
            )
        };
        match k.as_ref() {
            "page" => {
                page = v
                    .parse()
                    .ok()
                    .filter(|p| (1..=1_000_000).contains(p))
                    .ok_or_else(|| bad("a whole number from 1 to 1000000"))?
            }
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_PAGE).contains(l))
                    .ok_or_else(|| bad("a whole number from 1 to 1000"))?
            }
            _ => {}
        }
    }
    Ok((page, limit))
}

/// The extension of the `ext` URL: the name's, else the content type's,
/// else `bin`.
fn extension(name: &str, content_type: &str) -> String {
    name.rsplit_once('.')
        .map(|(_, e)| e)
        .filter(|e| !e.is_empty() && e.len() <= 10 && e.bytes().all(|b| b.is_ascii_alphanumeric()))
        .map(|e| e.to_ascii_lowercase())
        .or_else(|| mime::extension_for(content_type).map(str::to_string))
        .unwrap_or_else(|| "bin".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_extensions_and_text_answers() {
        let h = "A".repeat(64);
        assert_eq!(parse_hash(&h), Some("a".repeat(64)));
        assert_eq!(parse_hash(&"a".repeat(63)), None);
        assert_eq!(parse_hash(&format!("{}g", "a".repeat(63))), None);
        assert_eq!(extension("image.PNG", "image/jpeg"), "png");
        assert_eq!(extension("blob", "image/png"), "png");
        assert_eq!(extension("blob", "application/x-nothing-known"), "bin");
        assert_eq!(extension("a.tar.gz", ""), "gz");
        let req = |q: &str| RequestHeader::build("POST", q.as_bytes(), None).unwrap();
        assert!(wants_text(&req("/upload?api=1")));
        assert!(wants_text(&req("/upload?x=2&api=1")));
        assert!(!wants_text(&req("/upload?api=0")));
        assert!(!wants_text(&req("/upload")));
        assert_eq!(
            FileHost::error_format(&req("/upload?api=1")),
            ErrorFormat::PlainText
        );
        assert_eq!(
            FileHost::error_format(&req("/upload")),
            ErrorFormat::FileHost
        );
    }

    #[test]
    fn paging_is_checked() {
        let req = |q: &str| RequestHeader::build("GET", q.as_bytes(), None).unwrap();
        assert_eq!(paging(&req("/api/upload")).unwrap(), (1, 100));
        assert_eq!(paging(&req("/api/upload?page=3&limit=5")).unwrap(), (3, 5));
        assert!(paging(&req("/api/upload?page=0")).is_err());
        assert!(paging(&req("/api/upload?page=4839519634073067520")).is_err());
        assert!(paging(&req("/api/upload?limit=1001")).is_err());
    }
}
