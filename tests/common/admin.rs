//! Calls to the management API (`/admin/v1/...` on the admin listener).

use serde_json::{json, Value};

use super::redis::RedisServer;
use super::{client, start_shipped_on, start_shipped_with, Gateway};

/// `method /admin/v1<path>` with this bearer token (none: no header) and
/// JSON body; the status and the JSON answer.
pub async fn admin_call(
    gw: &Gateway,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut req = client().request(
        method.parse().unwrap(),
        gw.admin_url(&format!("/admin/v1{path}")),
    );
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

/// `admin_call` with the token of the shipped configs (`admin_demo_token`).
pub async fn demo_admin(
    gw: &Gateway,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    admin_call(gw, method, path, body, Some("admin_demo_token")).await
}

/// A storage key made through the API: its id and its S3 credential.
pub struct StorageKey {
    pub owner: String,
    pub id: String,
    pub secret: String,
}

/// Make a storage key for `owner` with default bucket `bucket`.
pub async fn storage_key(gw: &Gateway, owner: &str, bucket: &str) -> StorageKey {
    let (s, made) = demo_admin(
        gw,
        "POST",
        "/keys",
        Some(json!({"type": "storage", "owner": owner, "bucket": bucket})),
    )
    .await;
    assert_eq!(s, 201, "{made}");
    let text = |v: &Value| v.as_str().unwrap().to_string();
    StorageKey {
        owner: text(&made["id"]),
        id: text(&made["s3"]["access_key_id"]),
        secret: text(&made["s3"]["secret_access_key"]),
    }
}

/// The stdout of a command that must succeed.
pub fn aws_ok(out: std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The shipped offline config on the embedded state backend, or its Redis
/// twin (`conf/redis.example.yaml`) on a private redis-server.
pub struct Shipped {
    pub gw: Gateway,
    pub data: tempfile::TempDir,
    pub _redis: Option<RedisServer>,
}

pub fn shipped(redis: bool) -> Shipped {
    let data = tempfile::tempdir().unwrap();
    let server = redis.then(RedisServer::start);
    let (gw, _, _) = match &server {
        None => start_shipped_on("conf/kikaku.yaml", data.path()),
        Some(r) => start_shipped_with(
            "conf/redis.example.yaml",
            data.path(),
            &[("KIKAKU_REDIS_URL", r.url())],
        ),
    };
    Shipped {
        gw,
        data,
        _redis: server,
    }
}
