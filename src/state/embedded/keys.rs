//! Stored keys, by hash and by S3 access key id.

use async_trait::async_trait;
use kikaku_filters::keys::hex;
use kikaku_filters::ApiKey;

use super::memory::Record;
use super::EmbeddedState;
use crate::state::{KeyStore, StateError};

#[async_trait]
impl KeyStore for EmbeddedState {
    async fn key_get(&self, hash: &[u8; 32]) -> Result<Option<ApiKey>, StateError> {
        Ok(self.inner.lock().keys.get(hash).cloned())
    }

    async fn key_put(&self, key: &ApiKey) -> Result<(), StateError> {
        self.inner.lock().commit(Record::KeyPut { k: key.clone() })
    }

    async fn key_delete(&self, hash: &[u8; 32]) -> Result<bool, StateError> {
        let mut inner = self.inner.lock();
        if !inner.keys.contains_key(hash) {
            return Ok(false);
        }
        inner.commit(Record::KeyDel { h: hex(hash) })?;
        Ok(true)
    }

    async fn key_rotate(&self, old: &[u8; 32], new: &ApiKey) -> Result<bool, StateError> {
        let mut inner = self.inner.lock();
        if !inner.keys.contains_key(old) {
            return Ok(false);
        }
        inner.commit_all(vec![
            Record::KeyPut { k: new.clone() },
            Record::KeyDel { h: hex(old) },
        ])?;
        Ok(true)
    }

    async fn key_get_by_access_key(&self, id: &str) -> Result<Option<ApiKey>, StateError> {
        let inner = self.inner.lock();
        Ok(inner
            .keys
            .values()
            .find(|k| k.credentials().any(|c| c.access_key_id == id))
            .cloned())
    }

    async fn key_list(&self) -> Result<Vec<ApiKey>, StateError> {
        let mut keys: Vec<ApiKey> = self.inner.lock().keys.values().cloned().collect();
        keys.sort_by_key(|k| k.created_at);
        Ok(keys)
    }
}
