//! `/admin/v1/credentials`: the S3 credentials of storage keys (seed 002).
//! A storage key gets its first credential when it is made; more can be
//! added here, one per user or application, and each switched off or
//! deleted alone: its S3 clients are refused within a second while the
//! key's other credentials keep working. A credential's `id` is its access
//! key id. Credentials of config-file keys are listed and read-only.

use kikaku_filters::keys::S3Credential;
use kikaku_filters::{ApiKey, ErrorKind, GatewayError, KeyType};
use serde::Deserialize;
use serde_json::{json, Value};

use super::keys::{self, Source};
use super::{parse_body, unavailable, Answer, Env, Query};
use crate::account::rfc3339;

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorKind::InvalidParameter, msg)
}

fn not_found(id: &str) -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, format!("No credential {id:?}."))
}

fn view(k: &ApiKey, c: &S3Credential, source: Source) -> Value {
    json!({
        "id": c.access_key_id,
        "access_key": c.access_key_id,
        "user_name": if c.user_name.is_empty() { k.owner.as_str() } else { c.user_name.as_str() },
        "is_active": c.is_active,
        "created_at": rfc3339(if c.created_at > 0 { c.created_at } else { k.created_at } * 1000),
        "key_id": k.id(),
        "source": source.as_str(),
    })
}

/// Every credential with its key.
async fn all(env: &Env) -> Result<Vec<(ApiKey, S3Credential, Source)>, GatewayError> {
    Ok(keys::all(env)
        .await?
        .into_iter()
        .filter(|(k, _)| k.key_type == KeyType::Storage)
        .flat_map(|(k, s)| {
            let creds: Vec<S3Credential> = k.credentials().cloned().collect();
            creds.into_iter().map(move |c| (k.clone(), c, s))
        })
        .collect())
}

async fn find(env: &Env, id: &str) -> Result<(ApiKey, S3Credential, Source), GatewayError> {
    all(env)
        .await?
        .into_iter()
        .find(|(_, c, _)| c.access_key_id == id)
        .ok_or_else(|| not_found(id))
}

/// `GET /admin/v1/credentials?key_id=`
pub async fn list(env: &Env, q: Query) -> Result<Answer, GatewayError> {
    let key_id = q.get("key_id");
    let out: Vec<Value> = all(env)
        .await?
        .iter()
        .filter(|(k, _, _)| key_id.is_none_or(|id| k.id() == id))
        .map(|(k, c, s)| view(k, c, *s))
        .collect();
    Ok(Answer::ok(json!({ "credentials": out })))
}

/// `GET /admin/v1/credentials/{id}`: with the key's buckets.
pub async fn get(env: &Env, id: &str) -> Result<Answer, GatewayError> {
    let (k, c, s) = find(env, id).await?;
    let buckets = match &env.storage {
        Some(storage) => storage
            .backend
            .tenant_buckets(&k)
            .await
            .map_err(crate::storage::backend_unavailable)?,
        None => Vec::new(),
    };
    let mut v = view(&k, &c, s);
    v["bucket_count"] = Value::from(buckets.len());
    v["buckets"] = Value::from(buckets);
    Ok(Answer::ok(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCredential {
    /// The storage key's id.
    key_id: String,
    #[serde(default)]
    user_name: String,
    /// 16–128 upper-case letters and digits; made when absent.
    access_key: Option<String>,
    /// 16–128 characters of `A-Za-z0-9/+=_-`; made when absent.
    secret_key: Option<String>,
}

fn check_user_name(u: &str) -> Result<(), GatewayError> {
    if u.chars().count() > 200 {
        return Err(bad("user_name: at most 200 characters."));
    }
    Ok(())
}

/// `POST /admin/v1/credentials`: 201 with the secret (shown once).
pub async fn create(env: &Env, body: &[u8]) -> Result<Answer, GatewayError> {
    let new: NewCredential = parse_body(body)?;
    check_user_name(&new.user_name)?;
    let mut cred = keys::new_s3_credential();
    if let Some(a) = new.access_key {
        let ok = (16..=128).contains(&a.len())
            && a.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !ok {
            return Err(bad(
                "access_key: must be 16 to 128 upper-case letters and digits.",
            ));
        }
        cred.access_key_id = a;
    }
    if let Some(s) = new.secret_key {
        let ok = (16..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/+=_-".contains(&b));
        if !ok {
            return Err(bad(
                "secret_key: must be 16 to 128 characters of A-Za-z0-9/+=_-.",
            ));
        }
        cred.secret_access_key = s;
    }
    cred.user_name = new.user_name;
    let (mut k, source) = match keys::find(env, &new.key_id).await {
        Ok(found) => found,
        Err(e) if e.kind == ErrorKind::NotFound => {
            return Err(bad(format!("key_id: no key {:?}.", new.key_id)))
        }
        Err(e) => return Err(e),
    };
    if k.key_type != KeyType::Storage {
        return Err(bad("key_id: only storage keys have S3 credentials."));
    }
    if source == Source::Config {
        return Err(keys::read_only(&k));
    }
    if all(env)
        .await?
        .iter()
        .any(|(_, c, _)| c.access_key_id == cred.access_key_id)
    {
        return Err(GatewayError::new(
            ErrorKind::Conflict,
            "access_key: that access key is taken.",
        ));
    }
    if k.s3.is_none() {
        k.s3 = Some(cred.clone());
    } else {
        k.more_s3.push(cred.clone());
    }
    env.state.key_put(&k).await.map_err(unavailable)?;
    log::info!(
        "management API: credential {} added to {}",
        cred.access_key_id,
        k.key_ref
    );
    let mut v = view(&k, &cred, source);
    v["secret_key"] = Value::from(cred.secret_access_key.as_str());
    Ok(Answer::created(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialPatch {
    user_name: Option<String>,
    is_active: Option<bool>,
}

/// Change the stored key holding credential `id`.
async fn change(
    env: &Env,
    id: &str,
    edit: impl FnOnce(&mut ApiKey) -> Option<S3Credential>,
) -> Result<(ApiKey, Option<S3Credential>), GatewayError> {
    let (mut k, _, source) = find(env, id).await?;
    if source == Source::Config {
        return Err(keys::read_only(&k));
    }
    let changed = edit(&mut k);
    env.state.key_put(&k).await.map_err(unavailable)?;
    Ok((k, changed))
}

/// `PATCH /admin/v1/credentials/{id}`: `user_name`, `is_active`.
pub async fn patch(env: &Env, id: &str, body: &[u8]) -> Result<Answer, GatewayError> {
    let p: CredentialPatch = parse_body(body)?;
    if let Some(u) = &p.user_name {
        check_user_name(u)?;
    }
    let (k, c) = change(env, id, |k| {
        let c =
            k.s3.iter_mut()
                .chain(k.more_s3.iter_mut())
                .find(|c| c.access_key_id == id)?;
        if let Some(u) = p.user_name {
            c.user_name = u;
        }
        if let Some(a) = p.is_active {
            c.is_active = a;
        }
        Some(c.clone())
    })
    .await?;
    let c = c.ok_or_else(|| not_found(id))?;
    log::info!(
        "management API: credential {id} of {} changed (active: {})",
        k.key_ref,
        c.is_active
    );
    Ok(Answer::ok(view(&k, &c, Source::Api)))
}

/// `DELETE /admin/v1/credentials/{id}`: its clients are refused within a
/// second; the key and its other credentials stay.
pub async fn delete(env: &Env, id: &str) -> Result<Answer, GatewayError> {
    let (k, _) = change(env, id, |k| {
        if k.s3.as_ref().is_some_and(|c| c.access_key_id == id) {
            // The next one becomes the first (the one `/s3/credentials` shows).
            k.s3 = (!k.more_s3.is_empty()).then(|| k.more_s3.remove(0));
        } else {
            k.more_s3.retain(|c| c.access_key_id != id);
        }
        None
    })
    .await?;
    log::info!("management API: credential {id} of {} deleted", k.key_ref);
    Ok(Answer::ok(json!({"id": id, "deleted": true})))
}
