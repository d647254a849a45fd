//! The collector: content nobody has held for at least `grace` (one sweep
//! interval) is deleted from the backend and forgotten, by whichever
//! instance holds the collect lease, each content under its own lease (the
//! one uploads and deletes of it take), so an upload that takes it up
//! again meanwhile is never left without its object. Crashing half-way is
//! safe: the record goes last, and deleting an object twice is harmless.

use std::time::Duration;

use kikaku_filters::clock::now_ms;
use kikaku_filters::StateError;

use crate::storage::backend::{BackendError, BackendRequest};
use crate::storage::Storage;

/// The lease of a whole collection round.
pub const COLLECT_LEASE: &str = "file-host-collect";
/// Contents looked at per round.
const BATCH: usize = 500;

/// What one round did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    pub contents: u64,
    pub bytes: u64,
}

/// One round by `instance` over the file host's `bucket`, if it gets the
/// lease. Contents whose lease is busy wait for the next round.
pub async fn collect(
    storage: &Storage,
    bucket: &str,
    instance: &str,
    grace: Duration,
) -> Result<Collected, StateError> {
    let state = &storage.state;
    let mut done = Collected::default();
    let lease_ms = (grace.as_millis() as u64).max(1_000) * 2;
    if !state.lease_take(COLLECT_LEASE, instance, lease_ms).await? {
        return Ok(done);
    }
    let before = now_ms() as i64 - grace.as_millis() as i64;
    for content in state.hosted_unreferenced(before, BATCH).await? {
        let lease = super::receive::lease_name(&content.hash);
        if !state.lease_take(&lease, instance, 60_000).await? {
            continue;
        }
        let result = async {
            // Still nobody's? (An upload may have taken it up just now.)
            if !matches!(state.hosted_get(&content.hash).await?, Some((_, 0))) {
                return Ok(false);
            }
            let delete = BackendRequest::new(
                http::Method::DELETE,
                Some(bucket.to_string()),
                Some(content.hash.clone()),
            );
            match storage.backend.call(delete).await {
                Ok(_) | Err(BackendError::Status(404, _)) => {}
                Err(e) => return Err(StateError::Unavailable(format!("storage backend: {e}"))),
            }
            state.hosted_forget(&content.hash).await
        }
        .await;
        let _ = state.lease_drop(&lease, instance).await;
        match result {
            Ok(true) => {
                done.contents += 1;
                done.bytes += content.size;
            }
            Ok(false) => {}
            Err(e) => log::warn!(
                "collecting hosted content {} failed (next round retries): {e}",
                content.hash
            ),
        }
    }
    Ok(done)
}
