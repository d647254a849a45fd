//! Temporary files and leases on the embedded backend. Files are journaled
//! (they outlive a restart, and so does their expiry); leases live in
//! memory: one process is the only instance there is.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::memory::Record;
use super::EmbeddedState;
use crate::state::{Leases, StateError, TempFiles, UploadRecord};

#[async_trait]
impl TempFiles for EmbeddedState {
    async fn upload_put(&self, record: UploadRecord) -> Result<Option<UploadRecord>, StateError> {
        let mut inner = self.inner.lock();
        let previous = inner
            .files
            .by_path
            .get(&record.path_key())
            .and_then(|id| inner.files.by_id.get(id))
            .filter(|old| old.file_id != record.file_id)
            .cloned();
        inner.commit(Record::FilePut { f: record })?;
        Ok(previous)
    }

    async fn upload_get(&self, file_id: &str) -> Result<Option<UploadRecord>, StateError> {
        Ok(self.inner.lock().files.by_id.get(file_id).cloned())
    }

    async fn upload_at(&self, path_key: &str) -> Result<Option<UploadRecord>, StateError> {
        let inner = self.inner.lock();
        Ok(inner
            .files
            .by_path
            .get(path_key)
            .and_then(|id| inner.files.by_id.get(id))
            .cloned())
    }

    async fn uploads_expired(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<UploadRecord>, StateError> {
        let inner = self.inner.lock();
        let mut due: Vec<UploadRecord> = inner
            .files
            .by_id
            .values()
            .filter(|r| r.expires_ms <= now_ms)
            .cloned()
            .collect();
        due.sort_by(|a, b| (a.expires_ms, &a.file_id).cmp(&(b.expires_ms, &b.file_id)));
        due.truncate(limit);
        Ok(due)
    }

    async fn upload_remove(&self, record: &UploadRecord) -> Result<bool, StateError> {
        let mut inner = self.inner.lock();
        if !inner.files.by_id.contains_key(&record.file_id) {
            return Ok(false);
        }
        inner.commit(Record::FileDel {
            id: record.file_id.clone(),
        })?;
        Ok(true)
    }
}

#[async_trait]
impl Leases for EmbeddedState {
    async fn lease_take(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<bool, StateError> {
        let mut inner = self.inner.lock();
        let now = Instant::now();
        let until = now + Duration::from_millis(ttl_ms);
        match inner.files.leases.get_mut(name) {
            Some((h, at)) if *at > now && h != holder => Ok(false),
            Some((h, at)) => {
                *h = holder.to_string();
                *at = until;
                Ok(true)
            }
            None => {
                inner
                    .files
                    .leases
                    .insert(name.to_string(), (holder.to_string(), until));
                Ok(true)
            }
        }
    }

    async fn lease_drop(&self, name: &str, holder: &str) -> Result<(), StateError> {
        let mut inner = self.inner.lock();
        if inner
            .files
            .leases
            .get(name)
            .is_some_and(|(h, _)| h == holder)
        {
            inner.files.leases.remove(name);
        }
        Ok(())
    }
}
