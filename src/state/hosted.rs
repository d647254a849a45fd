//! The state contract of the content-addressed file host (DESIGN §6, seed
//! 001): each distinct content once, by its SHA-256, and who holds it.
//! An account (or the anonymous pool) holds a content at most once; the
//! content is unreferenced once nobody holds it, and the collector deletes
//! it from the backend after that (`file_host::collect`).

use async_trait::async_trait;
use kikaku_filters::state::StateError;

/// One distinct content of the file host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostedContent {
    /// Lowercase hex SHA-256 of the bytes: the object's name and its URL.
    pub hash: String,
    pub size: u64,
    pub content_type: String,
    /// Unix milliseconds.
    pub created_ms: i64,
}

/// One holder's hold on a content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostedRef {
    pub hash: String,
    /// The account's subject, or [`ANONYMOUS_HOLDER`].
    pub holder: String,
    /// The name the file came with (for the `full` URL and listings).
    pub file_name: String,
    /// Unix milliseconds of the holder's first upload of it.
    pub uploaded_ms: i64,
}

impl HostedRef {
    /// The order of [`HostedFiles::hosted_held`]: newest first, then by hash.
    pub fn newest_first(mut held: Vec<HostedRef>) -> Vec<HostedRef> {
        held.sort_by(|a, b| (b.uploaded_ms, &b.hash).cmp(&(a.uploaded_ms, &a.hash)));
        held
    }
}

/// The bucket name hosted content has in its holders' byte ledgers: a
/// holder of content `h` is charged its size once, in the slot
/// `#file-host/h` (no tenant bucket can be named so).
pub const LEDGER_BUCKET: &str = "#file-host";

/// A holder's ledger slot name for content `hash`.
pub fn ledger_name(hash: &str) -> String {
    format!("{LEDGER_BUCKET}/{hash}")
}

/// Who holds what anonymous uploads stored (never a key's subject: those
/// have no `#`).
pub const ANONYMOUS_HOLDER: &str = "#anonymous";

/// Content by hash, holds by holder, and the unreferenced content by the
/// time it became so. Each change is atomic.
#[async_trait]
pub trait HostedFiles: Send + Sync {
    /// The content under `hash` and how many hold it.
    async fn hosted_get(&self, hash: &str) -> Result<Option<(HostedContent, u64)>, StateError>;
    /// Record a content about to be written to the backend (nothing when it
    /// is recorded already). Until someone holds it, it is unreferenced
    /// since `now_ms`, so a crash before [`HostedFiles::hosted_hold`] leaves
    /// it to the collector.
    async fn hosted_put(&self, content: HostedContent, now_ms: i64) -> Result<(), StateError>;
    /// `r.holder` holds `r.hash` (which must be recorded). `false` when it
    /// held it already (the first hold's name and time stay).
    async fn hosted_hold(&self, r: HostedRef) -> Result<bool, StateError>;
    /// Drop a hold. `None` when there was none, else how many holders are
    /// left; at 0 the content is unreferenced since `now_ms`.
    async fn hosted_release(
        &self,
        hash: &str,
        holder: &str,
        now_ms: i64,
    ) -> Result<Option<u64>, StateError>;
    /// Everything `holder` holds, newest first.
    async fn hosted_held(&self, holder: &str) -> Result<Vec<HostedRef>, StateError>;
    /// Up to `limit` contents nobody has held since at or before
    /// `before_ms`, longest unreferenced first.
    async fn hosted_unreferenced(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<HostedContent>, StateError>;
    /// Forget a content if nobody holds it; `false` when someone does or it
    /// is gone already.
    async fn hosted_forget(&self, hash: &str) -> Result<bool, StateError>;
}
