//! API keys: their types, records, the directory they are looked up in, and
//! how they appear in logs (a prefix and a short hash, never whole).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::StateError;

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
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ApiKey {
    #[serde(with = "hex32")]
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
    /// Storage keys: the bucket `/s3/*` works in.
    #[serde(default)]
    pub bucket: Option<String>,
    /// Storage keys: the credential of the S3-compatible endpoint, made
    /// with the key. The secret is kept as is: SigV4 verification needs
    /// it, not a hash.
    #[serde(default)]
    pub s3: Option<S3Credential>,
    /// Storage keys: more S3 credentials, added through the management API
    /// (seed 002: one per user or application, each switched off alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_s3: Vec<S3Credential>,
    /// The account this key belongs to: the [`ApiKey::subject`] of the
    /// first key of its line. Set when a key is rotated
    /// (`POST /account/rotate-key`), so the new key keeps the old one's
    /// usage, logs, gallery and buckets; `None` for a key never rotated
    /// (its own hash names its account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

/// An S3 access key id and its secret.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Credential {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Who or what uses it (seed 002's `user_name`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_name: String,
    /// `false`: refused (403) without touching the key's other credentials.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub is_active: bool,
    /// Unix seconds; 0 when unknown (credentials of the config file).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub created_at: i64,
}

impl S3Credential {
    /// An active credential with no user name.
    pub fn new(access_key_id: String, secret_access_key: String) -> S3Credential {
        S3Credential {
            access_key_id,
            secret_access_key,
            user_name: String::new(),
            is_active: true,
            created_at: 0,
        }
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Never print the secret.
impl std::fmt::Debug for S3Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credential")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

impl ApiKey {
    /// A short, stable id of the key's owner in backend names (bucket
    /// names, gallery paths): the first 12 hex digits of its subject, so
    /// it survives rotation.
    pub fn tenant_id(&self) -> String {
        let mut s = self.subject();
        s.truncate(12);
        s
    }

    /// The account's name in the state store: half the hash of the first
    /// key of the line (never the key), the same after every rotation.
    pub fn subject(&self) -> String {
        match &self.account {
            Some(a) => a.clone(),
            None => hex(&self.hash[..16]),
        }
    }

    /// This key's own id (12 hex digits of its hash): how the management
    /// API names it. A rotated key has a new id and the old tenant.
    pub fn id(&self) -> String {
        hex(&self.hash[..6])
    }

    /// The bucket `/s3/*` works in.
    pub fn default_bucket(&self) -> &str {
        self.bucket.as_deref().unwrap_or("default")
    }

    /// Every S3 credential of the key, active or not, the first first.
    pub fn credentials(&self) -> impl Iterator<Item = &S3Credential> {
        self.s3.iter().chain(self.more_s3.iter())
    }

    /// The credential with this access key id, if it is active.
    pub fn active_credential(&self, access_key_id: &str) -> Option<&S3Credential> {
        self.credentials()
            .find(|c| c.access_key_id == access_key_id)
            .filter(|c| c.is_active)
    }

    /// The credential to show a customer (`/s3/credentials`): the first
    /// active one.
    pub fn shown_credential(&self) -> Option<&S3Credential> {
        self.credentials().find(|c| c.is_active)
    }
}

/// A new key of type `t`: its prefix and 40 random letters and digits.
pub fn new_secret(t: KeyType) -> String {
    use rand::distributions::{Alphanumeric, DistString};
    format!(
        "{}{}",
        t.prefix(),
        Alphanumeric.sample_string(&mut rand::thread_rng(), 40)
    )
}

impl ApiKey {
    /// The key that replaces this one in a key reset, and its secret: a new
    /// hash (so a new id and key_ref), the same account and everything else.
    pub fn rotated(&self) -> (String, ApiKey) {
        let secret = new_secret(self.key_type);
        let hash = hash_key(&secret);
        let key = ApiKey {
            hash,
            key_ref: key_ref(self.key_type, &hash),
            account: Some(self.subject()),
            ..self.clone()
        };
        (secret, key)
    }
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
    by_access_key: HashMap<String, Arc<ApiKey>>,
}

impl KeyDirectory {
    pub fn new(keys: impl IntoIterator<Item = ApiKey>) -> Self {
        let by_hash: HashMap<[u8; 32], Arc<ApiKey>> =
            keys.into_iter().map(|k| (k.hash, Arc::new(k))).collect();
        let by_access_key = by_hash
            .values()
            .flat_map(|k| {
                k.credentials()
                    .map(|c| (c.access_key_id.clone(), k.clone()))
            })
            .collect();
        KeyDirectory {
            by_hash,
            by_access_key,
        }
    }

    /// Every key of the directory.
    pub fn all(&self) -> Vec<Arc<ApiKey>> {
        self.by_hash.values().cloned().collect()
    }

    /// The key with this hash.
    pub fn get(&self, hash: &[u8; 32]) -> Option<Arc<ApiKey>> {
        self.by_hash.get(hash).cloned()
    }

    /// The storage key an S3 access key id belongs to.
    pub fn lookup_access_key(&self, access_key_id: &str) -> Option<Arc<ApiKey>> {
        self.by_access_key.get(access_key_id).cloned()
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
        bucket: None,
        s3: None,
        more_s3: Vec::new(),
        account: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_with_parse_hex32() {
        let h = hash_key("kikaku_demo_key");
        let text = hex(&h);
        assert_eq!(text.len(), 64);
        assert!(text
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_eq!(parse_hex32(&text), Some(h));
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

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

/// Key hashes as 64 hex digits in stored records.
mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::hex(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        super::parse_hex32(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// Lower-case hex, one allocation (this runs several times per request:
/// state keys are named by the key's hash).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

/// Keys kept in the state store, by the SHA-256 of the key.
#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn key_get(&self, hash: &[u8; 32]) -> Result<Option<ApiKey>, StateError>;
    /// Create or replace.
    async fn key_put(&self, key: &ApiKey) -> Result<(), StateError>;
    /// `false` when there was no such key.
    async fn key_delete(&self, hash: &[u8; 32]) -> Result<bool, StateError>;
    async fn key_list(&self) -> Result<Vec<ApiKey>, StateError>;
    /// Replace the key `old` with `new` in one step (a key reset): `false`,
    /// and nothing changed, when `old` is no longer stored (rotated or
    /// deleted meanwhile), so two resets of one key never leave two keys.
    async fn key_rotate(&self, old: &[u8; 32], new: &ApiKey) -> Result<bool, StateError>;

    /// The stored key holding this S3 access key id.
    async fn key_get_by_access_key(
        &self,
        access_key_id: &str,
    ) -> Result<Option<ApiKey>, StateError>;
}

/// Keys kept in the state store (created by `kikaku-edge keys` or the
/// management API), looked up after the config's keys. Entries live at most
/// `ttl` (1 s by default), found or not, so a change made on any instance is
/// seen everywhere within it, and a revoked key is never served from cache
/// past it.
pub struct StoredKeys {
    store: std::sync::Arc<dyn KeyStore>,
    ttl: std::time::Duration,
    cache: parking_lot::Mutex<HashMap<[u8; 32], Cached>>,
    /// The same, by S3 access key id.
    by_access_key: parking_lot::Mutex<HashMap<String, Cached>>,
}

/// When an entry was fetched, and what was found (`None`: no such key).
type Cached = (std::time::Instant, Option<Arc<ApiKey>>);

/// Entries kept at most; past it the cache starts over (a flood of unknown
/// keys cannot grow it without bound).
const CACHE_MAX: usize = 100_000;

impl StoredKeys {
    pub fn new(store: std::sync::Arc<dyn KeyStore>, ttl: std::time::Duration) -> Self {
        StoredKeys {
            store,
            ttl,
            cache: Default::default(),
            by_access_key: Default::default(),
        }
    }

    /// The stored key holding an S3 access key id (same caching rules).
    pub async fn lookup_access_key(
        &self,
        access_key_id: &str,
    ) -> Result<Option<Arc<ApiKey>>, StateError> {
        if let Some((at, found)) = self.by_access_key.lock().get(access_key_id) {
            if at.elapsed() < self.ttl {
                return Ok(found.clone());
            }
        }
        let found = self
            .store
            .key_get_by_access_key(access_key_id)
            .await?
            .map(Arc::new);
        let mut cache = self.by_access_key.lock();
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(
            access_key_id.to_string(),
            (std::time::Instant::now(), found.clone()),
        );
        Ok(found)
    }

    /// Drop what is cached about a key (it was just rotated or deleted
    /// here): this instance stops honouring it at once, not after `ttl`.
    pub fn forget(&self, hash: &[u8; 32]) {
        self.cache.lock().remove(hash);
        self.by_access_key.lock().clear();
    }

    pub async fn lookup(&self, presented: &str) -> Result<Option<Arc<ApiKey>>, StateError> {
        let hash = hash_key(presented);
        if let Some((at, found)) = self.cache.lock().get(&hash) {
            if at.elapsed() < self.ttl {
                return Ok(found.clone());
            }
        }
        let found = self.store.key_get(&hash).await?.map(Arc::new);
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(hash, (std::time::Instant::now(), found.clone()));
        Ok(found)
    }
}
