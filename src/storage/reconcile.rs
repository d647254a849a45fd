//! Restating a storage key's usage from what the backend really holds
//! (DESIGN §4), after a crash between a write and its ledger entry, objects
//! changed behind the gateway's back, or a restore: its buckets and objects
//! are listed at the backend and the ledger restated, with the file host's
//! content it holds; parts of multipart uploads in progress keep counting. Used by `kikaku-edge storage
//! reconcile` and `POST /admin/v1/keys/{id}/reconcile`.

use kikaku_filters::{ApiKey, StateError};

use super::backend::BackendError;
use super::Storage;
use crate::state::LedgerSlot;

/// Why a reconcile stopped part-way (what was restated stays restated; a
/// second run finishes it).
#[derive(Debug)]
pub enum ReconcileError {
    State(StateError),
    Backend(BackendError),
    /// The ledger refused to restate a part.
    Refused,
}

impl std::fmt::Display for ReconcileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReconcileError::State(e) => write!(f, "state store: {e}"),
            ReconcileError::Backend(e) => write!(f, "storage backend: {e}"),
            ReconcileError::Refused => f.write_str("the ledger refused to restate a part"),
        }
    }
}

impl std::error::Error for ReconcileError {}

impl From<StateError> for ReconcileError {
    fn from(e: StateError) -> Self {
        ReconcileError::State(e)
    }
}

impl From<BackendError> for ReconcileError {
    fn from(e: BackendError) -> Self {
        ReconcileError::Backend(e)
    }
}

/// Restate one key's objects; returns usage before and after, and the count.
pub async fn reconcile(
    storage: &Storage,
    key: &ApiKey,
) -> Result<(u64, u64, usize), ReconcileError> {
    let subject = key.subject();
    let before = storage.state.quota_usage(&subject).await?.used;
    let tenant = key.tenant_id();
    let map = &storage.backend.buckets;
    let buckets = storage.backend.tenant_buckets(key).await?;
    let mut objects = Vec::new();
    for bucket in buckets {
        let backend_bucket = map.to_backend(&tenant, &bucket);
        let mut token: Option<String> = None;
        loop {
            let page = storage
                .backend
                .list_objects(&backend_bucket, "", token.as_deref(), 1000)
                .await?;
            objects.extend(
                page.objects
                    .into_iter()
                    .map(|o| (Storage::ledger_name(&bucket, &o.key), o.size)),
            );
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
    }
    // Hosted content (the file host) is charged to each holder once, by
    // the holds: its one object lives in the file host's bucket.
    for held in storage.state.hosted_held(&subject).await? {
        if let Some((content, _)) = storage.state.hosted_get(&held.hash).await? {
            objects.push((crate::state::hosted::ledger_name(&held.hash), content.size));
        }
    }
    let count = objects.len();
    storage.state.storage_reconcile(&subject, objects).await?;
    restate_open_uploads(storage, key).await?;
    let after = storage.state.quota_usage(&subject).await?.used;
    Ok((before, after, count))
}

/// The parts of each open multipart upload the ledger knows, restated from
/// the backend's ListParts: an upload the backend no longer has leaves the
/// ledger; one it has is charged exactly its parts' bytes.
async fn restate_open_uploads(storage: &Storage, key: &ApiKey) -> Result<(), ReconcileError> {
    let subject = key.subject();
    let tenant = key.tenant_id();
    let state = &storage.state;
    let uploads = state.storage_uploads(&subject).await?;
    for up in uploads {
        let backend_bucket = if up.bucket == crate::state::hosted::LEDGER_BUCKET {
            storage.file_host_bucket.clone()
        } else {
            storage.backend.buckets.to_backend(&tenant, &up.bucket)
        };
        let parts = storage
            .backend
            .list_parts(&backend_bucket, &up.key, &up.upload_id)
            .await?;
        state.storage_abort(&subject, &up.upload_id).await?;
        let Some(parts) = parts else {
            continue;
        };
        let upload_id = up.upload_id.clone();
        state.storage_upload_begin(&subject, up).await?;
        for (part, (_, size)) in parts {
            let slot = LedgerSlot::Part {
                upload_id: upload_id.clone(),
                part,
            };
            let held = state
                .storage_reserve(&subject, &slot, size, u64::MAX)
                .await?
                .ok_or(ReconcileError::Refused)?;
            state.storage_commit(&subject, held, &slot, size).await?;
        }
    }
    Ok(())
}
