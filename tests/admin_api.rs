//! The management API (DESIGN §5) on the admin listener, against the real
//! binary: the admin token, keys made, changed and deleted through it on
//! the embedded backend and on Redis (three instances), and bad input.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::admin::admin_call;
use common::redis::{redis_state, RedisServer};
use common::*;
use serde_json::{json, Value};

const TOKEN: &str = "test_admin_token_0123456789";

fn probe_config(state: &str) -> String {
    format!(
        "{state}admin: {{token: {TOKEN}}}\n{}routes:\n  - name: probe\n    match: {{path_prefix: /probe}}\n    filters: [{{key_auth: {{}}}}, {{key_type: {{require: image}}}}]\n    handler: {{type: not_implemented, message: admitted}}\n",
        test_keys()
    )
}

async fn admin(gw: &Gateway, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    admin_call(gw, method, path, body, Some(TOKEN)).await
}

async fn raw(gw: &Gateway, method: &str, path: &str, body: &str) -> (u16, Value) {
    let resp = client()
        .request(
            method.parse().unwrap(),
            gw.admin_url(&format!("/admin/v1{path}")),
        )
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn management_calls_need_the_admin_token_and_it_is_never_logged() {
    let gw = Gateway::with(&probe_config(""));
    let (s, v) = admin_call(&gw, "GET", "/keys", None, None).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["code"], "Unauthorized");
    let (s, _) = admin_call(
        &gw,
        "GET",
        "/keys",
        None,
        Some("test_admin_token_012345678X"),
    )
    .await;
    assert_eq!(s, 401, "a token of the same length, one character off");
    let (s, _) = admin_call(&gw, "GET", "/keys", None, Some("short")).await;
    assert_eq!(s, 401);
    let (s, _) = admin(&gw, "GET", "/keys", None).await;
    assert_eq!(s, 200);
    for open in ["/healthz", "/readyz", "/metrics"] {
        let s = client()
            .get(gw.admin_url(open))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(s, 200, "{open} stays open");
    }
    let (s, v) = admin(&gw, "GET", "/nothing-here", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("NotFound")));
    let (s, _) = admin(&gw, "PUT", "/keys", None).await;
    assert_eq!(s, 405);

    // Nothing of the token in the error log, the access log or metrics.
    let metrics = client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (what, text) in [
        ("stderr", gw.stderr()),
        ("stdout", gw.stdout()),
        ("metrics", metrics),
    ] {
        assert!(!text.contains(TOKEN), "the admin token is in {what}");
        assert!(
            !text.contains("test_admin_token"),
            "part of the token is in {what}"
        );
    }

    // No `admin` section: every management call is refused.
    let off = Gateway::with(&probe_config("").replace(&format!("admin: {{token: {TOKEN}}}\n"), ""));
    let (s, v) = admin(&off, "GET", "/keys", None).await;
    assert_eq!(s, 401);
    assert!(message(&v).contains("admin.token"), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_made_through_the_api_is_shown_once_and_works() {
    let gw = Arc::new(Gateway::with(&probe_config("state: {backend: embedded}\n")));
    let (s, before) = admin(&gw, "GET", "/keys?limit=100", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        before["keys"].as_array().unwrap().len(),
        5,
        "the config's five: {before}"
    );
    assert!(before["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["source"] == "config" && k.get("key").is_none()));

    let (s, made) = admin(
        &gw,
        "POST",
        "/keys",
        Some(json!({"type": "image", "owner": "Alice", "email": "a@example.com", "quota": 5})),
    )
    .await;
    assert_eq!(s, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("kikaku_") && !key.starts_with("kikaku_s3_") && key.len() > 40);
    assert_eq!(made["id"].as_str().unwrap().len(), 12);
    assert_eq!(
        (
            made["source"].as_str(),
            made["quota"].as_u64(),
            made["used"].as_u64()
        ),
        (Some("api"), Some(5), Some(0))
    );
    let served = until_all(std::slice::from_ref(&gw), &key, 501).await;
    assert!(served < Duration::from_secs(1), "{served:?}");
    let (_, after) = admin(&gw, "GET", "/keys?limit=100", None).await;
    assert_eq!(after["pagination"]["total"], 6);
    assert!(!after.to_string().contains(&key), "the key is shown once");
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_change_take_effect_and_persist_on_the_embedded_backend() {
    let gw = Arc::new(Gateway::with(&probe_config("state: {backend: embedded}\n")));
    let (s, made) = admin(
        &gw,
        "POST",
        "/keys",
        Some(json!({"type": "image", "owner": "Alice", "quota": 5, "rate_limit_per_minute": 60})),
    )
    .await;
    assert_eq!(s, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_string();
    let id = made["id"].as_str().unwrap().to_string();
    let gws = [gw.clone()];
    until_all(&gws, &key, 501).await;

    let (s, listed) = admin(&gw, "GET", "/keys?type=image&status=active&limit=100", None).await;
    assert_eq!(s, 200);
    let mine: Vec<&Value> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["id"] == id.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "{listed}");
    assert_eq!(mine[0]["owner"], "Alice");
    assert!(!listed.to_string().contains(&key), "the key is shown once");

    let (s, one) = admin(&gw, "GET", &format!("/keys/{id}"), None).await;
    assert_eq!((s, one["rate_limit_per_minute"].as_u64()), (200, Some(60)));

    let (s, v) = admin(
        &gw,
        "PATCH",
        &format!("/keys/{id}"),
        Some(json!({"status": "suspended", "quota": 7, "rate_limit_per_minute": null})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "suspended");
    assert_eq!(v["quota"], 7);
    assert!(v["rate_limit_per_minute"].is_null());
    let suspended = until_all(&gws, &key, 403).await;
    assert!(suspended < Duration::from_secs(1), "{suspended:?}");
    let (s, _) = admin(
        &gw,
        "PATCH",
        &format!("/keys/{id}"),
        Some(json!({"status": "active"})),
    )
    .await;
    assert_eq!(s, 200);
    until_all(&gws, &key, 501).await;

    // Kept across a restart (the journal), then deleted everywhere.
    drop(gws);
    let gw = Arc::new(Arc::try_unwrap(gw).ok().unwrap().kill9_and_restart());
    let gws = [gw.clone()];
    assert_eq!(probe(&gw, &key).await, 501, "an API key survives a restart");
    // ... and a reload (the config's keys change, the stored ones stay).
    gw.signal("HUP");
    gw.wait_metric("kikaku_config_generation", 2.0);
    assert_eq!(probe(&gw, &key).await, 501, "an API key survives a reload");
    let (_, one) = admin(&gw, "GET", &format!("/keys/{id}"), None).await;
    assert_eq!(one["source"], "api", "{one}");
    let (s, v) = admin(&gw, "DELETE", &format!("/keys/{id}"), None).await;
    assert_eq!((s, v["deleted"].as_bool()), (200, Some(true)), "{v}");
    let deleted = until_all(&gws, &key, 401).await;
    assert!(deleted < Duration::from_secs(1), "{deleted:?}");
    let (s, _) = admin(&gw, "GET", &format!("/keys/{id}"), None).await;
    assert_eq!(s, 404);
    let (s, _) = admin(&gw, "DELETE", &format!("/keys/{id}"), None).await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn config_keys_are_listed_and_read_only() {
    let gw = Gateway::with(&probe_config(""));
    let (_, listed) = admin(&gw, "GET", "/keys?limit=100", None).await;
    let alice = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["owner"] == "Image Tester")
        .unwrap_or_else(|| panic!("{listed}"))
        .clone();
    assert_eq!(alice["source"], "config");
    let id = alice["id"].as_str().unwrap();
    let (s, v) = admin(
        &gw,
        "PATCH",
        &format!("/keys/{id}"),
        Some(json!({"quota": 1})),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert!(message(&v).contains("config file"), "{v}");
    let (s, _) = admin(&gw, "DELETE", &format!("/keys/{id}"), None).await;
    assert_eq!(s, 409);
    assert_eq!(probe(&gw, IMAGE_KEY).await, 501, "still works");

    let (_, suspended) = admin(&gw, "GET", "/keys?status=suspended", None).await;
    let owners: Vec<&str> = suspended["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["owner"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["Paused"]);
    let (_, storage) = admin(&gw, "GET", "/keys?type=storage", None).await;
    assert_eq!(storage["pagination"]["total"], 1, "{storage}");
    let (_, page) = admin(&gw, "GET", "/keys?page=2&limit=2", None).await;
    assert_eq!(page["keys"].as_array().unwrap().len(), 2);
    assert_eq!(
        page["pagination"],
        json!({"page": 2, "limit": 2, "total": 5})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_with_the_field_named_and_nothing_made() {
    let gw = Gateway::with(&probe_config(""));
    let cases: Vec<(&str, &str, u16, &str)> = vec![
        ("POST", "{", 400, "body"),
        ("POST", "", 400, "JSON object"),
        ("POST", "[]", 400, "body"),
        ("POST", r#"{"type":"image"}"#, 400, "owner"),
        ("POST", r#"{"type":"robot","owner":"x"}"#, 400, "type"),
        (
            "POST",
            r#"{"type":"image","owner":"x","quota":"abc"}"#,
            400,
            "quota",
        ),
        (
            "POST",
            r#"{"type":"image","owner":"x","quota":0}"#,
            400,
            "quota",
        ),
        (
            "POST",
            r#"{"type":"image","owner":"x","quota":-1}"#,
            400,
            "quota: must be a whole number",
        ),
        (
            "POST",
            r#"{"type":"image","owner":"x","quota":null}"#,
            400,
            "quota",
        ),
        (
            "POST",
            r#"{"type":"image","owner":"x","quota":"1GiB"}"#,
            400,
            "quota: image keys count images",
        ),
        (
            "POST",
            r#"{"type":"image","owner":"x","colour":"red"}"#,
            400,
            "colour",
        ),
        (
            "POST",
            r#"{"type":"image","owner":"x","rate_limit_per_minute":0}"#,
            400,
            "rate_limit_per_minute",
        ),
        (
            "POST",
            r#"{"type":"image","owner":"x","rate_limit_per_minute":"fast"}"#,
            400,
            "rate_limit_per_minute",
        ),
        (
            "POST",
            r#"{"type":"image","owner":"x","expires_at":"2020-01-01"}"#,
            400,
            "expires_at",
        ),
        (
            "POST",
            r#"{"type":"image","owner":"x","expires_at":"soon"}"#,
            400,
            "expires_at",
        ),
        (
            "POST",
            r#"{"type":"image","owner":"","email":"x"}"#,
            400,
            "owner",
        ),
        (
            "POST",
            r#"{"type":"image","owner":"x","bucket":"b1"}"#,
            400,
            "bucket",
        ),
        (
            "POST",
            r#"{"type":"storage","owner":"x","bucket":"v1"}"#,
            400,
            "bucket",
        ),
        ("POST", r#"{"type":"storage","owner":"x"}"#, 400, "storage"),
    ];
    for (method, body, want, field) in cases {
        let (s, v) = raw(&gw, method, "/keys", body).await;
        assert_eq!(s, want, "{body}: {v}");
        assert!(
            message(&v).contains(field),
            "{body}: the message names {field}: {v}"
        );
    }
    let (_, listed) = admin(&gw, "GET", "/keys?limit=100", None).await;
    assert_eq!(
        listed["pagination"]["total"], 5,
        "nothing was made: {listed}"
    );

    let (s, _) = admin(&gw, "GET", "/keys/ffffffffffff", None).await;
    assert_eq!(s, 404);
    let (s, _) = admin(&gw, "GET", "/keys/not-an-id", None).await;
    assert_eq!(s, 404);
    let (s, v) = admin(&gw, "GET", "/keys?limit=1000", None).await;
    assert_eq!(s, 400);
    assert!(message(&v).contains("limit"), "{v}");
    let (s, v) = admin(&gw, "GET", "/keys?type=robot", None).await;
    assert_eq!(s, 400);
    assert!(message(&v).contains("type"), "{v}");
    let (_, made) = admin(
        &gw,
        "POST",
        "/keys",
        Some(json!({"type": "image", "owner": "x"})),
    )
    .await;
    let id = made["id"].as_str().unwrap();
    let (s, v) = raw(
        &gw,
        "PATCH",
        &format!("/keys/{id}"),
        r#"{"status":"paused"}"#,
    )
    .await;
    assert_eq!(s, 400);
    assert!(message(&v).contains("status"), "{v}");
    let (s, v) = raw(
        &gw,
        "PATCH",
        &format!("/keys/{id}"),
        r#"{"key":"kikaku_x"}"#,
    )
    .await;
    assert_eq!(s, 400);
    assert!(message(&v).contains("key"), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_redis_a_key_made_on_one_instance_works_on_another_and_dies_from_a_third() {
    let redis = RedisServer::start();
    let state = redis_state(&redis.url());
    let gws: Vec<Arc<Gateway>> = (0..3)
        .map(|_| Arc::new(Gateway::with(&probe_config(&state))))
        .collect();
    let (s, made) = admin(
        &gws[0],
        "POST",
        "/keys",
        Some(json!({"type": "image", "owner": "Dora", "quota": 3})),
    )
    .await;
    assert_eq!(s, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_string();
    let id = made["id"].as_str().unwrap().to_string();
    let start = Instant::now();
    while probe(&gws[1], &key).await != 501 {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "not served by a second instance"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, seen) = admin(&gws[1], "GET", &format!("/keys/{id}"), None).await;
    assert_eq!((s, seen["owner"].as_str()), (200, Some("Dora")));
    let (s, listed) = admin(&gws[2], "GET", "/keys?type=image&limit=100", None).await;
    assert_eq!(s, 200);
    assert!(
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == id.as_str() && k["source"] == "api"),
        "listed by a third instance: {listed}"
    );

    let (s, _) = admin(
        &gws[2],
        "PATCH",
        &format!("/keys/{id}"),
        Some(json!({"status": "suspended"})),
    )
    .await;
    assert_eq!(s, 200);
    let suspended = until_all(&gws, &key, 403).await;
    let (s, _) = admin(&gws[2], "DELETE", &format!("/keys/{id}"), None).await;
    assert_eq!(s, 200);
    let deleted = until_all(&gws, &key, 401).await;
    eprintln!("on all 3 instances: suspended in {suspended:?}, deleted in {deleted:?}");
    assert!(suspended < Duration::from_secs(1), "{suspended:?}");
    assert!(deleted < Duration::from_secs(1), "{deleted:?}");
}

/// A storage key whose bucket cannot be made (the backend is down) is not
/// kept: the answer says why and the key list does not change.
#[tokio::test(flavor = "multi_thread")]
async fn a_storage_key_is_not_kept_when_its_bucket_cannot_be_made() {
    let closed = free_port();
    let storage = format!(
        "storage:\n  backend: {{upstream: s3, access_key_id: backend-id, secret_access_key: backend-secret-0123}}\nupstreams:\n  s3:\n    endpoints: [{{address: '127.0.0.1:{closed}'}}]\n    timeouts: {{connect_ms: 200, read_ms: 500, write_ms: 500}}\n"
    );
    let gw = Gateway::with(&probe_config(&storage));
    let (_, before) = admin(&gw, "GET", "/keys?limit=100", None).await;
    let (s, v) = admin(
        &gw,
        "POST",
        "/keys",
        Some(json!({"type": "storage", "owner": "Fay"})),
    )
    .await;
    assert!(
        s == 502 || s == 503,
        "the backend's failure, not a key: {s} {v}"
    );
    let (_, after) = admin(&gw, "GET", "/keys?limit=100", None).await;
    assert_eq!(
        after["pagination"]["total"], before["pagination"]["total"],
        "nothing half made: {after}"
    );
    assert!(!after.to_string().contains("Fay"));
}
