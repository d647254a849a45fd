//! `POST /s3/upload`: a multipart form with a `file` field and an optional
//! `key` field, in either order (the seed's curl and axios snippets send
//! `file` first).
//!
//! The file streams to the backend while the form is read; nothing is
//! visible under its name until the whole form has been read and checked:
//!
//! - a file that fits in one part (8 MiB) waits in memory and goes up as one
//!   PutObject at the end;
//! - a larger one goes up as a multipart upload, under its key when `key`
//!   came first, else under a staging name in the same bucket that is copied
//!   to the key and deleted once the form has ended. The parts are counted
//!   in the ledger as they go and become the object's bytes on completion.
//!
//! A second `file`, a bad `key`, or a form that breaks off aborts what was
//! sent: nothing is stored and nothing stays charged.

use crate::reply::Exchange;
use std::sync::Arc;

use crate::state::LedgerSlot;
use bytes::{Bytes, BytesMut};
use kikaku_filters::{ApiKey, ErrorKind, GatewayError};
use pingora::proxy::Session;
use serde_json::json;

use super::{bad, StorageApi};
use crate::config::names::check_object_key;
use crate::s3::backend::BackendRequest;
use crate::s3::upload::{expects_continue, Budget};
use crate::s3::{backend_unavailable, xml, Storage};

/// Bytes buffered before a part goes to the backend (S3's minimum part is
/// 5 MiB); also the size under which a file goes up as one PutObject.
const PART_SIZE: usize = 8 << 20;
/// The most a file sent before its `key` may hold: it is copied to its key
/// at the end, and S3 copies at most 5 GiB in one call.
const MAX_STAGED: u64 = 5 << 30;
/// Form fields other than `file` (the key, anything unknown) are small.
const MAX_TEXT_FIELD: u64 = 64 << 10;
/// Where a file sent before its `key` waits, inside the tenant's bucket.
pub const STAGING_PREFIX: &str = ".kikaku-staging/";

/// A `file` field that has been read but not yet stored under its name.
enum Staged {
    /// Whole, in memory (at most one part).
    Small { data: Bytes, meta: FileMeta },
    /// Sent as the parts of a multipart upload that is not yet completed.
    Parts {
        /// The object the upload was created for: the key, or a staging name.
        backend_key: String,
        upload_id: String,
        etags: Vec<String>,
        size: u64,
        meta: FileMeta,
    },
}

struct FileMeta {
    content_type: String,
    /// The filename the client gave the part, the key when `key` is absent.
    file_name: Option<String>,
}

impl Staged {
    fn meta(&self) -> &FileMeta {
        match self {
            Staged::Small { meta, .. } | Staged::Parts { meta, .. } => meta,
        }
    }
}

impl StorageApi {
    pub(super) async fn upload(
        &self,
        key: &Arc<ApiKey>,
        ex: &mut Exchange<'_>,
    ) -> Result<(), GatewayError> {
        let boundary = ex
            .session
            .req_header()
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|ct| multer::parse_boundary(ct).ok())
            .ok_or_else(|| bad("POST /s3/upload takes multipart/form-data with a `file` field"))?;
        if expects_continue(ex.session) {
            // curl asks for it on any form over 1 MiB and otherwise waits a second.
            let _ = ex.session.write_continue_response().await;
        }
        let mut staged = None;
        let read = self.read_form(key, ex.session, boundary, &mut staged).await;
        let stored = match (read, staged) {
            (Ok(name), Some(s)) => {
                let name = name.or_else(|| s.meta().file_name.clone());
                self.store(key, name, s).await
            }
            (Ok(_), None) => Err(GatewayError::new(
                ErrorKind::MissingParameter,
                "the form has no `file` field",
            )),
            (Err(e), Some(s)) => {
                self.discard(key, s).await;
                Err(e)
            }
            (Err(e), None) => Err(e),
        };
        let (name, size, content_type) = stored?;
        ex.json(
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

    /// Read the whole form; the file goes into `staged` as it streams.
    /// Returns the `key` field, when there was one.
    async fn read_form(
        &self,
        key: &ApiKey,
        session: &mut Session,
        boundary: String,
        staged: &mut Option<Staged>,
    ) -> Result<Option<String>, GatewayError> {
        let body = futures_util::stream::unfold(&mut *session, |s| async move {
            match s.read_request_body().await {
                Ok(Some(b)) => Some((Ok::<Bytes, std::io::Error>(b), s)),
                Ok(None) => None,
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), s)),
            }
        });
        let limits = multer::SizeLimit::new()
            .per_field(MAX_TEXT_FIELD)
            .for_field("file", u64::MAX);
        let constraints = multer::Constraints::new().size_limit(limits);
        let mut form = multer::Multipart::with_constraints(body, boundary, constraints);
        let mut object: Option<String> = None;
        while let Some(mut field) = form
            .next_field()
            .await
            .map_err(|e| bad(format!("the form is malformed: {e}")))?
        {
            match field.name() {
                Some("key") => {
                    if object.is_some() {
                        return Err(bad("the form has two `key` fields: send one"));
                    }
                    let text = field
                        .text()
                        .await
                        .map_err(|e| bad(format!("the key field is malformed: {e}")))?;
                    let name = text.trim().trim_start_matches('/').to_string();
                    check_object_key(&name).map_err(|e| bad(format!("key: {e}")))?;
                    object = Some(name);
                }
                Some("file") => {
                    if staged.is_some() {
                        return Err(bad(
                            "the form has two `file` fields: send one file per upload \
                             (nothing was stored)",
                        ));
                    }
                    let meta = FileMeta {
                        content_type: field
                            .content_type()
                            .map(|m| m.to_string())
                            .unwrap_or_else(|| "application/octet-stream".into()),
                        file_name: field.file_name().map(str::to_string),
                    };
                    self.stage(key, object.as_deref(), meta, &mut field, staged)
                        .await?;
                }
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
        Ok(object)
    }

    /// Read the file field: into memory when it fits in one part, else into
    /// a multipart upload (under `object` if known, else a staging name).
    async fn stage(
        &self,
        key: &ApiKey,
        object: Option<&str>,
        meta: FileMeta,
        field: &mut multer::Field<'_>,
        staged: &mut Option<Staged>,
    ) -> Result<(), GatewayError> {
        let mut buf = BytesMut::new();
        if fill_part(field, &mut buf).await? {
            *staged = Some(Staged::Small {
                data: buf.freeze(),
                meta,
            });
            return Ok(());
        }
        let backend_key = match object {
            Some(o) => o.to_string(),
            None => format!("{STAGING_PREFIX}{}", random_hex()),
        };
        let bucket = self.storage.backend_bucket(key, key.default_bucket());
        let create = BackendRequest::object(http::Method::POST, &bucket, &backend_key)
            .with_query(&[("uploads", "")])
            .with_header("content-type", &meta.content_type);
        let body = self
            .storage
            .backend
            .call(create)
            .await
            .map_err(backend_unavailable)?
            .bytes()
            .await
            .map_err(|e| GatewayError::new(ErrorKind::BadGateway, e.to_string()))?;
        let upload_id = xml::texts_at(&body, &["InitiateMultipartUploadResult", "UploadId"])
            .and_then(|mut v| v.pop())
            .ok_or_else(|| GatewayError::new(ErrorKind::BadGateway, "no UploadId"))?;
        let limit = object.is_none().then_some(MAX_STAGED);
        let (mut etags, mut size) = (Vec::new(), 0);
        let sent = self
            .send_parts(
                key,
                &backend_key,
                &upload_id,
                field,
                &mut buf,
                &mut etags,
                &mut size,
                limit,
            )
            .await;
        // Staged even when sending failed: the caller aborts what was sent.
        *staged = Some(Staged::Parts {
            backend_key,
            upload_id,
            etags,
            size,
            meta,
        });
        sent
    }

    /// Send every part; each part's bytes are reserved before it goes. The
    /// next part is read from the client while the previous one uploads, so
    /// neither side waits for the other (at most two parts are held).
    #[allow(clippy::too_many_arguments)]
    async fn send_parts(
        &self,
        key: &ApiKey,
        object: &str,
        upload_id: &str,
        field: &mut multer::Field<'_>,
        buf: &mut BytesMut,
        etags: &mut Vec<String>,
        total: &mut u64,
        limit: Option<u64>,
    ) -> Result<(), GatewayError> {
        let mut finished = false;
        while !buf.is_empty() {
            let data = buf.split_to(buf.len().min(PART_SIZE)).freeze();
            let size = data.len() as u64;
            if limit.is_some_and(|l| *total + size > l) {
                return Err(GatewayError::new(
                    ErrorKind::PayloadTooLarge,
                    "a file over 5 GiB must come after its `key` field in the form",
                ));
            }
            let part = etags.len() as u32 + 1;
            let upload = self.send_part(key, object, upload_id, part, data);
            let (etag, more) = if finished {
                (upload.await, Ok(true))
            } else {
                tokio::join!(upload, fill_part(field, buf))
            };
            etags.push(etag?);
            *total += size;
            finished = more?;
        }
        Ok(())
    }

    /// Upload part `part` under its own quota reservation; its ETag.
    async fn send_part(
        &self,
        key: &ApiKey,
        object: &str,
        upload_id: &str,
        part: u32,
        data: Bytes,
    ) -> Result<String, GatewayError> {
        let subject = key.subject();
        let budget = self.budget(
            key,
            &subject,
            LedgerSlot::Part {
                upload_id: upload_id.to_string(),
                part,
            },
        );
        let size = data.len() as u64;
        let reservation = budget.reserve(size).await?;
        let bucket = self.storage.backend_bucket(key, key.default_bucket());
        let req = BackendRequest::object(http::Method::PUT, &bucket, object)
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

    fn budget<'a>(&'a self, key: &ApiKey, subject: &'a str, slot: LedgerSlot) -> Budget<'a> {
        Budget {
            state: &self.storage.state,
            subject,
            limit: key.quota,
            slot,
        }
    }

    /// The form is whole: store the file under `name`. Returns the name, the
    /// size and the content type.
    async fn store(
        &self,
        key: &ApiKey,
        name: Option<String>,
        staged: Staged,
    ) -> Result<(String, u64, String), GatewayError> {
        let name = match name
            .ok_or_else(|| bad("name the file: a `key` field, or a filename on `file`"))
            .and_then(|n| check_object_key(&n).map(|_| n).map_err(bad))
        {
            Ok(n) => n,
            Err(e) => {
                self.discard(key, staged).await;
                return Err(e);
            }
        };
        let subject = key.subject();
        let bucket = self.storage.backend_bucket(key, key.default_bucket());
        let ledger_name = Storage::ledger_name(key.default_bucket(), &name);
        match staged {
            Staged::Small { data, meta } => {
                let size = data.len() as u64;
                let budget = self.budget(key, &subject, LedgerSlot::Object(ledger_name));
                let reservation = budget.reserve(size).await?;
                let req = BackendRequest::object(http::Method::PUT, &bucket, &name)
                    .with_header("content-type", &meta.content_type)
                    .with_body(data);
                let result = self.storage.backend.call(req).await;
                budget
                    .settle(reservation, result.is_ok().then_some(size))
                    .await;
                result.map_err(backend_unavailable)?;
                Ok((name, size, meta.content_type))
            }
            Staged::Parts {
                backend_key,
                upload_id,
                etags,
                size,
                meta,
            } => {
                let landed = self
                    .complete(&bucket, &backend_key, &upload_id, &etags)
                    .await;
                let landed = match landed {
                    Ok(()) if backend_key != name => {
                        self.move_staged(&bucket, &backend_key, &name).await
                    }
                    other => other,
                };
                if let Err(e) = landed {
                    self.abort(&subject, &bucket, &backend_key, &upload_id)
                        .await;
                    return Err(e);
                }
                if let Err(e) = self
                    .storage
                    .state
                    .storage_complete(&subject, &upload_id, &ledger_name, size)
                    .await
                {
                    log::warn!("ledger complete failed (reconcile will fix it): {e}");
                }
                Ok((name, size, meta.content_type))
            }
        }
    }

    /// CompleteMultipartUpload with every part sent.
    async fn complete(
        &self,
        bucket: &str,
        object: &str,
        upload_id: &str,
        etags: &[String],
    ) -> Result<(), GatewayError> {
        let mut body = String::from("<CompleteMultipartUpload>");
        for (n, etag) in etags.iter().enumerate() {
            body.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                n + 1,
                xml::escape(etag)
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        let req = BackendRequest::object(http::Method::POST, bucket, object)
            .with_query(&[("uploadId", upload_id)])
            .with_body(Bytes::from(body));
        self.call_ok(req, "complete the upload").await
    }

    /// Copy a completed staging object to its key, then delete it.
    async fn move_staged(
        &self,
        bucket: &str,
        staging: &str,
        name: &str,
    ) -> Result<(), GatewayError> {
        let copy = BackendRequest::object(http::Method::PUT, bucket, name).with_header(
            "x-amz-copy-source",
            &format!("/{bucket}/{}", sigv4::uri_encode(staging.as_bytes(), true)),
        );
        let copied = self.call_ok(copy, "move the upload to its key").await;
        self.delete_object(bucket, staging).await;
        copied
    }

    /// A backend call whose answer must be a success with no `<Error>` body
    /// (CompleteMultipartUpload and CopyObject can fail inside a 200).
    async fn call_ok(&self, req: BackendRequest, what: &str) -> Result<(), GatewayError> {
        let failed = || {
            GatewayError::new(
                ErrorKind::BadGateway,
                format!("the storage backend did not {what}"),
            )
        };
        let resp = self.storage.backend.call(req).await.map_err(|e| {
            log::warn!("storage backend could not {what}: {e}");
            failed()
        })?;
        let body = resp.bytes().await.map_err(|_| failed())?;
        match xml::texts_at(&body, &["Error", "Code"]) {
            Some(codes) if !codes.is_empty() => {
                log::warn!("storage backend could not {what}: {codes:?}");
                Err(failed())
            }
            _ => Ok(()),
        }
    }

    async fn delete_object(&self, bucket: &str, object: &str) {
        let req = BackendRequest::object(http::Method::DELETE, bucket, object);
        if let Err(e) = self.storage.backend.call(req).await {
            log::warn!("deleting a staged upload failed: {e}");
        }
    }

    /// Throw away a file that will not be stored.
    async fn discard(&self, key: &ApiKey, staged: Staged) {
        if let Staged::Parts {
            backend_key,
            upload_id,
            ..
        } = staged
        {
            let bucket = self.storage.backend_bucket(key, key.default_bucket());
            self.abort(&key.subject(), &bucket, &backend_key, &upload_id)
                .await;
        }
    }

    async fn abort(&self, subject: &str, bucket: &str, object: &str, upload_id: &str) {
        let req = BackendRequest::object(http::Method::DELETE, bucket, object)
            .with_query(&[("uploadId", upload_id)]);
        if let Err(e) = self.storage.backend.call(req).await {
            log::warn!("aborting an upload failed: {e}");
        }
        if object.starts_with(STAGING_PREFIX) {
            // Completed but not moved: the staging object itself goes too.
            self.delete_object(bucket, object).await;
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

fn random_hex() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
