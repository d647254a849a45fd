//! `GET|HEAD /files/{tenant}/{uploadPath}/{fileName}` and
//! `/download/{fileId}`: uploaded files, without a key, until they expire
//! (then 404). Range, conditional requests, ETag and HEAD come from the
//! backend; the content type is the one recorded at upload, and a download
//! adds `Content-Disposition: attachment`. Like the file host's, the
//! answers are sandboxed (`Content-Security-Policy: sandbox`).

use std::sync::Arc;

use kikaku_filters::{ErrorKind, GatewayError};

use crate::reply::Exchange;
use crate::state::UploadRecord;
use crate::storage::s3_endpoint::relay::{relay, Relay};
use crate::storage::Storage;

/// Longest a client may cache a file (less when it expires sooner).
const MAX_AGE_SECS: i64 = 3600;

/// `{base}/files/{tenant}/{uploadPath}/{fileName}`, each segment encoded.
pub fn file_url(base: &str, r: &UploadRecord) -> String {
    let mut url = format!("{base}/files/{}", r.tenant);
    for seg in r.path().split('/') {
        url.push('/');
        url.push_str(&sigv4::uri_encode(seg.as_bytes(), false));
    }
    url
}

fn not_found() -> GatewayError {
    GatewayError::new(
        ErrorKind::NotFound,
        "No such file (files are deleted when they expire).",
    )
}

/// Serves uploaded files.
pub struct UploadedFiles {
    storage: Arc<Storage>,
}

impl UploadedFiles {
    pub fn new(storage: Arc<Storage>) -> UploadedFiles {
        UploadedFiles { storage }
    }

    pub async fn handle(&self, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
        let req = ex.session.req_header();
        if !matches!(req.method, http::Method::GET | http::Method::HEAD) {
            return Err(GatewayError::new(
                ErrorKind::MethodNotAllowed,
                format!("{} is not allowed on a file; use GET or HEAD.", req.method),
            ));
        }
        let path = req.uri.path().to_string();
        let decoded = sigv4::percent_decode(&path)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(not_found)?;
        let state = &self.storage.state;
        let unavailable = |e| GatewayError::unavailable("The upload records", e);
        let (record, attachment) = if let Some(id) = decoded.strip_prefix("/download/") {
            (state.upload_get(id).await.map_err(unavailable)?, true)
        } else if let Some(rest) = decoded.strip_prefix("/files/") {
            (state.upload_at(rest).await.map_err(unavailable)?, false)
        } else {
            (None, false)
        };
        let now = chrono::Utc::now().timestamp_millis();
        let record = record
            .filter(|r| r.expires_ms > now)
            .ok_or_else(not_found)?;
        self.send(ex, &record, attachment, now).await
    }

    async fn send(
        &self,
        ex: &mut Exchange<'_>,
        r: &UploadRecord,
        attachment: bool,
        now: i64,
    ) -> Result<(), GatewayError> {
        let bucket = self
            .storage
            .backend
            .buckets
            .to_backend(&r.tenant, &r.bucket);
        // Deleted through the S3 API meanwhile: gone for these URLs too.
        let resp = self
            .storage
            .read_object(ex.session.req_header(), bucket, r.object.clone(), not_found)
            .await?;
        let age = ((r.expires_ms - now) / 1000).clamp(0, MAX_AGE_SECS);
        let mut set = vec![
            ("content-type", r.mime_type.clone()),
            ("cache-control", format!("public, max-age={age}")),
            ("x-content-type-options", "nosniff".to_string()),
            // An uploaded HTML page runs no script on the gateway's origin.
            ("content-security-policy", "sandbox".to_string()),
            ("accept-ranges", "bytes".to_string()),
        ];
        if attachment {
            set.push(("content-disposition", disposition(&r.file_name)));
        }
        relay(ex, resp, Relay::with(set)).await
    }
}

/// `attachment; filename="..."; filename*=UTF-8''...`: an ASCII fallback
/// and the exact name (RFC 6266).
fn disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '_',
        })
        .collect();
    format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        sigv4::uri_encode(name.as_bytes(), false)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_dispositions() {
        let r = UploadRecord {
            file_id: "file_x".into(),
            subject: "s".into(),
            tenant: "0a1b2c3d4e5f".into(),
            bucket: "demo".into(),
            object: "kikaku-uploads/images/my photo.jpg".into(),
            upload_path: "images".into(),
            file_name: "my photo.jpg".into(),
            original_name: "a.jpg".into(),
            size: 1,
            mime_type: "image/jpeg".into(),
            uploaded_ms: 0,
            expires_ms: 1,
        };
        assert_eq!(
            file_url("https://g.example", &r),
            "https://g.example/files/0a1b2c3d4e5f/images/my%20photo.jpg"
        );
        assert_eq!(
            disposition("fé\"x.txt"),
            "attachment; filename=\"f__x.txt\"; filename*=UTF-8''f%C3%A9%22x.txt"
        );
    }
}
