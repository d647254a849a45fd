//! Temporary files and leases on Redis. Files: one hash of records by id,
//! one hash of paths, one sorted set by expiry, all under the `{uploads}`
//! hash tag so each change is one script on one Cluster slot. Leases: one
//! key each with a PX expiry (`kikaku:lease:{name}`).

use async_trait::async_trait;

use super::RedisState;
use crate::state::{Leases, StateError, TempFiles, UploadRecord};

const FILES: &str = "kikaku:{uploads}:files";
const PATHS: &str = "kikaku:{uploads}:paths";
const EXPIRY: &str = "kikaku:{uploads}:expiry";

fn decode(raw: Option<String>) -> Result<Option<UploadRecord>, StateError> {
    raw.map(|r| {
        serde_json::from_str(&r).map_err(|e| StateError::Corrupt(format!("upload record: {e}")))
    })
    .transpose()
}

fn lease_key(name: &str) -> String {
    format!("kikaku:lease:{{{name}}}")
}

#[async_trait]
impl TempFiles for RedisState {
    async fn upload_put(&self, record: UploadRecord) -> Result<Option<UploadRecord>, StateError> {
        let json =
            serde_json::to_string(&record).map_err(|e| StateError::Corrupt(e.to_string()))?;
        let (id, path, exp) = (record.file_id.clone(), record.path_key(), record.expires_ms);
        let previous: Option<String> = self
            .run(move |c, s| async move {
                let mut inv = s.file_put.prepare_invoke();
                inv.key(FILES).key(PATHS).key(EXPIRY);
                inv.arg(id).arg(path).arg(json).arg(exp);
                c.invoke(inv).await
            })
            .await?;
        decode(previous)
    }

    async fn upload_get(&self, file_id: &str) -> Result<Option<UploadRecord>, StateError> {
        let id = file_id.to_string();
        let raw: Option<String> =
            self.run(move |c, _| async move {
                c.query(redis::cmd("HGET").arg(FILES).arg(id).clone()).await
            })
            .await?;
        decode(raw)
    }

    async fn upload_at(&self, path_key: &str) -> Result<Option<UploadRecord>, StateError> {
        let path = path_key.to_string();
        let id: Option<String> = self
            .run(move |c, _| async move {
                c.query(redis::cmd("HGET").arg(PATHS).arg(path).clone())
                    .await
            })
            .await?;
        match id {
            Some(id) => self.upload_get(&id).await,
            None => Ok(None),
        }
    }

    async fn uploads_expired(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<UploadRecord>, StateError> {
        let raw = self.due_records(EXPIRY, FILES, now_ms, limit).await?;
        let mut out = Vec::new();
        for r in raw {
            out.extend(decode(Some(r))?);
        }
        Ok(out)
    }

    async fn upload_remove(&self, record: &UploadRecord) -> Result<bool, StateError> {
        let (id, path) = (record.file_id.clone(), record.path_key());
        let gone: i64 = self
            .run(move |c, s| async move {
                let mut inv = s.file_remove.prepare_invoke();
                inv.key(FILES).key(PATHS).key(EXPIRY).arg(id).arg(path);
                c.invoke(inv).await
            })
            .await?;
        Ok(gone > 0)
    }
}

#[async_trait]
impl Leases for RedisState {
    async fn lease_take(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<bool, StateError> {
        let (key, holder) = (lease_key(name), holder.to_string());
        let got: i64 = self
            .run(move |c, s| async move {
                let mut inv = s.lease_take.prepare_invoke();
                inv.key(key).arg(holder).arg(ttl_ms.max(1));
                c.invoke(inv).await
            })
            .await?;
        Ok(got == 1)
    }

    async fn lease_drop(&self, name: &str, holder: &str) -> Result<(), StateError> {
        let (key, holder) = (lease_key(name), holder.to_string());
        self.run(move |c, s| async move {
            let mut inv = s.lease_drop.prepare_invoke();
            inv.key(key).arg(holder);
            c.invoke::<i64>(inv).await
        })
        .await
        .map(|_| ())
    }
}
