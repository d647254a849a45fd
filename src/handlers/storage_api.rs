//! The simple storage API for storage keys (DESIGN §4), on the key's
//! default bucket:
//!
//! - `POST /s3/upload` — multipart form, field `file`, optional `key` (sent
//!   before `file`; without it the file's name is the key). The file streams
//!   to the backend in parts; the quota is reserved part by part as the
//!   bytes arrive, so an upload that would exceed it stops there and leaves
//!   nothing behind.
//! - `GET /s3/files?prefix=&limit=&cursor=` — a page of objects.
//! - `GET /s3/files/{key}` — download, streamed, Range supported.
//! - `DELETE /s3/files/{key}` — the bytes return to the quota.
//! - `GET /s3/usage` — used, quota, remaining, status.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kikaku_filters::{
    ApiKey, ErrorKind, FilterChain, GatewayError, KeyStatus, LedgerSlot, RequestCtx,
};
use pingora::proxy::Session;
use serde_json::json;

use super::s3_endpoint::relay::{relay, Relay};
use crate::s3::backend::{BackendError, BackendRequest};
use crate::s3::names::check_object_key;
use crate::s3::upload::{expects_continue, Budget};
use crate::s3::{backend_unavailable, xml, Storage};

/// Bytes buffered before a part goes to the backend (S3's minimum part is
/// 5 MiB); also the size under which a file goes up as one PutObject.
const PART_SIZE: usize = 8 << 20;
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

async fn send_json(
    session: &mut Session,
    chain: &FilterChain,
    ctx: &RequestCtx,
    status: u16,
    v: serde_json::Value,
) -> Result<(), GatewayError> {
    let body = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
    if let Err(e) = crate::http_error::respond_json(session, status, body, Some(chain), ctx).await {
        log::debug!("storage answer not delivered: {e}");
    }
    Ok(())
}

fn query_param(session: &Session, name: &str) -> Option<String> {
    let q = session.req_header().uri.query()?;
    kikaku_filters::sigv4::parse_query(q)?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

impl StorageApi {
    pub fn new(storage: Arc<Storage>) -> StorageApi {
        StorageApi { storage }
    }

    pub async fn handle(
        &self,
        session: &mut Session,
        chain: &FilterChain,
        ctx: &mut RequestCtx,
    ) -> Result<(), GatewayError> {
        let key = ctx.require_key("storage_api")?;
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        let rest = path.strip_prefix("/s3").unwrap_or(&path);
        match (method.as_str(), rest) {
            ("GET", "/usage") => self.usage(&key, session, chain, ctx).await,
            ("POST", "/upload") => {
                self.storage.ensure_default_bucket(&key).await?;
                self.upload(&key, session, chain, ctx).await
            }
            ("GET", "/files") | ("GET", "/files/") => {
                self.storage.ensure_default_bucket(&key).await?;
                self.list(&key, session, chain, ctx).await
            }
            (m, r) if r.starts_with("/files/") => {
                let raw = &r["/files/".len()..];
                let object = kikaku_filters::sigv4::percent_decode(raw)
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| bad("the file key is not valid UTF-8 percent-encoding"))?;
                check_object_key(&object).map_err(bad)?;
                self.storage.ensure_default_bucket(&key).await?;
                match m {
                    "GET" | "HEAD" => self.download(&key, &object, session, chain, ctx).await,
                    "DELETE" => self.delete(&key, &object, session, chain, ctx).await,
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

    async fn usage(
        &self,
        key: &ApiKey,
        session: &mut Session,
        chain: &FilterChain,
        ctx: &RequestCtx,
    ) -> Result<(), GatewayError> {
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
        send_json(session, chain, ctx, 200, v).await
    }

    async fn list(
        &self,
        key: &ApiKey,
        session: &mut Session,
        chain: &FilterChain,
        ctx: &RequestCtx,
    ) -> Result<(), GatewayError> {
        let prefix = query_param(session, "prefix").unwrap_or_default();
        let limit = match query_param(session, "limit") {
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=LIST_MAX).contains(l))
                .ok_or_else(|| bad(format!("limit must be between 1 and {LIST_MAX}")))?,
            None => LIST_DEFAULT,
        };
        let cursor = query_param(session, "cursor").filter(|c| !c.is_empty());
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
        send_json(
            session,
            chain,
            ctx,
            200,
            json!({"files": files, "next_cursor": page.next_token}),
        )
        .await
    }

    async fn download(
        &self,
        key: &ApiKey,
        object: &str,
        session: &mut Session,
        chain: &FilterChain,
        ctx: &RequestCtx,
    ) -> Result<(), GatewayError> {
        let req = session.req_header();
        let mut breq = BackendRequest::new(
            req.method.clone(),
            Some(self.storage.backend_bucket(key, key.default_bucket())),
            Some(object.to_string()),
        );
        for h in ["range", "if-match", "if-none-match", "if-modified-since"] {
            if let Some(v) = req.headers.get(h).and_then(|v| v.to_str().ok()) {
                breq.headers.push((h.to_string(), v.to_string()));
            }
        }
        let resp = self
            .storage
            .backend
            .send(breq)
            .await
            .map_err(backend_unavailable)?;
        match resp.status().as_u16() {
            404 => Err(not_found(object)),
            416 => Err(GatewayError::new(
                ErrorKind::InvalidParameter,
                "The requested range is not satisfiable.",
            )),
            s if s >= 400 && s != 412 => Err(GatewayError::new(
                ErrorKind::BadGateway,
                format!("storage backend answered {s}"),
            )),
            _ => {
                relay(
                    session,
                    chain,
                    ctx,
                    resp,
                    Relay {
                        bucket: None,
                        rewrite_success: false,
                    },
                )
                .await
            }
        }
    }

    async fn delete(
        &self,
        key: &ApiKey,
        object: &str,
        session: &mut Session,
        chain: &FilterChain,
        ctx: &RequestCtx,
    ) -> Result<(), GatewayError> {
        let bucket = self.storage.backend_bucket(key, key.default_bucket());
        if self
            .storage
            .backend
            .object_size(&bucket, object)
            .await
            .map_err(backend_unavailable)?
            .is_none()
        {
            return Err(not_found(object));
        }
        self.storage
            .backend
            .call(BackendRequest::new(
                http::Method::DELETE,
                Some(bucket),
                Some(object.to_string()),
            ))
            .await
            .map_err(backend_unavailable)?;
        let freed = self
            .storage
            .state
            .storage_remove(
                &key.subject(),
                &Storage::ledger_name(key.default_bucket(), object),
            )
            .await
            .map_err(|e| GatewayError::unavailable("The storage ledger", e))?;
        send_json(
            session,
            chain,
            ctx,
            200,
            json!({"deleted": object, "freed_bytes": freed}),
        )
        .await
    }

    async fn upload(
        &self,
        key: &Arc<ApiKey>,
        session: &mut Session,
        chain: &FilterChain,
        ctx: &RequestCtx,
    ) -> Result<(), GatewayError> {
        let boundary = session
            .req_header()
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|ct| multer::parse_boundary(ct).ok())
            .ok_or_else(|| bad("POST /s3/upload takes multipart/form-data with a `file` field"))?;
        if expects_continue(session) {
            // curl asks for it on any form over 1 MiB and otherwise waits a second.
            let _ = session.write_continue_response().await;
        }
        let uploaded = {
            let body = futures_util::stream::unfold(&mut *session, |s| async move {
                match s.read_request_body().await {
                    Ok(Some(b)) => Some((Ok::<Bytes, std::io::Error>(b), s)),
                    Ok(None) => None,
                    Err(e) => Some((Err(std::io::Error::other(e.to_string())), s)),
                }
            });
            let mut form = multer::Multipart::new(body, boundary);
            let mut object: Option<String> = None;
            let mut result = None;
            loop {
                let field = form
                    .next_field()
                    .await
                    .map_err(|e| bad(format!("the form is malformed: {e}")))?;
                let Some(mut field) = field else { break };
                match field.name() {
                    Some("key") => {
                        if result.is_some() {
                            return Err(bad("send the `key` field before `file`"));
                        }
                        let text = field
                            .text()
                            .await
                            .map_err(|e| bad(format!("the key field is malformed: {e}")))?;
                        object = Some(text.trim().trim_start_matches('/').to_string());
                    }
                    Some("file") if result.is_none() => {
                        let name = object
                            .clone()
                            .or_else(|| field.file_name().map(str::to_string))
                            .ok_or_else(|| {
                                bad("name the file: a `key` field, or a filename on `file`")
                            })?;
                        check_object_key(&name).map_err(bad)?;
                        let content_type = field
                            .content_type()
                            .map(|m| m.to_string())
                            .unwrap_or_else(|| "application/octet-stream".into());
                        let size = self
                            .put_streamed(key, &name, &content_type, &mut field)
                            .await?;
                        result = Some((name, size, content_type));
                    }
                    Some("file") => return Err(bad("only one `file` per upload")),
                    _ => {
                        // Unknown fields are read and ignored.
                        while field
                            .chunk()
                            .await
                            .map_err(|e| bad(format!("the form is malformed: {e}")))?
                            .is_some()
                        {}
                    }
                }
            }
            result.ok_or_else(|| {
                GatewayError::new(ErrorKind::MissingParameter, "the form has no `file` field")
            })?
        };
        let (name, size, content_type) = uploaded;
        send_json(
            session,
            chain,
            ctx,
            201,
            json!({
                "key": name,
                "size": size,
                "content_type": content_type,
                "bucket": key.default_bucket(),
            }),
        )
        .await
    }

    /// Stream one form field into the key's bucket: one PutObject when it
    /// fits in a part, else a multipart upload. Returns its size.
    async fn put_streamed(
        &self,
        key: &ApiKey,
        object: &str,
        content_type: &str,
        field: &mut multer::Field<'_>,
    ) -> Result<u64, GatewayError> {
        let subject = key.subject();
        let bucket = self.storage.backend_bucket(key, key.default_bucket());
        let ledger_name = Storage::ledger_name(key.default_bucket(), object);
        let read_err = |e: multer::Error| bad(format!("the upload broke off: {e}"));
        let mut buf = BytesMut::new();
        // The first part decides: small files go up in one call.
        while buf.len() < PART_SIZE {
            match field.chunk().await.map_err(read_err)? {
                Some(c) => buf.extend_from_slice(&c),
                None => {
                    let data = buf.freeze();
                    let size = data.len() as u64;
                    let budget = Budget {
                        state: &self.storage.state,
                        subject: &subject,
                        limit: key.quota,
                        slot: LedgerSlot::Object(ledger_name.clone()),
                    };
                    let reservation = budget.reserve(size).await?;
                    let req = BackendRequest::object(http::Method::PUT, &bucket, object)
                        .with_header("content-type", content_type)
                        .with_body(data);
                    let result = self.storage.backend.call(req).await;
                    budget
                        .settle(reservation, result.is_ok().then_some(size))
                        .await;
                    result.map_err(backend_unavailable)?;
                    return Ok(size);
                }
            }
        }
        self.put_multipart(key, &bucket, object, content_type, field, buf)
            .await
    }

    async fn put_multipart(
        &self,
        key: &ApiKey,
        bucket: &str,
        object: &str,
        content_type: &str,
        field: &mut multer::Field<'_>,
        mut buf: BytesMut,
    ) -> Result<u64, GatewayError> {
        let subject = key.subject();
        let backend = &self.storage.backend;
        let create = BackendRequest::object(http::Method::POST, bucket, object)
            .with_query(&[("uploads", "")])
            .with_header("content-type", content_type);
        let body = backend
            .call(create)
            .await
            .map_err(backend_unavailable)?
            .bytes()
            .await
            .map_err(|e| GatewayError::new(ErrorKind::BadGateway, e.to_string()))?;
        let upload_id = xml::texts_at(&body, &["InitiateMultipartUploadResult", "UploadId"])
            .and_then(|mut v| v.pop())
            .ok_or_else(|| GatewayError::new(ErrorKind::BadGateway, "no UploadId"))?;
        let outcome = self
            .send_parts(key, bucket, object, &upload_id, field, &mut buf)
            .await;
        match outcome {
            Ok((etags, size)) => {
                let mut xml_body = String::from("<CompleteMultipartUpload>");
                for (n, etag) in etags.iter().enumerate() {
                    xml_body.push_str(&format!(
                        "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                        n + 1,
                        xml::escape(etag)
                    ));
                }
                xml_body.push_str("</CompleteMultipartUpload>");
                let complete = BackendRequest::object(http::Method::POST, bucket, object)
                    .with_query(&[("uploadId", &upload_id)])
                    .with_body(Bytes::from(xml_body));
                let done = backend.call(complete).await;
                let done_ok = match done {
                    Ok(r) => r.bytes().await.ok().is_some_and(|b| {
                        xml::texts_at(&b, &["Error", "Code"]).is_some_and(|c| c.is_empty())
                    }),
                    Err(_) => false,
                };
                if !done_ok {
                    self.abort(&subject, bucket, object, &upload_id).await;
                    return Err(GatewayError::new(
                        ErrorKind::BadGateway,
                        "the storage backend did not complete the upload",
                    ));
                }
                let name = Storage::ledger_name(key.default_bucket(), object);
                if let Err(e) = self
                    .storage
                    .state
                    .storage_complete(&subject, &upload_id, &name, size)
                    .await
                {
                    log::warn!("ledger complete failed (reconcile will fix it): {e}");
                }
                Ok(size)
            }
            Err(e) => {
                self.abort(&subject, bucket, object, &upload_id).await;
                Err(e)
            }
        }
    }

    /// Send every part; each part's bytes are reserved before it goes. The
    /// next part is read from the client while the previous one uploads, so
    /// neither side waits for the other (at most two parts are held).
    async fn send_parts(
        &self,
        key: &ApiKey,
        bucket: &str,
        object: &str,
        upload_id: &str,
        field: &mut multer::Field<'_>,
        buf: &mut BytesMut,
    ) -> Result<(Vec<String>, u64), GatewayError> {
        let mut etags = Vec::new();
        let mut total = 0u64;
        let mut finished = fill_part(field, buf).await?;
        while !buf.is_empty() {
            let data = buf.split_to(buf.len().min(PART_SIZE)).freeze();
            let size = data.len() as u64;
            let part = etags.len() as u32 + 1;
            let upload = self.send_part(key, bucket, object, upload_id, part, data);
            let (etag, more) = if finished {
                (upload.await, Ok(true))
            } else {
                tokio::join!(upload, fill_part(field, buf))
            };
            etags.push(etag?);
            total += size;
            finished = more?;
        }
        Ok((etags, total))
    }

    /// Upload part `part` under its own quota reservation; its ETag.
    async fn send_part(
        &self,
        key: &ApiKey,
        bucket: &str,
        object: &str,
        upload_id: &str,
        part: u32,
        data: Bytes,
    ) -> Result<String, GatewayError> {
        let subject = key.subject();
        let budget = Budget {
            state: &self.storage.state,
            subject: &subject,
            limit: key.quota,
            slot: LedgerSlot::Part {
                upload_id: upload_id.to_string(),
                part,
            },
        };
        let size = data.len() as u64;
        let reservation = budget.reserve(size).await?;
        let req = BackendRequest::object(http::Method::PUT, bucket, object)
            .with_query(&[("partNumber", &part.to_string()), ("uploadId", upload_id)])
            .with_body(data);
        let result = self.storage.backend.call(req).await;
        let etag = result.as_ref().ok().and_then(|r| {
            r.headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        });
        budget
            .settle(reservation, etag.is_some().then_some(size))
            .await;
        match (result, etag) {
            (Ok(_), Some(e)) => Ok(e),
            (Err(e), _) => Err(backend_unavailable(e)),
            (Ok(_), None) => Err(GatewayError::new(
                ErrorKind::BadGateway,
                "the storage backend sent no ETag for a part",
            )),
        }
    }

    async fn abort(&self, subject: &str, bucket: &str, object: &str, upload_id: &str) {
        let req = BackendRequest::object(http::Method::DELETE, bucket, object)
            .with_query(&[("uploadId", upload_id)]);
        if let Err(e) = self.storage.backend.call(req).await {
            log::warn!("aborting an upload failed: {e}");
        }
        if let Err(e) = self.storage.state.storage_abort(subject, upload_id).await {
            log::warn!("ledger abort failed (reconcile will fix it): {e}");
        }
    }
}

/// Read from the form field until `buf` holds a whole part; true when the
/// field has ended.
async fn fill_part(
    field: &mut multer::Field<'_>,
    buf: &mut BytesMut,
) -> Result<bool, GatewayError> {
    while buf.len() < PART_SIZE {
        match field
            .chunk()
            .await
            .map_err(|e| bad(format!("the upload broke off: {e}")))?
        {
            Some(c) => buf.extend_from_slice(&c),
            None => return Ok(true),
        }
    }
    Ok(false)
}
