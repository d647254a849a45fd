//! The upload API (DESIGN §6, seed 003): temporary files for storage keys.
//!
//! - `POST /api/file-stream-upload`: multipart `file`, `uploadPath`,
//!   `fileName`, in any order, streamed (`receive.rs`);
//! - `POST /api/file-base64-upload`: `{base64Data, uploadPath, fileName}`;
//! - `POST /api/file-url-upload`: `{fileUrl, uploadPath, fileName}`, fetched
//!   by the gateway without letting the URL reach into the host (`fetch/`);
//! - `GET|HEAD /files/{tenant}/{uploadPath}/{fileName}` and
//!   `/download/{fileId}`: the files, without a key, until they expire
//!   (`serve.rs`);
//! - the sweeper deleting expired files, once across instances (`sweeper.rs`).
//!
//! A file lands in the key's default bucket under [`PREFIX`], counted
//! against the key's byte quota while its bytes flow, and is recorded in
//! the state store ([`crate::state::TempFiles`]). Answers and errors use
//! seed 003's envelope: `{success, code, msg, data}`.

pub mod fetch;
mod naming;
mod receive;
pub mod serve;
pub mod sweeper;

use std::sync::Arc;

use kikaku_filters::{ApiKey, ErrorKind, GatewayError};
use serde_json::json;

use crate::account::rfc3339;
use crate::config::UploadsConfig;
use crate::reply::Exchange;
use crate::state::UploadRecord;
use crate::storage::staged::StagedWriter;
use crate::storage::Storage;

/// Where uploads land inside the key's default bucket.
pub const PREFIX: &str = "kikaku-uploads/";

pub struct Uploads {
    storage: Arc<Storage>,
    cfg: UploadsConfig,
    /// `public_url` (or its default), without a trailing slash.
    base: String,
    fetcher: fetch::Fetcher,
}

/// Where a new file goes: its checked path and name, and its object key.
struct Target {
    upload_path: String,
    file_name: String,
}

impl Target {
    fn object(&self) -> String {
        format!(
            "{PREFIX}{}",
            crate::state::upload_path_key(&self.upload_path, &self.file_name)
        )
    }
}

/// A file read in full (in memory, or sent as parts not yet completed)
/// and named, not yet stored under its name.
struct Received {
    target: Target,
    staged: crate::storage::staged::Staged,
    mime_type: String,
    original_name: String,
}

/// How long an upload waits for a sweep that holds its path.
const PATH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn method_not_allowed(m: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::MethodNotAllowed,
        format!("{m} is not supported here: upload with POST."),
    )
}

impl Uploads {
    pub fn new(storage: Arc<Storage>, cfg: UploadsConfig, base: String) -> Result<Uploads, String> {
        let fetcher = fetch::Fetcher::new(&cfg.url_fetch)
            .map_err(|e| format!("uploads.url_fetch.allow: {e}"))?;
        Ok(Uploads {
            storage,
            cfg,
            base,
            fetcher,
        })
    }

    pub async fn handle(&self, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
        let key = ex.ctx.require_key("uploads")?;
        let method = ex.session.req_header().method.clone();
        let path = ex
            .session
            .req_header()
            .uri
            .path()
            .trim_end_matches('/')
            .to_string();
        let known = [
            "/api/file-stream-upload",
            "/api/file-base64-upload",
            "/api/file-url-upload",
        ];
        if !known.contains(&path.as_str()) {
            return Err(GatewayError::new(
                ErrorKind::NotFound,
                format!("No upload endpoint {path}."),
            ));
        }
        if method != http::Method::POST {
            return Err(method_not_allowed(method.as_str()));
        }
        self.storage.ensure_default_bucket(&key).await?;
        let writer = StagedWriter::new(&self.storage, &key);
        let got = match path.as_str() {
            "/api/file-stream-upload" => self.stream(&writer, ex).await?,
            "/api/file-base64-upload" => self.base64(ex).await?,
            _ => self.url(&writer, ex).await?,
        };
        // Store and record under the path's lease: a sweep expiring the
        // file this one replaces cannot delete it in between.
        let state = &self.storage.state;
        let path_key = format!(
            "{}/{}",
            key.tenant_id(),
            crate::state::upload_path_key(&got.target.upload_path, &got.target.file_name)
        );
        let holder = crate::state::lease_holder();
        match sweeper::lock_path(state.as_ref(), &path_key, &holder, PATH_WAIT).await {
            Ok(true) => {}
            Ok(false) => {
                writer.discard(got.staged).await;
                return Err(GatewayError::new(
                    ErrorKind::ServiceUnavailable,
                    "This path is being written or expired right now; try again.",
                )
                .with_retry_after(std::time::Duration::from_secs(1)));
            }
            Err(e) => {
                writer.discard(got.staged).await;
                return Err(GatewayError::unavailable("The upload records", e));
            }
        }
        let object = got.target.object();
        let recorded = match writer.store(&object, got.staged).await {
            Ok(size) => {
                self.record(&key, got.target, size, got.mime_type, got.original_name)
                    .await
            }
            Err(e) => Err(e),
        };
        let _ = state
            .lease_drop(&sweeper::path_lease(&path_key), &holder)
            .await;
        let record = recorded?;
        self.reply(ex, &record).await
    }

    /// Record a stored file; on failure the file is taken back.
    async fn record(
        &self,
        key: &ApiKey,
        target: Target,
        size: u64,
        mime_type: String,
        original_name: String,
    ) -> Result<UploadRecord, GatewayError> {
        let now = chrono::Utc::now().timestamp_millis();
        let ttl = self.cfg.ttl.0.as_millis() as i64;
        let record = UploadRecord {
            file_id: naming::file_id(),
            subject: key.subject(),
            tenant: key.tenant_id(),
            bucket: key.default_bucket().to_string(),
            object: target.object(),
            upload_path: target.upload_path,
            file_name: target.file_name,
            original_name,
            size,
            mime_type,
            uploaded_ms: now,
            expires_ms: now.saturating_add(ttl),
        };
        if let Err(e) = self.storage.state.upload_put(record.clone()).await {
            // Stored but not recorded: take it back rather than keep a file
            // nobody can reach and the sweeper will never delete.
            let _ = self
                .storage
                .delete_object(key, &record.bucket, &record.object)
                .await;
            return Err(GatewayError::unavailable("The upload records", e));
        }
        Ok(record)
    }

    /// Seed 003's answer for a stored file.
    async fn reply(
        &self,
        ex: &mut Exchange<'_>,
        record: &UploadRecord,
    ) -> Result<(), GatewayError> {
        let data = json!({
            "fileId": record.file_id,
            "fileName": record.file_name,
            "originalName": record.original_name,
            "fileSize": record.size,
            "mimeType": record.mime_type,
            "uploadPath": record.upload_path,
            "fileUrl": serve::file_url(&self.base, record),
            "downloadUrl": format!("{}/download/{}", self.base, record.file_id),
            "uploadTime": rfc3339(record.uploaded_ms),
            "expiresAt": rfc3339(record.expires_ms),
        });
        ex.json(
            200,
            json!({"success": true, "code": 200, "msg": "File uploaded successfully", "data": data}),
        )
        .await
    }
}
