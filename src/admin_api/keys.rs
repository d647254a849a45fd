//! `/admin/v1/keys`: list, create, read, change and delete customer keys.
//!
//! A key's `id` is 12 hex digits of its hash (`ApiKey::id`): it names the
//! key here and as `owner_id` of buckets, never the key itself. Keys of the
//! config file are listed with `source: config` and are read-only (409);
//! keys made here (or by `kikaku-edge keys`) are kept in the state store
//! with `source: api`, seen by every instance within a second.

use kikaku_filters::keys::{hash_key, key_ref, new_secret, S3Credential};
use kikaku_filters::{ApiKey, ErrorKind, GatewayError, KeyStatus, KeyType};
use rand::distributions::{Alphanumeric, DistString};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::{parse_body, unavailable, Answer, Env, Query};
use crate::account::rfc3339;
use crate::config::{parse_time, quota_amount, QuotaValue};

/// Where a key is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Config,
    Api,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Api => "api",
        }
    }
}

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorKind::InvalidParameter, msg)
}

fn not_found(id: &str) -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, format!("No key {id:?}."))
}

pub fn read_only(k: &ApiKey) -> GatewayError {
    GatewayError::new(
        ErrorKind::Conflict,
        format!(
            "Key {} is defined in the config file: change it there.",
            k.id()
        ),
    )
}

/// Every key: the config's first, then the stored ones not shadowed by it,
/// oldest first.
pub async fn all(env: &Env) -> Result<Vec<(ApiKey, Source)>, GatewayError> {
    let mut keys: Vec<(ApiKey, Source)> = env
        .config_keys
        .all()
        .into_iter()
        .map(|k| ((*k).clone(), Source::Config))
        .collect();
    let stored = env.state.key_list().await.map_err(unavailable)?;
    for k in stored {
        if env.config_keys.get(&k.hash).is_none() {
            keys.push((k, Source::Api));
        }
    }
    keys.sort_by(|(a, _), (b, _)| (a.created_at, &a.key_ref).cmp(&(b.created_at, &b.key_ref)));
    Ok(keys)
}

/// One key by its id.
pub async fn find(env: &Env, id: &str) -> Result<(ApiKey, Source), GatewayError> {
    if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found(id));
    }
    all(env)
        .await?
        .into_iter()
        .find(|(k, _)| k.id() == id)
        .ok_or_else(|| not_found(id))
}

/// A key as the API shows it (never the key itself, nor its S3 secret).
async fn view(env: &Env, k: &ApiKey, source: Source) -> Result<Value, GatewayError> {
    let used = env
        .state
        .quota_usage(&k.subject())
        .await
        .map_err(unavailable)?
        .used;
    Ok(json!({
        "id": k.id(),
        "key_ref": k.key_ref,
        "type": k.key_type.as_str(),
        "owner": k.owner,
        "email": k.email,
        "status": status_str(k.status),
        "quota": k.quota,
        "used": used,
        "rate_limit_per_minute": k.rate_limit_per_minute,
        "created_at": rfc3339(k.created_at * 1000),
        "expires_at": k.expires_at.map(|e| rfc3339(e * 1000)),
        "bucket": (k.key_type == KeyType::Storage).then(|| k.default_bucket()),
        "source": source.as_str(),
    }))
}

fn status_str(s: KeyStatus) -> &'static str {
    match s {
        KeyStatus::Active => "active",
        KeyStatus::Suspended => "suspended",
    }
}

/// `GET /admin/v1/keys?type=&status=&page=&limit=`
pub async fn list(env: &Env, q: Query) -> Result<Answer, GatewayError> {
    let (page, limit) = q.page()?;
    let kind = q.one_of("type", &["image", "storage"])?;
    let status = q.one_of("status", &["active", "suspended"])?;
    let keys: Vec<(ApiKey, Source)> = all(env)
        .await?
        .into_iter()
        .filter(|(k, _)| kind.is_none_or(|t| k.key_type.as_str() == t))
        .filter(|(k, _)| status.is_none_or(|s| status_str(k.status) == s))
        .collect();
    let total = keys.len();
    let mut out = Vec::new();
    let start = ((page - 1) * limit) as usize;
    for (k, source) in keys.iter().skip(start).take(limit as usize) {
        out.push(view(env, k, *source).await?);
    }
    Ok(Answer::ok(json!({
        "keys": out,
        "pagination": {"page": page, "limit": limit, "total": total},
    })))
}

/// `GET /admin/v1/keys/{id}`
pub async fn get(env: &Env, id: &str) -> Result<Answer, GatewayError> {
    let (k, source) = find(env, id).await?;
    Ok(Answer::ok(view(env, &k, source).await?))
}

/// The body of `POST /admin/v1/keys`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    #[serde(rename = "type")]
    pub key_type: KeyType,
    pub owner: String,
    #[serde(default)]
    pub email: String,
    /// Images (image keys) or bytes, as a number or like `1GiB` (storage keys).
    #[serde(default, deserialize_with = "quota_value")]
    pub quota: Option<QuotaValue>,
    pub rate_limit_per_minute: Option<u32>,
    /// RFC 3339 or YYYY-MM-DD, in the future.
    pub expires_at: Option<String>,
    /// Storage keys: the default bucket (`default` when absent).
    pub bucket: Option<String>,
}

/// A key made from `NewKey`, with the secret shown once.
pub struct Minted {
    pub secret: String,
    pub key: ApiKey,
}

/// Check `NewKey` and make the key (not stored yet).
pub fn mint(new: NewKey, now: i64) -> Result<Minted, GatewayError> {
    let t = new.key_type;
    check_owner(&new.owner)?;
    check_email(&new.email)?;
    let quota = match &new.quota {
        Some(q) => quota_amount(q, t).map_err(|e| bad(format!("quota: {e}.")))?,
        None if t == KeyType::Image => 1000,
        None => 1 << 30,
    };
    check_rate(new.rate_limit_per_minute)?;
    let expires_at = new
        .expires_at
        .as_deref()
        .map(|e| future_time(e, now))
        .transpose()?;
    let bucket = match (t, new.bucket) {
        (KeyType::Image, Some(_)) => {
            return Err(bad("bucket: only storage keys have a bucket."));
        }
        (KeyType::Image, None) => None,
        (KeyType::Storage, b) => {
            let b = b.unwrap_or_else(|| "default".into());
            crate::config::names::check_tenant_bucket(&b)
                .map_err(|e| bad(format!("bucket: {e}.")))?;
            Some(b)
        }
    };
    Ok(Minted::new(
        KeyFields {
            key_type: t,
            owner: new.owner,
            email: new.email,
            quota,
            rate_limit_per_minute: new.rate_limit_per_minute,
            expires_at,
            bucket,
        },
        now,
    ))
}

/// What a new key is made of, checked by its caller.
pub struct KeyFields {
    pub key_type: KeyType,
    pub owner: String,
    pub email: String,
    pub quota: u64,
    pub rate_limit_per_minute: Option<u32>,
    pub expires_at: Option<i64>,
    /// Storage keys: the default bucket.
    pub bucket: Option<String>,
}

impl Minted {
    /// A fresh secret and the active key it names (a storage key with its
    /// first S3 credential); used by the API and by `kikaku-edge keys`.
    pub fn new(f: KeyFields, now: i64) -> Minted {
        let t = f.key_type;
        let secret = new_secret(t);
        let hash = hash_key(&secret);
        Minted {
            key: ApiKey {
                hash,
                key_ref: key_ref(t, &hash),
                key_type: t,
                owner: f.owner,
                email: f.email,
                status: KeyStatus::Active,
                created_at: now,
                expires_at: f.expires_at,
                quota: f.quota,
                rate_limit_per_minute: f.rate_limit_per_minute,
                bucket: f.bucket,
                s3: (t == KeyType::Storage).then(new_s3_credential),
                more_s3: Vec::new(),
                account: None,
            },
            secret,
        }
    }
}

fn check_owner(owner: &str) -> Result<(), GatewayError> {
    if owner.trim().is_empty() || owner.chars().count() > 200 {
        return Err(bad("owner: must be 1 to 200 characters."));
    }
    Ok(())
}

fn check_email(email: &str) -> Result<(), GatewayError> {
    if email.chars().count() > 254 || (!email.is_empty() && !email.contains('@')) {
        return Err(bad("email: must be an address (or empty)."));
    }
    Ok(())
}

fn check_rate(rate: Option<u32>) -> Result<(), GatewayError> {
    if rate == Some(0) {
        return Err(bad(
            "rate_limit_per_minute: must be > 0 (or null for the default).",
        ));
    }
    Ok(())
}

fn future_time(s: &str, now: i64) -> Result<i64, GatewayError> {
    match parse_time(s) {
        Some(t) if t > now => Ok(t),
        Some(_) => Err(bad("expires_at: must be in the future.")),
        None => Err(bad("expires_at: must be RFC 3339 or YYYY-MM-DD.")),
    }
}

/// A fresh S3 credential: a 20-character access key id (`KK` + upper-case
/// letters and digits, like AWS's) and a 40-character secret.
pub fn new_s3_credential() -> S3Credential {
    use rand::Rng;
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut rng = rand::thread_rng();
    let id: String = (0..18)
        .map(|_| UPPER[rng.gen_range(0..UPPER.len())] as char)
        .collect();
    let mut c = S3Credential::new(format!("KK{id}"), Alphanumeric.sample_string(&mut rng, 40));
    c.created_at = chrono::Utc::now().timestamp();
    c
}

/// `POST /admin/v1/keys`: 201 with the key (shown once). A storage key's
/// bucket is made first: a key whose bucket cannot be made is not kept.
pub async fn create(env: &Env, body: &[u8]) -> Result<Answer, GatewayError> {
    let new: NewKey = parse_body(body)?;
    let minted = mint(new, chrono::Utc::now().timestamp())?;
    let k = &minted.key;
    if k.key_type == KeyType::Storage {
        let storage = env.storage.as_ref().ok_or_else(|| {
            bad("type: storage keys need the config's `storage` section (an S3 backend).")
        })?;
        storage.ensure_default_bucket(k).await?;
    }
    env.state.key_put(k).await.map_err(unavailable)?;
    let mut v = view(env, k, Source::Api).await?;
    v["key"] = Value::from(minted.secret.as_str());
    if let Some(c) = k.shown_credential() {
        v["s3"] = json!({
            "access_key_id": c.access_key_id,
            "secret_access_key": c.secret_access_key,
            "bucket": k.default_bucket(),
        });
    }
    log::info!("management API: created {} ({})", k.key_ref, k.owner);
    Ok(Answer::created(v))
}

/// The body of `PATCH /admin/v1/keys/{id}`: any of these.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyPatch {
    owner: Option<String>,
    email: Option<String>,
    status: Option<KeyStatus>,
    #[serde(default, deserialize_with = "quota_value")]
    quota: Option<QuotaValue>,
    /// `null` returns to the route's default.
    #[serde(default, deserialize_with = "nullable")]
    rate_limit_per_minute: Option<Option<u32>>,
    /// `null` never expires.
    #[serde(default, deserialize_with = "nullable")]
    expires_at: Option<Option<String>>,
}

/// A quota: a whole number, or a size like `"1GiB"`.
fn quota_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<QuotaValue>, D::Error> {
    use serde::de::Error;
    let wrong = || D::Error::custom("must be a whole number > 0, or a size like \"1GiB\"");
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_u64()
            .map(|n| Some(QuotaValue::Count(n)))
            .ok_or_else(wrong),
        Value::String(s) => Ok(Some(QuotaValue::Size(s))),
        _ => Err(wrong()),
    }
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or a value.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH /admin/v1/keys/{id}`
pub async fn patch(env: &Env, id: &str, body: &[u8]) -> Result<Answer, GatewayError> {
    let p: KeyPatch = parse_body(body)?;
    let (mut k, source) = find(env, id).await?;
    if source == Source::Config {
        return Err(read_only(&k));
    }
    if let Some(owner) = p.owner {
        check_owner(&owner)?;
        k.owner = owner;
    }
    if let Some(email) = p.email {
        check_email(&email)?;
        k.email = email;
    }
    if let Some(s) = p.status {
        k.status = s;
    }
    if let Some(q) = &p.quota {
        k.quota = quota_amount(q, k.key_type).map_err(|e| bad(format!("quota: {e}.")))?;
    }
    if let Some(r) = p.rate_limit_per_minute {
        check_rate(r)?;
        k.rate_limit_per_minute = r;
    }
    if let Some(e) = p.expires_at {
        let now = chrono::Utc::now().timestamp();
        k.expires_at = e.as_deref().map(|e| future_time(e, now)).transpose()?;
    }
    env.state.key_put(&k).await.map_err(unavailable)?;
    log::info!("management API: changed {}", k.key_ref);
    Ok(Answer::ok(view(env, &k, source).await?))
}

/// `DELETE /admin/v1/keys/{id}`: the key stops working on every instance
/// within a second. A storage key's objects stay in its buckets.
pub async fn delete(env: &Env, id: &str) -> Result<Answer, GatewayError> {
    let (k, source) = find(env, id).await?;
    if source == Source::Config {
        return Err(read_only(&k));
    }
    if !env.state.key_delete(&k.hash).await.map_err(unavailable)? {
        return Err(not_found(id));
    }
    log::info!("management API: deleted {}", k.key_ref);
    Ok(Answer::ok(json!({"id": id, "deleted": true})))
}

/// `POST /admin/v1/keys/{id}/reconcile`: restate a storage key's usage
/// from what the backend holds.
pub async fn reconcile(env: &Env, id: &str) -> Result<Answer, GatewayError> {
    let (k, _) = find(env, id).await?;
    if k.key_type != KeyType::Storage {
        return Err(bad("Only storage keys have a byte ledger to reconcile."));
    }
    let storage = env
        .storage
        .as_ref()
        .ok_or_else(|| GatewayError::new(ErrorKind::NotFound, "Storage is not configured."))?;
    let (before, after, objects) = crate::storage::reconcile::reconcile(storage, &k)
        .await
        .map_err(unavailable)?;
    log::info!(
        "management API: reconciled {}: {before} -> {after} bytes",
        k.key_ref
    );
    Ok(Answer::ok(json!({
        "id": id,
        "used_before": before,
        "used": after,
        "objects": objects,
    })))
}
