//! Expiry (DESIGN §6): every `uploads.sweep_interval` each instance tries
//! the sweep lease in the state store; the one that holds it deletes the
//! expired files from the backend, gives their bytes back to the quota and
//! forgets them. A file is deleted under its path's lease, which uploads
//! to that path hold while they store, so a sweep never deletes a file
//! that an upload is replacing. Crashing half-way is safe: the record goes
//! last, so the next sweep repeats the (idempotent) delete and refund, and
//! the ledger gives a file's bytes back once however often it is asked.

use std::time::Duration;

use kikaku_filters::clock::now_ms;
use kikaku_filters::StateError;

use crate::state::{StateStore, UploadRecord};
use crate::storage::backend::BackendRequest;
use crate::storage::Storage;

/// The lease of the whole sweep.
pub const SWEEP_LEASE: &str = "uploads-sweep";
/// Files looked at per round trip.
const BATCH: usize = 100;
/// How long a path lease is held at most (a store is seconds; a 5 GiB
/// staged copy, minutes).
pub const PATH_LEASE_MS: u64 = 10 * 60 * 1000;

/// The lease that serialises writes and deletes of one path.
pub fn path_lease(r_path_key: &str) -> String {
    format!("upload-path:{r_path_key}")
}

/// Take a path's lease, waiting up to `wait` for a sweep that holds it.
pub async fn lock_path(
    state: &dyn StateStore,
    path_key: &str,
    holder: &str,
    wait: Duration,
) -> Result<bool, StateError> {
    crate::state::lease_wait(state, &path_lease(path_key), holder, PATH_LEASE_MS, wait).await
}

/// What one sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub files: u64,
    pub bytes: u64,
}

/// One sweep by `instance`, if it gets the lease (held for `interval`,
/// renewed per batch). Files whose path is busy wait for the next sweep.
pub async fn sweep(
    storage: &Storage,
    instance: &str,
    interval: Duration,
) -> Result<Swept, StateError> {
    let state = &storage.state;
    let lease_ms = (interval.as_millis() as u64).max(1_000) * 2;
    let mut swept = Swept::default();
    if !state.lease_take(SWEEP_LEASE, instance, lease_ms).await? {
        return Ok(swept);
    }
    let now = now_ms() as i64;
    let mut skipped = 0;
    loop {
        let due = state.uploads_expired(now, BATCH + skipped).await?;
        let due: Vec<UploadRecord> = due.into_iter().skip(skipped).collect();
        if due.is_empty() {
            break;
        }
        for r in due {
            match expire(storage, &r, instance).await {
                Ok(Some(bytes)) => {
                    swept.files += 1;
                    swept.bytes += bytes;
                }
                Ok(None) => skipped += 1,
                Err(e) => {
                    log::warn!("expiring {} failed (next sweep retries): {e}", r.file_id);
                    skipped += 1;
                }
            }
        }
        if !state.lease_take(SWEEP_LEASE, instance, lease_ms).await? {
            break;
        }
    }
    Ok(swept)
}

/// Delete one expired file under its path's lease: the bytes freed, or
/// `None` when its path is busy (an upload is replacing it) or it is gone.
async fn expire(
    storage: &Storage,
    r: &UploadRecord,
    instance: &str,
) -> Result<Option<u64>, StateError> {
    let state = &storage.state;
    let lease = path_lease(&r.path_key());
    if !state.lease_take(&lease, instance, 60_000).await? {
        return Ok(None);
    }
    let result = async {
        // Still this file? (An upload may have replaced it just now.)
        if state.upload_get(&r.file_id).await?.is_none() {
            return Ok(None);
        }
        let bucket = storage.backend.buckets.to_backend(&r.tenant, &r.bucket);
        let delete =
            BackendRequest::new(http::Method::DELETE, Some(bucket), Some(r.object.clone()));
        match storage.backend.call(delete).await {
            Ok(_) => {}
            Err(crate::storage::backend::BackendError::Status(404, _)) => {}
            Err(e) => return Err(StateError::Unavailable(format!("storage backend: {e}"))),
        }
        let freed = state
            .storage_remove(&r.subject, &Storage::ledger_name(&r.bucket, &r.object))
            .await?;
        state.upload_remove(r).await?;
        Ok(Some(freed))
    }
    .await;
    let _ = state.lease_drop(&lease, instance).await;
    result
}
