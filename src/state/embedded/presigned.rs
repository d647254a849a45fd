//! Presigned URLs handed out, kept in memory and the journal until they
//! expire (compaction drops the expired ones).

use async_trait::async_trait;

use super::memory::Record;
use super::EmbeddedState;
use crate::state::{PresignedRecord, PresignedUrls, StateError};

/// Live presigned URLs kept at most: past it the oldest are forgotten (they
/// still work until they expire; only the listing loses them).
const MAX_KEPT: usize = 100_000;

#[async_trait]
impl PresignedUrls for EmbeddedState {
    async fn presigned_add(&self, record: PresignedRecord) -> Result<(), StateError> {
        let mut inner = self.inner.lock();
        let now = record.created_at;
        inner.presigned.retain(|p| p.expires_at > now);
        if inner.presigned.contains(&record) {
            // The same URL again (same owner, object, method and second).
            return Ok(());
        }
        if inner.presigned.len() >= MAX_KEPT {
            inner.presigned.remove(0);
        }
        inner.commit(Record::Presigned { p: record })
    }

    async fn presigned_list(&self, now: i64) -> Result<Vec<PresignedRecord>, StateError> {
        let inner = self.inner.lock();
        Ok(inner
            .presigned
            .iter()
            .rev()
            .filter(|p| p.expires_at > now)
            .cloned()
            .collect())
    }
}
