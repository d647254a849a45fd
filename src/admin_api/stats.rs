//! `GET /admin/v1/stats`: seed 002's totals (credentials, buckets, objects,
//! bytes, uploads in progress, live presigned URLs) plus the keys by type
//! and status, and the images generated. Counted from the backend and the
//! state store when asked: exact, and as slow as listing every bucket.

use kikaku_filters::{GatewayError, KeyStatus, KeyType};
use serde_json::{json, Value};

use super::buckets::{self, human};
use super::{keys, unavailable, Answer, Env};

pub async fn get(env: &Env) -> Result<Answer, GatewayError> {
    let all = keys::all(env).await?;
    let count =
        |f: &dyn Fn(&kikaku_filters::ApiKey) -> bool| all.iter().filter(|(k, _)| f(k)).count();
    let (mut credentials, mut bucket_count, mut objects, mut bytes, mut uploads) =
        (0, 0, 0, 0u64, 0);
    let mut images_generated = 0u64;
    let listed = match env.storage.as_deref() {
        Some(storage) => buckets::backend_buckets(storage).await?,
        None => Vec::new(),
    };
    for (k, _) in &all {
        match k.key_type {
            KeyType::Image => {
                images_generated += env
                    .state
                    .quota_usage(&k.subject())
                    .await
                    .map_err(unavailable)?
                    .used;
            }
            KeyType::Storage => {
                credentials += k.credentials().count();
                uploads += env
                    .state
                    .storage_uploads(&k.subject())
                    .await
                    .map_err(unavailable)?
                    .len();
                if let Some(storage) = env.storage.as_deref() {
                    for (name, _) in buckets::buckets_of(storage, &listed, k) {
                        bucket_count += 1;
                        let list = buckets::all_objects(storage, &storage.backend_bucket(k, &name))
                            .await?;
                        objects += list.len();
                        bytes += list.iter().map(|o| o.size).sum::<u64>();
                    }
                }
            }
        }
    }
    let presigned = env
        .state
        .presigned_list(kikaku_filters::clock::now_unix())
        .await
        .map_err(unavailable)?
        .len();
    let v: Value = json!({
        "credentials": credentials,
        "buckets": bucket_count,
        "objects": objects,
        "total_storage": bytes,
        "total_storage_human": human(bytes),
        "active_multipart_uploads": uploads,
        "active_presigned_urls": presigned,
        "keys": {
            "image": count(&|k| k.key_type == KeyType::Image),
            "storage": count(&|k| k.key_type == KeyType::Storage),
            "active": count(&|k| k.status == KeyStatus::Active),
            "suspended": count(&|k| k.status == KeyStatus::Suspended),
        },
        "images_generated": images_generated,
    });
    Ok(Answer::ok(v))
}
