//! Stored keys on Redis: one hash of records, one index by S3 access key.

use async_trait::async_trait;
use kikaku_filters::keys::hex;
use kikaku_filters::ApiKey;

use super::RedisState;
use crate::state::{KeyStore, StateError};

/// Stored keys: one hash, field = key hash (hex), value = the record as JSON.
const KEYS: &str = "kikaku:keys";
/// S3 access key id → key hash (hex), for the S3 endpoint's lookups.
const ACCESS_KEYS: &str = "kikaku:keys:s3";

/// `HSET` of the access-key index pointing `key`'s credentials at `field`
/// (none when it has no credential).
fn access_index(key: &ApiKey, field: &str) -> Option<redis::Cmd> {
    key.credentials().next()?;
    let mut index = redis::cmd("HSET");
    index.arg(ACCESS_KEYS);
    for cred in key.credentials() {
        index.arg(&cred.access_key_id).arg(field);
    }
    Some(index)
}

#[async_trait]
impl KeyStore for RedisState {
    async fn key_get(&self, hash: &[u8; 32]) -> Result<Option<ApiKey>, StateError> {
        let field = hex(hash);
        let raw: Option<String> = self
            .run(move |c, _| async move {
                c.query(redis::cmd("HGET").arg(KEYS).arg(field).clone())
                    .await
            })
            .await?;
        raw.map(|r| {
            serde_json::from_str(&r).map_err(|e| StateError::Corrupt(format!("stored key: {e}")))
        })
        .transpose()
    }

    async fn key_put(&self, key: &ApiKey) -> Result<(), StateError> {
        let (field, json) = (
            hex(&key.hash),
            serde_json::to_string(key).map_err(|e| StateError::Corrupt(e.to_string()))?,
        );
        // The access-key index first: a lookup always re-checks the record
        // it points at, so an index entry without (or ahead of) its key is harmless.
        if let Some(index) = access_index(key, &field) {
            self.run(move |c, _| async move { c.query::<i64>(index).await })
                .await?;
        }
        self.run(move |c, _| async move {
            c.query::<i64>(redis::cmd("HSET").arg(KEYS).arg(field).arg(json).clone())
                .await
        })
        .await
        .map(|_| ())
    }

    async fn key_rotate(&self, old: &[u8; 32], new: &ApiKey) -> Result<bool, StateError> {
        let (old, field, json) = (
            hex(old),
            hex(&new.hash),
            serde_json::to_string(new).map_err(|e| StateError::Corrupt(e.to_string()))?,
        );
        let index = access_index(new, &field);
        let swapped: i64 = self
            .run(move |c, s| async move {
                let mut inv = s.key_rotate.prepare_invoke();
                inv.key(KEYS).arg(old).arg(field).arg(json);
                c.invoke(inv).await
            })
            .await?;
        if swapped == 0 {
            return Ok(false);
        }
        // The credentials now belong to the new key. Until this lands a
        // lookup by access key finds the old hash gone and answers "no such
        // credential" (a few milliseconds; S3 clients retry).
        if let Some(index) = index {
            self.run(move |c, _| async move { c.query::<i64>(index).await })
                .await?;
        }
        Ok(true)
    }

    async fn key_get_by_access_key(&self, id: &str) -> Result<Option<ApiKey>, StateError> {
        let ak = id.to_string();
        let field: Option<String> = self
            .run(move |c, _| async move {
                c.query(redis::cmd("HGET").arg(ACCESS_KEYS).arg(ak).clone())
                    .await
            })
            .await?;
        let Some(hash) = field.as_deref().and_then(kikaku_filters::keys::parse_hex32) else {
            return Ok(None);
        };
        Ok(self
            .key_get(&hash)
            .await?
            .filter(|k| k.credentials().any(|c| c.access_key_id == id)))
    }

    async fn key_delete(&self, hash: &[u8; 32]) -> Result<bool, StateError> {
        let field = hex(hash);
        let n: i64 = self
            .run(move |c, _| async move {
                c.query(redis::cmd("HDEL").arg(KEYS).arg(field).clone())
                    .await
            })
            .await?;
        Ok(n > 0)
    }

    async fn key_list(&self) -> Result<Vec<ApiKey>, StateError> {
        let raw: Vec<String> = self
            .run(|c, _| async move { c.query(redis::cmd("HVALS").arg(KEYS).clone()).await })
            .await?;
        let mut keys: Vec<ApiKey> = raw
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect();
        keys.sort_by_key(|k| k.created_at);
        Ok(keys)
    }
}
