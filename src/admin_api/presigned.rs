//! `/admin/v1/presigned-urls`: presigned S3 URLs for one object of a
//! tenant, absolute on `public_url`, signed (SigV4, query form) with the
//! owner's first active credential. They work with no other credential
//! until they expire (1 s to 7 days); the live ones are listed.

use kikaku_filters::{ErrorKind, GatewayError};
use serde::Deserialize;
use serde_json::{json, Value};

use super::buckets;
use super::{parse_body, unavailable, Answer, Env};
use crate::account::rfc3339;
use crate::state::PresignedRecord;

/// SigV4's longest presigned life: 7 days.
const MAX_EXPIRES: u64 = 604_800;

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorKind::InvalidParameter, msg)
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "UPPERCASE")]
enum Verb {
    Get,
    Put,
    Delete,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Put => "PUT",
            Verb::Delete => "DELETE",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUrl {
    owner_id: String,
    bucket_name: String,
    object_key: String,
    method: Verb,
    /// Seconds, 1 to 604800.
    expires_in: u64,
}

/// `POST /admin/v1/presigned-urls`
pub async fn create(env: &Env, body: &[u8]) -> Result<Answer, GatewayError> {
    let new: NewUrl = parse_body(body)?;
    if !(1..=MAX_EXPIRES).contains(&new.expires_in) {
        return Err(bad(format!(
            "expires_in: must be 1 to {MAX_EXPIRES} seconds."
        )));
    }
    crate::config::names::check_object_key(&new.object_key)
        .map_err(|e| bad(format!("object_key: {e}.")))?;
    let (storage, k, _) = match buckets::existing(env, &new.owner_id, &new.bucket_name).await {
        Err(e) if e.kind == ErrorKind::NotFound => {
            return Err(bad(format!(
                "bucket_name: {} has no bucket {:?}.",
                new.owner_id, new.bucket_name
            )))
        }
        other => other?,
    };
    let cred = k.shown_credential().ok_or_else(|| {
        GatewayError::new(
            ErrorKind::Conflict,
            "The owner has no active S3 credential to sign with.",
        )
    })?;
    let (scheme, host) = env
        .public_base
        .split_once("://")
        .map(|(s, rest)| (s, rest.split('/').next().unwrap_or(rest)))
        .unwrap_or(("http", env.public_base.as_str()));
    let path = format!("/{}/{}", new.bucket_name, new.object_key);
    let now = kikaku_filters::clock::now_unix();
    let query = sigv4::presign_query(
        new.method.as_str(),
        path.as_bytes(),
        host,
        new.expires_in as i64,
        &sigv4::SigningCredential {
            access_key_id: &cred.access_key_id,
            secret_access_key: &cred.secret_access_key,
            region: &storage.region,
        },
        now,
    );
    let url = format!(
        "{scheme}://{host}{}?{query}",
        sigv4::uri_encode(path.as_bytes(), true)
    );
    let expires_at = now + new.expires_in as i64;
    env.state
        .presigned_add(PresignedRecord {
            owner_id: new.owner_id,
            bucket_name: new.bucket_name,
            object_key: new.object_key,
            method: new.method.as_str().to_string(),
            created_at: now,
            expires_at,
        })
        .await
        .map_err(unavailable)?;
    Ok(Answer::created(json!({
        "url": url,
        "method": new.method.as_str(),
        "expires_at": rfc3339(expires_at * 1000),
    })))
}

/// `GET /admin/v1/presigned-urls`: the unexpired ones, newest first.
pub async fn list(env: &Env) -> Result<Answer, GatewayError> {
    let now = kikaku_filters::clock::now_unix();
    let urls: Vec<Value> = env
        .state
        .presigned_list(now)
        .await
        .map_err(unavailable)?
        .into_iter()
        .map(|p| {
            json!({
                "bucket_name": p.bucket_name,
                "object_key": p.object_key,
                "method": p.method,
                "owner_id": p.owner_id,
                "expires_at": rfc3339(p.expires_at * 1000),
                "created_at": rfc3339(p.created_at * 1000),
            })
        })
        .collect();
    Ok(Answer::ok(json!({ "urls": urls })))
}
