//! `POST /account/rotate-key` (DESIGN §2): the holder of a key resets it.
//! The answer, `{"key", "id"}`, is the only time the new key is shown. The
//! old key is gone from the state store in the same step the new one lands
//! (`KeyStore::key_rotate`), so every instance refuses it once its cache
//! entry lapses (at most 1 s; this instance at once). The new key keeps
//! the account: owner, quota, usage, logs, gallery, buckets and S3
//! credentials. A key of the config file is the operator's: 409.

use std::sync::Arc;

use kikaku_filters::{ErrorKind, GatewayError, KeyDirectory, StoredKeys};
use serde_json::json;

use crate::reply::Exchange;
use crate::state::StateStore;

pub struct RotateKey {
    state: Arc<dyn StateStore>,
    /// The config file's keys, which the holder may not reset.
    config_keys: Arc<KeyDirectory>,
    /// This instance's cache of stored keys, told at once.
    stored: Option<Arc<StoredKeys>>,
}

impl RotateKey {
    pub fn new(
        state: Arc<dyn StateStore>,
        config_keys: Arc<KeyDirectory>,
        stored: Option<Arc<StoredKeys>>,
    ) -> RotateKey {
        RotateKey {
            state,
            config_keys,
            stored,
        }
    }

    pub async fn handle(&self, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
        let key = ex.ctx.require_key("rotate_key")?;
        if self.config_keys.get(&key.hash).is_some() {
            return Err(GatewayError::new(
                ErrorKind::Conflict,
                "This key is defined in the gateway's config file and cannot be reset \
                 here: ask the operator to replace it.",
            ));
        }
        let (secret, new) = key.rotated();
        let swapped = self
            .state
            .key_rotate(&key.hash, &new)
            .await
            .map_err(|e| GatewayError::unavailable("The key store", e))?;
        if !swapped {
            return Err(GatewayError::new(
                ErrorKind::Conflict,
                "This key was reset or removed by another request just now; \
                 use the key that reset returned.",
            ));
        }
        if let Some(stored) = &self.stored {
            stored.forget(&key.hash);
        }
        log::info!("key {} rotated to {}", key.key_ref, new.key_ref);
        ex.json(200, json!({"key": secret, "id": new.id()})).await
    }
}
