//! The state contract of the upload API (DESIGN §6): the records of
//! temporary files, by id, by path and by expiry, and leases, which let
//! many instances agree on who does a job (the expiry sweep) or who writes
//! a path right now.

use async_trait::async_trait;
use kikaku_filters::state::StateError;

/// One file of the upload API, while it lives.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UploadRecord {
    /// `file_` + random letters: names the file in `/download/{fileId}`.
    pub file_id: String,
    /// The owning account (the key's subject).
    pub subject: String,
    /// The owning account's tenant id (`/files/{tenant}/...`).
    pub tenant: String,
    /// The tenant's bucket the object is in, and its key there.
    pub bucket: String,
    pub object: String,
    /// As the client gave it, trimmed of slashes; may be empty.
    pub upload_path: String,
    pub file_name: String,
    /// The source's own name (the form's filename, the URL's last segment).
    pub original_name: String,
    pub size: u64,
    pub mime_type: String,
    /// Unix milliseconds.
    pub uploaded_ms: i64,
    pub expires_ms: i64,
}

impl UploadRecord {
    /// Where the file is served under its tenant: `uploadPath/fileName`.
    pub fn path(&self) -> String {
        upload_path_key(&self.upload_path, &self.file_name)
    }

    /// `tenant/uploadPath/fileName`: the path index's key.
    pub fn path_key(&self) -> String {
        format!("{}/{}", self.tenant, self.path())
    }
}

/// `uploadPath/fileName`, or `fileName` alone when there is no path.
pub fn upload_path_key(upload_path: &str, file_name: &str) -> String {
    if upload_path.is_empty() {
        file_name.to_string()
    } else {
        format!("{upload_path}/{file_name}")
    }
}

/// Temporary files by id, by path (`tenant/uploadPath/fileName`) and by
/// expiry. Each change is atomic.
#[async_trait]
pub trait TempFiles: Send + Sync {
    /// Record a file. It takes over its path: the record that held the
    /// path is removed and returned (its object was just overwritten).
    async fn upload_put(&self, record: UploadRecord) -> Result<Option<UploadRecord>, StateError>;
    async fn upload_get(&self, file_id: &str) -> Result<Option<UploadRecord>, StateError>;
    /// The file at `tenant/uploadPath/fileName`.
    async fn upload_at(&self, path_key: &str) -> Result<Option<UploadRecord>, StateError>;
    /// Up to `limit` files whose `expires_ms` is at or before `now_ms`,
    /// soonest first.
    async fn uploads_expired(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<UploadRecord>, StateError>;
    /// Forget a file (and its path, if the path is still its). `false`
    /// when it was already gone.
    async fn upload_remove(&self, record: &UploadRecord) -> Result<bool, StateError>;
}

/// Named leases: at most one holder at a time, each for a bounded time.
#[async_trait]
pub trait Leases: Send + Sync {
    /// Take `name` for `holder` for `ttl_ms`, or extend it when `holder`
    /// has it already. `false`: someone else holds it.
    async fn lease_take(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<bool, StateError>;
    /// Give `name` back, if `holder` still has it.
    async fn lease_drop(&self, name: &str, holder: &str) -> Result<(), StateError>;
}

/// Take the lease `name` for `holder` (for `ttl_ms`), waiting up to `wait`
/// for whoever holds it now. `false`: still held by another after `wait`.
pub async fn lease_wait<L: Leases + ?Sized>(
    leases: &L,
    name: &str,
    holder: &str,
    ttl_ms: u64,
    wait: std::time::Duration,
) -> Result<bool, StateError> {
    let until = tokio::time::Instant::now() + wait;
    loop {
        if leases.lease_take(name, holder, ttl_ms).await? {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= until {
            return Ok(false);
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// A random holder id: one per lease taken, or one per process.
pub fn lease_holder() -> String {
    let b: [u8; 12] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}
