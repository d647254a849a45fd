//! An upload whose name may come after its bytes (a form that sends `file`
//! before `key`), written so that nothing is visible under a name until the
//! caller stores it:
//!
//! - a file that fits in one part (8 MiB) waits in memory and goes up as one
//!   PutObject when stored;
//! - a larger one goes up as a multipart upload while it streams, under its
//!   name when it is known, else under a staging name in the same bucket
//!   that is copied to the name and deleted when stored. The parts are
//!   counted in the ledger as they go and become the object's bytes on
//!   completion.
//!
//! Whatever fails, [`StagedWriter::discard`] aborts what was sent: nothing
//! is stored and nothing stays charged.

use std::fmt::Display;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use kikaku_filters::{ApiKey, ErrorKind, GatewayError};

use super::backend::BackendRequest;
use super::upload::Budget;
use super::{backend_unavailable, Storage};
use crate::s3_xml as xml;
use crate::state::{LedgerSlot, OpenUpload};

/// Bytes buffered before a part goes to the backend (S3's minimum part is
/// 5 MiB); also the size under which a file goes up as one PutObject.
pub const PART_SIZE: usize = 8 << 20;
/// The most a file staged before its name is known may hold: it is copied
/// to its name at the end, and S3 copies at most 5 GiB in one call.
const MAX_STAGED: u64 = 5 << 30;
/// Where a file sent before its name waits, inside the tenant's bucket.
pub const STAGING_PREFIX: &str = ".kikaku-staging/";

/// What the client said about the file.
pub struct FileMeta {
    pub content_type: String,
    /// The filename the client gave the file, if any.
    pub file_name: Option<String>,
    /// `Some(names)`: settle `content_type` from the first bytes once they
    /// are read ([`super::mime::content_type`]: these names, then
    /// `file_name`, then the declared type, then the bytes).
    pub detect: Option<Vec<String>>,
}

impl FileMeta {
    fn settle_type(&mut self, head: &[u8]) {
        if let Some(mut names) = self.detect.take() {
            names.extend(self.file_name.clone());
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            self.content_type = super::mime::content_type(&names, Some(&self.content_type), head);
        }
    }
}

/// A file that has been read but not yet stored under its name.
pub enum Staged {
    /// Whole, in memory (at most one part).
    Small { data: Bytes, meta: FileMeta },
    /// Sent as the parts of a multipart upload that is not yet completed.
    Parts {
        /// The object the upload was created for: the name, or a staging name.
        backend_key: String,
        upload_id: String,
        etags: Vec<String>,
        size: u64,
        meta: FileMeta,
    },
    /// Already stored under its name, whole, as one PutObject
    /// ([`StagedWriter::put_known`]), once the form has been read to its end.
    Stored { size: u64, meta: FileMeta },
}

impl Staged {
    pub fn meta(&self) -> &FileMeta {
        match self {
            Staged::Small { meta, .. }
            | Staged::Parts { meta, .. }
            | Staged::Stored { meta, .. } => meta,
        }
    }

    /// The bytes read.
    pub fn size(&self) -> u64 {
        match self {
            Staged::Small { data, .. } => data.len() as u64,
            Staged::Parts { size, .. } | Staged::Stored { size, .. } => *size,
        }
    }
}

/// Writes one account's uploads into one backend bucket, charged to the
/// account's byte ledger.
pub struct StagedWriter<'a> {
    pub(super) storage: &'a Storage,
    /// Whose ledger, and its quota.
    subject: String,
    limit: u64,
    /// The backend bucket written to.
    pub(super) bucket: String,
    /// The bucket name objects have in the ledger (`bucket/object`).
    pub(super) ledger_bucket: String,
}

impl<'a> StagedWriter<'a> {
    /// Into the key's default bucket.
    pub fn new(storage: &'a Storage, key: &ApiKey) -> StagedWriter<'a> {
        StagedWriter::for_account(
            storage,
            key.subject(),
            key.quota,
            storage.backend_bucket(key, key.default_bucket()),
            key.default_bucket().to_string(),
        )
    }

    /// Into any backend bucket (the file host's, shared by all accounts),
    /// charged to `subject` up to `limit`; `ledger_bucket` names the
    /// objects in its ledger.
    pub fn for_account(
        storage: &'a Storage,
        subject: String,
        limit: u64,
        bucket: String,
        ledger_bucket: String,
    ) -> StagedWriter<'a> {
        StagedWriter {
            storage,
            subject,
            limit,
            bucket,
            ledger_bucket,
        }
    }

    /// Read `body` into memory when it fits in one part, else into a
    /// multipart upload (under `object` if known, else a staging name).
    /// `staged` is set even when reading or sending fails part-way: the
    /// caller discards it.
    pub async fn stage<S, E>(
        &self,
        object: Option<&str>,
        mut meta: FileMeta,
        body: &mut S,
        staged: &mut Option<Staged>,
    ) -> Result<(), GatewayError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        let mut buf = BytesMut::new();
        let ended = fill_part(body, &mut buf).await?;
        meta.settle_type(&buf);
        if ended {
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
        let create = BackendRequest::object(http::Method::POST, &self.bucket, &backend_key)
            .with_query(&[("uploads", "")])
            .with_header("content-type", &meta.content_type);
        let answer = self
            .storage
            .backend
            .call(create)
            .await
            .map_err(backend_unavailable)?
            .bytes()
            .await
            .map_err(|e| GatewayError::new(ErrorKind::BadGateway, e.to_string()))?;
        let upload_id = xml::texts_at(&answer, &["InitiateMultipartUploadResult", "UploadId"])
            .and_then(|mut v| v.pop())
            .ok_or_else(|| GatewayError::new(ErrorKind::BadGateway, "no UploadId"))?;
        // Listed like any multipart upload of the account (ListMultipartUploads,
        // the management API, reconcile) until it completes or aborts, so parts
        // left by a gateway that died mid-stream can be found and aborted.
        let open = OpenUpload {
            upload_id: upload_id.clone(),
            bucket: self.ledger_bucket.clone(),
            key: backend_key.clone(),
            initiated_ms: chrono::Utc::now().timestamp_millis(),
        };
        if let Err(e) = self
            .storage
            .state
            .storage_upload_begin(&self.subject, open)
            .await
        {
            self.abort(&backend_key, &upload_id).await;
            return Err(GatewayError::unavailable("The storage ledger", e));
        }
        let mut upload = Upload {
            backend_key,
            upload_id,
            etags: Vec::new(),
            size: 0,
            limit: object.is_none().then_some(MAX_STAGED),
        };
        let sent = self.send_parts(&mut upload, body, &mut buf).await;
        *staged = Some(Staged::Parts {
            backend_key: upload.backend_key,
            upload_id: upload.upload_id,
            etags: upload.etags,
            size: upload.size,
            meta,
        });
        sent
    }

    /// Send every part; each part's bytes are reserved before it goes. The
    /// next part is read from the client while the previous one uploads, so
    /// neither side waits for the other (at most two parts are held).
    async fn send_parts<S, E>(
        &self,
        upload: &mut Upload,
        body: &mut S,
        buf: &mut BytesMut,
    ) -> Result<(), GatewayError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        let mut finished = false;
        while !buf.is_empty() {
            let data = buf.split_to(buf.len().min(PART_SIZE)).freeze();
            let size = data.len() as u64;
            if upload.limit.is_some_and(|l| upload.size + size > l) {
                return Err(GatewayError::new(
                    ErrorKind::PayloadTooLarge,
                    "a file over 5 GiB must come after its name (the `key` field) in the form",
                ));
            }
            let part = upload.etags.len() as u32 + 1;
            let sending = self.send_part(upload, part, data);
            let (etag, more) = if finished {
                (sending.await, Ok(true))
            } else {
                tokio::join!(sending, fill_part(body, buf))
            };
            upload.etags.push(etag?);
            upload.size += size;
            finished = more?;
        }
        Ok(())
    }

    /// Upload part `part` under its own quota reservation; its ETag.
    async fn send_part(
        &self,
        upload: &Upload,
        part: u32,
        data: Bytes,
    ) -> Result<String, GatewayError> {
        let budget = self.budget(LedgerSlot::Part {
            upload_id: upload.upload_id.clone(),
            part,
        });
        let size = data.len() as u64;
        let reservation = budget.reserve(size).await?;
        let req = BackendRequest::object(http::Method::PUT, &self.bucket, &upload.backend_key)
            .with_query(&[
                ("partNumber", &part.to_string()),
                ("uploadId", &upload.upload_id),
            ])
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

    pub(super) fn budget(&self, slot: LedgerSlot) -> Budget<'_> {
        Budget {
            state: &self.storage.state,
            subject: &self.subject,
            limit: self.limit,
            slot,
        }
    }

    /// Store the file under `name` (a checked object key); its size. On
    /// failure nothing is stored under `name` and nothing stays charged.
    pub async fn store(&self, name: &str, staged: Staged) -> Result<u64, GatewayError> {
        let ledger_name = Storage::ledger_name(&self.ledger_bucket, name);
        match staged {
            Staged::Small { data, meta } => {
                let size = data.len() as u64;
                let budget = self.budget(LedgerSlot::Object(ledger_name));
                let reservation = budget.reserve(size).await?;
                let req = BackendRequest::object(http::Method::PUT, &self.bucket, name)
                    .with_header("content-type", &meta.content_type)
                    .with_body(data);
                let result = self.storage.backend.call(req).await;
                budget
                    .settle(reservation, result.is_ok().then_some(size))
                    .await;
                result.map_err(backend_unavailable)?;
                Ok(size)
            }
            Staged::Stored { size, .. } => Ok(size),
            Staged::Parts {
                backend_key,
                upload_id,
                etags,
                size,
                ..
            } => {
                let landed = self.complete(&backend_key, &upload_id, &etags).await;
                let landed = match landed {
                    Ok(()) if backend_key != name => self.move_staged(&backend_key, name).await,
                    other => other,
                };
                if let Err(e) = landed {
                    self.abort(&backend_key, &upload_id).await;
                    return Err(e);
                }
                if let Err(e) = self
                    .storage
                    .state
                    .storage_complete(&self.subject, &upload_id, &ledger_name, size)
                    .await
                {
                    log::warn!("ledger complete failed (reconcile will fix it): {e}");
                }
                Ok(size)
            }
        }
    }

    /// Throw away a file that will not be stored. (A `Stored` file is only
    /// made once the whole form has been read and checked: nothing follows
    /// that could refuse it.)
    pub async fn discard(&self, staged: Staged) {
        if let Staged::Parts {
            backend_key,
            upload_id,
            ..
        } = staged
        {
            self.abort(&backend_key, &upload_id).await;
        }
    }

    /// CompleteMultipartUpload with every part sent.
    async fn complete(
        &self,
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
        let req = BackendRequest::object(http::Method::POST, &self.bucket, object)
            .with_query(&[("uploadId", upload_id)])
            .with_body(Bytes::from(body));
        self.call_ok(req, "complete the upload").await
    }

    /// Copy a completed staging object to its name, then delete it.
    async fn move_staged(&self, staging: &str, name: &str) -> Result<(), GatewayError> {
        let source = format!(
            "/{}/{}",
            self.bucket,
            sigv4::uri_encode(staging.as_bytes(), true)
        );
        let copy = BackendRequest::object(http::Method::PUT, &self.bucket, name)
            .with_header("x-amz-copy-source", &source);
        let copied = self.call_ok(copy, "move the upload to its key").await;
        self.delete_object(staging).await;
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

    async fn delete_object(&self, object: &str) {
        let req = BackendRequest::object(http::Method::DELETE, &self.bucket, object);
        if let Err(e) = self.storage.backend.call(req).await {
            log::warn!("deleting a staged upload failed: {e}");
        }
    }

    async fn abort(&self, object: &str, upload_id: &str) {
        let req = BackendRequest::object(http::Method::DELETE, &self.bucket, object)
            .with_query(&[("uploadId", upload_id)]);
        if let Err(e) = self.storage.backend.call(req).await {
            log::warn!("aborting an upload failed: {e}");
        }
        if object.starts_with(STAGING_PREFIX) {
            // Completed but not moved: the staging object itself goes too.
            self.delete_object(object).await;
        }
        if let Err(e) = self
            .storage
            .state
            .storage_abort(&self.subject, upload_id)
            .await
        {
            log::warn!("ledger abort failed (reconcile will fix it): {e}");
        }
    }
}

/// A multipart upload while its parts are being sent.
struct Upload {
    backend_key: String,
    upload_id: String,
    etags: Vec<String>,
    size: u64,
    /// The most it may hold (a staged file), if anything.
    limit: Option<u64>,
}

/// Read from the body until `buf` holds a whole part; true when the body
/// has ended.
async fn fill_part<S, E>(body: &mut S, buf: &mut BytesMut) -> Result<bool, GatewayError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Display,
{
    while buf.len() < PART_SIZE {
        match body.next().await {
            Some(Ok(c)) => buf.extend_from_slice(&c),
            Some(Err(e)) => {
                return Err(GatewayError::new(
                    ErrorKind::InvalidParameter,
                    format!("the upload broke off: {e}"),
                ))
            }
            None => return Ok(true),
        }
    }
    Ok(false)
}

fn random_hex() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
