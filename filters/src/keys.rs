//! API keys: their types, records, the directory they are looked up in, and
//! how they appear in logs (a prefix and a short hash, never whole).

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The two kinds of customer key. The prefix decides the type, and
/// `kikaku_s3_` is checked before `kikaku_`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyType {
    Image,
    Storage,
}

impl KeyType {
    pub const STORAGE_PREFIX: &'static str = "kikaku_s3_";
    pub const IMAGE_PREFIX: &'static str = "kikaku_";

    /// The type a key string announces by its prefix, if any.
    pub fn from_key(key: &str) -> Option<KeyType> {
        if key.starts_with(Self::STORAGE_PREFIX) {
            Some(KeyType::Storage)
        } else if key.starts_with(Self::IMAGE_PREFIX) {
            Some(KeyType::Image)
        } else {
            None
        }
    }

    pub fn prefix(self) -> &'static str {
        match self {
            KeyType::Image => Self::IMAGE_PREFIX,
            KeyType::Storage => Self::STORAGE_PREFIX,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Image => "image",
            KeyType::Storage => "storage",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    Suspended,
}

/// One customer key as the gateway knows it. The key itself is only kept as
/// its SHA-256.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub hash: [u8; 32],
    /// Loggable reference: type prefix + first 8 hex digits of the hash.
    pub key_ref: String,
    pub key_type: KeyType,
    pub owner: String,
    pub email: String,
    pub status: KeyStatus,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None` never expires.
    pub expires_at: Option<i64>,
    /// Images for image keys, bytes for storage keys.
    pub quota: u64,
    /// Requests per minute; `None` uses the route's or the default limit.
    pub rate_limit_per_minute: Option<u32>,
}

/// SHA-256 of a presented key.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// How a key appears in logs: its type prefix and a short hash.
pub fn key_ref(key_type: KeyType, hash: &[u8; 32]) -> String {
    let mut s = String::with_capacity(20);
    s.push_str(key_type.prefix());
    s.push('~');
    for b in &hash[..4] {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// All keys of one config snapshot, by hash.
#[derive(Debug, Default)]
pub struct KeyDirectory {
    by_hash: HashMap<[u8; 32], Arc<ApiKey>>,
}

impl KeyDirectory {
    pub fn new(keys: impl IntoIterator<Item = ApiKey>) -> Self {
        KeyDirectory {
            by_hash: keys.into_iter().map(|k| (k.hash, Arc::new(k))).collect(),
        }
    }

    /// Find the key a client presented. The map lookup is on the SHA-256 of
    /// the key (so timing says nothing about the key itself); the final
    /// comparison is constant-time.
    pub fn lookup(&self, presented: &str) -> Option<Arc<ApiKey>> {
        let hash = hash_key(presented);
        let found = self.by_hash.get(&hash)?;
        if bool::from(found.hash.ct_eq(&hash)) {
            Some(found.clone())
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

#[cfg(test)]
pub(crate) fn test_key(key: &str, status: KeyStatus, expires_at: Option<i64>) -> ApiKey {
    let key_type = KeyType::from_key(key).expect("test keys carry a prefix");
    let hash = hash_key(key);
    ApiKey {
        hash,
        key_ref: key_ref(key_type, &hash),
        key_type,
        owner: "test".into(),
        email: "test@example.com".into(),
        status,
        created_at: 0,
        expires_at,
        quota: 100,
        rate_limit_per_minute: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_prefix_is_checked_first() {
        assert_eq!(KeyType::from_key("kikaku_s3_abc"), Some(KeyType::Storage));
        assert_eq!(KeyType::from_key("kikaku_abc"), Some(KeyType::Image));
        assert_eq!(KeyType::from_key("sk-abc"), None);
    }

    #[test]
    fn lookup_finds_only_exact_keys() {
        let dir = KeyDirectory::new([test_key("kikaku_one", KeyStatus::Active, None)]);
        assert!(dir.lookup("kikaku_one").is_some());
        assert!(dir.lookup("kikaku_on").is_none());
        assert!(dir.lookup("kikaku_one ").is_none());
    }

    #[test]
    fn key_ref_does_not_contain_the_secret_part() {
        let k = test_key("kikaku_supersecretvalue", KeyStatus::Active, None);
        assert!(k.key_ref.starts_with("kikaku_~"));
        assert!(!k.key_ref.contains("supersecret"));
        assert_eq!(k.key_ref.len(), "kikaku_~".len() + 8);
    }
}
