//! `/admin/v1/buckets`: the tenants' buckets and objects (seed 002). A
//! bucket is named by its owner's key id and its name as the tenant sees
//! it (`/buckets/{owner_id}/{name}`); objects by their key after
//! `/objects/`. Deleting objects returns their bytes to the owner's quota.

use kikaku_filters::{ApiKey, ErrorKind, GatewayError, KeyType};
use serde::Deserialize;
use serde_json::{json, Value};

use super::keys;
use super::{parse_body, unavailable, Answer, Env, Query};
use crate::storage::backend::{BackendRequest, ListedObject};
use crate::storage::{backend_unavailable, Storage};

/// Keys a bulk delete takes at most (S3's DeleteObjects limit).
const MAX_BULK: usize = 1000;

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorKind::InvalidParameter, msg)
}

fn no_bucket(owner: &str, name: &str) -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, format!("No bucket {owner}/{name}."))
}

/// Sizes as people read them: `1.5 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

pub(super) fn storage(env: &Env) -> Result<&Storage, GatewayError> {
    env.storage.as_deref().ok_or_else(|| {
        GatewayError::new(
            ErrorKind::NotFound,
            "Storage is not configured (no `storage` section).",
        )
    })
}

/// The storage key `owner_id` names.
async fn owner(env: &Env, owner_id: &str) -> Result<ApiKey, GatewayError> {
    match keys::find(env, owner_id).await {
        Ok((k, _)) if k.key_type == KeyType::Storage => Ok(k),
        Ok(_) => Err(bad("owner_id: only storage keys own buckets.")),
        Err(e) => Err(e),
    }
}

/// Every object of a bucket (all pages).
pub(super) async fn all_objects(
    storage: &Storage,
    backend_bucket: &str,
) -> Result<Vec<ListedObject>, GatewayError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = storage
            .backend
            .list_objects(backend_bucket, "", token.as_deref(), 1000)
            .await
            .map_err(backend_unavailable)?;
        out.extend(page.objects);
        match page.next_token {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

async fn bucket_view(
    storage: &Storage,
    k: &ApiKey,
    name: &str,
    created_at: &str,
) -> Result<Value, GatewayError> {
    let objects = all_objects(storage, &storage.backend_bucket(k, name)).await?;
    let total: u64 = objects.iter().map(|o| o.size).sum();
    Ok(json!({
        "name": name,
        "owner": k.id(),
        "owner_name": k.owner,
        "region": storage.region,
        "created_at": created_at,
        "object_count": objects.len(),
        "total_size": total,
        "total_size_human": human(total),
    }))
}

/// Every bucket of the backend with its creation time, listed once per call.
pub(super) async fn backend_buckets(
    storage: &Storage,
) -> Result<Vec<(String, String)>, GatewayError> {
    storage
        .backend
        .list_buckets()
        .await
        .map_err(backend_unavailable)
}

/// `(name, created_at)` of `k`'s buckets among those `listed`.
pub(super) fn buckets_of(
    storage: &Storage,
    listed: &[(String, String)],
    k: &ApiKey,
) -> Vec<(String, String)> {
    let tenant = k.tenant_id();
    listed
        .iter()
        .filter_map(|(b, at)| {
            let name = storage.backend.buckets.to_tenant(&tenant, b)?;
            Some((name.to_string(), at.clone()))
        })
        .collect()
}

/// `GET /admin/v1/buckets`
pub async fn list(env: &Env) -> Result<Answer, GatewayError> {
    let storage = storage(env)?;
    let listed = backend_buckets(storage).await?;
    let mut out = Vec::new();
    for (k, _) in keys::all(env).await? {
        if k.key_type != KeyType::Storage {
            continue;
        }
        for (name, at) in buckets_of(storage, &listed, &k) {
            out.push(bucket_view(storage, &k, &name, &at).await?);
        }
    }
    Ok(Answer::ok(json!({ "buckets": out })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBucket {
    name: String,
    owner_id: String,
    /// Must be the storage's region when given.
    region: Option<String>,
}

/// `POST /admin/v1/buckets`
pub async fn create(env: &Env, body: &[u8]) -> Result<Answer, GatewayError> {
    let new: NewBucket = parse_body(body)?;
    let storage = storage(env)?;
    crate::config::names::check_tenant_bucket(&new.name).map_err(|e| bad(format!("name: {e}.")))?;
    if let Some(r) = &new.region {
        if *r != storage.region {
            return Err(bad(format!(
                "region: this gateway's storage is in {:?}.",
                storage.region
            )));
        }
    }
    let k = match owner(env, &new.owner_id).await {
        Err(e) if e.kind == ErrorKind::NotFound => {
            return Err(bad(format!("owner_id: no key {:?}.", new.owner_id)))
        }
        other => other?,
    };
    let backend_bucket = storage.backend_bucket(&k, &new.name);
    if storage.bucket_exists(&backend_bucket).await? {
        return Err(GatewayError::new(
            ErrorKind::Conflict,
            format!(
                "name: {} already owns a bucket {:?}.",
                new.owner_id, new.name
            ),
        ));
    }
    storage
        .backend
        .ensure_bucket(&backend_bucket)
        .await
        .map_err(backend_unavailable)?;
    storage.bucket_changed(&backend_bucket, true);
    log::info!("management API: bucket {} made for {}", new.name, k.key_ref);
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Ok(Answer::created(
        bucket_view(storage, &k, &new.name, &at).await?,
    ))
}

/// The storage, the owner and the creation time of an existing bucket.
pub(super) async fn existing<'e>(
    env: &'e Env,
    owner_id: &str,
    name: &str,
) -> Result<(&'e Storage, ApiKey, String), GatewayError> {
    let storage = storage(env)?;
    let k = owner(env, owner_id).await?;
    let listed = backend_buckets(storage).await?;
    buckets_of(storage, &listed, &k)
        .into_iter()
        .find(|(b, _)| b == name)
        .map(|(_, at)| (storage, k, at))
        .ok_or_else(|| no_bucket(owner_id, name))
}

fn object_view(o: &ListedObject) -> Value {
    json!({
        "key": o.key,
        "size": o.size,
        "size_human": human(o.size),
        "etag": o.etag,
        // A multipart upload's ETag is `"<md5 of md5s>-<parts>"`.
        "is_multipart": o.etag.contains('-'),
        "created_at": o.last_modified,
    })
}

/// A page of objects: `?prefix=&limit=&cursor=`.
async fn objects_page(
    storage: &Storage,
    k: &ApiKey,
    name: &str,
    q: &Query,
) -> Result<(Vec<Value>, Option<String>), GatewayError> {
    let limit = q.number("limit", 1, 1000, 100)?;
    let page = storage
        .backend
        .list_objects(
            &storage.backend_bucket(k, name),
            q.get("prefix").unwrap_or(""),
            q.get("cursor"),
            limit as u32,
        )
        .await
        .map_err(|e| match e {
            crate::storage::backend::BackendError::Status(400, _) => {
                bad("cursor: not a cursor of this listing.")
            }
            e => backend_unavailable(e),
        })?;
    Ok((
        page.objects.iter().map(object_view).collect(),
        page.next_token,
    ))
}

/// `GET /admin/v1/buckets/{owner_id}/{name}`
pub async fn get(env: &Env, owner_id: &str, name: &str, q: Query) -> Result<Answer, GatewayError> {
    let (storage, k, at) = existing(env, owner_id, name).await?;
    let mut v = bucket_view(storage, &k, name, &at).await?;
    let (objects, next) = objects_page(storage, &k, name, &q).await?;
    v["objects"] = Value::from(objects);
    v["next_cursor"] = next.map_or(Value::Null, Value::from);
    Ok(Answer::ok(v))
}

/// `GET /admin/v1/buckets/{owner_id}/{name}/objects`
pub async fn objects(
    env: &Env,
    owner_id: &str,
    name: &str,
    q: Query,
) -> Result<Answer, GatewayError> {
    let (storage, k, _) = existing(env, owner_id, name).await?;
    let (objects, next) = objects_page(storage, &k, name, &q).await?;
    Ok(Answer::ok(json!({"objects": objects, "next_cursor": next})))
}

/// `DELETE /admin/v1/buckets/{owner_id}/{name}`: only an empty bucket.
pub async fn delete(env: &Env, owner_id: &str, name: &str) -> Result<Answer, GatewayError> {
    let (storage, k, _) = existing(env, owner_id, name).await?;
    let backend_bucket = storage.backend_bucket(&k, name);
    let page = storage
        .backend
        .list_objects(&backend_bucket, "", None, 1)
        .await
        .map_err(backend_unavailable)?;
    let uploads = env
        .state
        .storage_uploads(&k.subject())
        .await
        .map_err(unavailable)?;
    if !page.objects.is_empty() || uploads.iter().any(|u| u.bucket == name) {
        return Err(GatewayError::new(
            ErrorKind::Conflict,
            format!("Bucket {owner_id}/{name} is not empty: delete its objects and uploads first."),
        ));
    }
    let resp = storage
        .send(BackendRequest::new(
            http::Method::DELETE,
            Some(backend_bucket.clone()),
            None,
        ))
        .await?;
    if !resp.status().is_success() {
        return Err(GatewayError::new(
            ErrorKind::Conflict,
            format!(
                "The storage backend kept bucket {owner_id}/{name} (status {}).",
                resp.status()
            ),
        ));
    }
    storage.bucket_changed(&backend_bucket, false);
    log::info!("management API: bucket {name} of {} deleted", k.key_ref);
    Ok(Answer::ok(
        json!({"owner": owner_id, "name": name, "deleted": true}),
    ))
}

/// `GET /admin/v1/buckets/{owner_id}/{name}/objects/{key}`
pub async fn object(
    env: &Env,
    owner_id: &str,
    name: &str,
    object: &str,
) -> Result<Answer, GatewayError> {
    let (storage, k, _) = existing(env, owner_id, name).await?;
    let resp = storage
        .send(BackendRequest::object(
            http::Method::HEAD,
            &storage.backend_bucket(&k, name),
            object,
        ))
        .await?;
    if resp.status().as_u16() == 404 {
        return Err(GatewayError::new(
            ErrorKind::NotFound,
            format!("No object {object:?}."),
        ));
    }
    let h = resp.headers();
    let text = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let size: u64 = text("content-length").parse().unwrap_or(0);
    let etag = text("etag");
    let modified = chrono::DateTime::parse_from_rfc2822(&text("last-modified"))
        .map(|t| {
            t.to_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .unwrap_or_default();
    let metadata: serde_json::Map<String, Value> = h
        .iter()
        .filter_map(|(n, v)| {
            let name = n.as_str().strip_prefix("x-amz-meta-")?;
            Some((name.to_string(), Value::from(v.to_str().ok()?)))
        })
        .collect();
    Ok(Answer::ok(json!({
        "key": object,
        "size": size,
        "size_human": human(size),
        "content_type": text("content-type"),
        "etag": etag,
        "is_multipart": etag.contains('-'),
        "metadata": metadata,
        "created_at": modified,
        "updated_at": modified,
    })))
}

/// `DELETE /admin/v1/buckets/{owner_id}/{name}/objects/{key}`
pub async fn delete_object(
    env: &Env,
    owner_id: &str,
    name: &str,
    object: &str,
) -> Result<Answer, GatewayError> {
    let (storage, k, _) = existing(env, owner_id, name).await?;
    let freed = storage
        .delete_object(&k, name, object)
        .await?
        .ok_or_else(|| GatewayError::new(ErrorKind::NotFound, format!("No object {object:?}.")))?;
    Ok(Answer::ok(json!({"deleted": object, "freed_bytes": freed})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Bulk {
    keys: Vec<String>,
}

/// `POST /admin/v1/buckets/{owner_id}/{name}/delete` `{keys:[...]}`
pub async fn bulk_delete(
    env: &Env,
    owner_id: &str,
    name: &str,
    body: &[u8],
) -> Result<Answer, GatewayError> {
    let bulk: Bulk = parse_body(body)?;
    if bulk.keys.is_empty() || bulk.keys.len() > MAX_BULK {
        return Err(bad(format!("keys: 1 to {MAX_BULK} object keys.")));
    }
    let (storage, k, _) = existing(env, owner_id, name).await?;
    let (mut deleted, mut errors) = (Vec::new(), Vec::new());
    for object in bulk.keys {
        match storage.delete_object(&k, name, &object).await {
            Ok(Some(_)) => deleted.push(Value::from(object)),
            Ok(None) => errors
                .push(json!({"key": object, "code": "NotFound", "message": "No such object."})),
            Err(e) => {
                errors.push(json!({"key": object, "code": e.kind.code(), "message": e.message}))
            }
        }
    }
    Ok(Answer::ok(json!({"deleted": deleted, "errors": errors})))
}

/// `GET /admin/v1/buckets/{owner_id}/{name}/multipart-uploads`: the uploads
/// in progress the ledger knows, with their parts as the backend has them.
pub async fn uploads(env: &Env, owner_id: &str, name: &str) -> Result<Answer, GatewayError> {
    let (storage, k, _) = existing(env, owner_id, name).await?;
    let backend_bucket = storage.backend_bucket(&k, name);
    let mut out = Vec::new();
    for up in env
        .state
        .storage_uploads(&k.subject())
        .await
        .map_err(unavailable)?
        .into_iter()
        .filter(|u| u.bucket == name)
    {
        let parts = storage
            .backend
            .list_parts(&backend_bucket, &up.key, &up.upload_id)
            .await
            .map_err(backend_unavailable)?
            .unwrap_or_default();
        let total: u64 = parts.values().map(|(_, size)| size).sum();
        out.push(json!({
            "upload_id": up.upload_id,
            "object_key": up.key,
            "initiated_at": crate::account::rfc3339(up.initiated_ms),
            "part_count": parts.len(),
            "total_size": total,
            "total_size_human": human(total),
        }));
    }
    Ok(Answer::ok(json!({ "uploads": out })))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(super::human(0), "0 B");
        assert_eq!(super::human(1023), "1023 B");
        assert_eq!(super::human(1536), "1.5 KiB");
        assert_eq!(super::human(5 << 30), "5.0 GiB");
    }
}
