//! The simple storage API for storage keys (DESIGN §4), on the key's
//! default bucket:
//!
//! - `POST /s3/upload` — multipart form, field `file`, optional `key`, in
//!   either order (`upload.rs`).
//! - `GET /s3/files?prefix=&limit=&cursor=` — a page of objects.
//! - `GET /s3/files/{key}` — download, streamed, Range supported.
//! - `DELETE /s3/files/{key}` — the bytes return to the quota.
//! - `GET /s3/usage` — used, quota, remaining, status.
//! - `GET /s3/credentials` — the key's S3 endpoint, region, bucket and
//!   credential, for the portal's snippets.

mod upload;

use crate::reply::Exchange;
use std::sync::Arc;

use kikaku_filters::{ApiKey, ErrorKind, GatewayError, KeyStatus};
use pingora::proxy::Session;
use serde_json::json;

use super::s3_endpoint::relay::{relay, Relay};
use crate::config::names::check_object_key;
use crate::storage::backend::BackendError;
use crate::storage::{backend_unavailable, Storage};

/// `limit` of a listing: default and most.
const LIST_DEFAULT: u32 = 100;
const LIST_MAX: u32 = 1000;

pub struct StorageApi {
    storage: Arc<Storage>,
}

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorKind::InvalidParameter, msg)
}

fn not_found(key: &str) -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, format!("No file {key:?}."))
}

fn query_param(session: &Session, name: &str) -> Option<String> {
    let q = session.req_header().uri.query()?;
    sigv4::parse_query(q)?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

impl StorageApi {
    pub fn new(storage: Arc<Storage>) -> StorageApi {
        StorageApi { storage }
    }

    pub async fn handle(&self, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
        let key = ex.ctx.require_key("storage_api")?;
        let method = ex.session.req_header().method.clone();
        let path = ex.session.req_header().uri.path().to_string();
        let rest = path.strip_prefix("/s3").unwrap_or(&path);
        match (method.as_str(), rest) {
            ("GET", "/usage") => self.usage(&key, ex).await,
            ("GET", "/credentials") => self.credentials(&key, ex).await,
            ("POST", "/upload") => {
                self.storage.ensure_default_bucket(&key).await?;
                self.upload(&key, ex).await
            }
            ("GET", "/files") | ("GET", "/files/") => {
                self.storage.ensure_default_bucket(&key).await?;
                self.list(&key, ex).await
            }
            (m, r) if r.starts_with("/files/") => {
                let raw = &r["/files/".len()..];
                let object = sigv4::percent_decode(raw)
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| bad("the file key is not valid UTF-8 percent-encoding"))?;
                check_object_key(&object).map_err(bad)?;
                self.storage.ensure_default_bucket(&key).await?;
                match m {
                    "GET" | "HEAD" => self.download(&key, &object, ex).await,
                    "DELETE" => self.delete(&key, &object, ex).await,
                    _ => Err(GatewayError::new(
                        ErrorKind::MethodNotAllowed,
                        format!("{m} is not allowed on a file; use GET or DELETE."),
                    )),
                }
            }
            _ => Err(GatewayError::new(
                ErrorKind::NotFound,
                format!("No storage endpoint {method} {path}."),
            )),
        }
    }

    async fn usage(&self, key: &ApiKey, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
        let u = self
            .storage
            .state
            .quota_usage(&key.subject())
            .await
            .map_err(|e| GatewayError::unavailable("Storage usage", e))?;
        let v = json!({
            "used": u.used,
            "reserved": u.reserved,
            "quota": key.quota,
            "remaining": key.quota.saturating_sub(u.used + u.reserved),
            "status": match key.status { KeyStatus::Active => "active", KeyStatus::Suspended => "suspended" },
            "bucket": key.default_bucket(),
        });
        ex.json(200, v).await
    }

    async fn credentials(&self, key: &ApiKey, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
        let cred = key.shown_credential().ok_or_else(|| {
            GatewayError::new(
                ErrorKind::NotFound,
                "This storage key has no S3 credential; ask the operator to issue one.",
            )
        })?;
        let v = json!({
            "endpoint": crate::reply::public_base(ex.session, None),
            "region": self.storage.region,
            "bucket": key.default_bucket(),
            "access_key_id": cred.access_key_id,
            "secret_access_key": cred.secret_access_key,
        });
        ex.json(200, v).await
    }

    async fn list(&self, key: &ApiKey, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
        let prefix = query_param(ex.session, "prefix").unwrap_or_default();
        let limit = match query_param(ex.session, "limit") {
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=LIST_MAX).contains(l))
                .ok_or_else(|| bad(format!("limit must be between 1 and {LIST_MAX}")))?,
            None => LIST_DEFAULT,
        };
        let cursor = query_param(ex.session, "cursor").filter(|c| !c.is_empty());
        let bucket = self.storage.backend_bucket(key, key.default_bucket());
        let page = self
            .storage
            .backend
            .list_objects(&bucket, &prefix, cursor.as_deref(), limit)
            .await
            .map_err(|e| match e {
                BackendError::Status(400, _) => bad("the cursor is not valid"),
                e => backend_unavailable(e),
            })?;
        let files: Vec<_> = page
            .objects
            .iter()
            .map(|o| {
                json!({
                    "key": o.key,
                    "size": o.size,
                    "last_modified": o.last_modified,
                    "etag": o.etag.trim_matches('"'),
                })
            })
            .collect();
        ex.json(200, json!({"files": files, "next_cursor": page.next_token}))
            .await
    }

    async fn download(
        &self,
        key: &ApiKey,
        object: &str,
        ex: &mut Exchange<'_>,
    ) -> Result<(), GatewayError> {
        let resp = self
            .storage
            .read_object(
                ex.session.req_header(),
                self.storage.backend_bucket(key, key.default_bucket()),
                object.to_string(),
                || not_found(object),
            )
            .await?;
        relay(ex, resp, Relay::plain()).await
    }

    async fn delete(
        &self,
        key: &ApiKey,
        object: &str,
        ex: &mut Exchange<'_>,
    ) -> Result<(), GatewayError> {
        let freed = self
            .storage
            .delete_object(key, key.default_bucket(), object)
            .await?
            .ok_or_else(|| not_found(object))?;
        ex.json(200, json!({"deleted": object, "freed_bytes": freed}))
            .await
    }
}
