//! The management API (DESIGN §5) on the admin listener, against the real
//! binary: the admin token, keys made, changed and deleted through it on
//! the embedded backend and on Redis (three instances), and bad input.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
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
    admin_as(gw, method, path, body, Some(TOKEN)).await
}

async fn admin_as(
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

async fn probe(gw: &Gateway, key: &str) -> u16 {
    client()
        .get(gw.url("/probe"))
        .header("authorization", bearer(key))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Time until every gateway answers `want` for `key`.
async fn until_all(gws: &[Arc<Gateway>], key: &str, want: u16) -> Duration {
    let start = Instant::now();
    for gw in gws {
        while probe(gw, key).await != want {
            assert!(start.elapsed() < Duration::from_secs(5), "never {want}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    start.elapsed()
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn management_calls_need_the_admin_token_and_it_is_never_logged() {
    let gw = Gateway::with(&probe_config(""));
    let (s, v) = admin_as(&gw, "GET", "/keys", None, None).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["code"], "Unauthorized");
    let (s, _) = admin_as(
        &gw,
        "GET",
        "/keys",
        None,
        Some("test_admin_token_012345678X"),
    )
    .await;
    assert_eq!(s, 401, "a token of the same length, one character off");
    let (s, _) = admin_as(&gw, "GET", "/keys", None, Some("short")).await;
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
    let state = format!(
        "state: {{backend: redis, redis: {{url: '{}'}}}}\n",
        redis.url()
    );
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

/// On the shipped offline config: a storage key made through the API has
/// its bucket and S3 credential at once; the storage API and the AWS CLI
/// both work with them.
#[tokio::test(flavor = "multi_thread")]
async fn a_storage_key_made_through_the_api_works_with_the_storage_api_and_the_aws_cli() {
    let (gw, _sim, _data) = start_shipped("conf/kikaku.yaml");
    let made = {
        let resp = client()
            .post(gw.admin_url("/admin/v1/keys"))
            .header("authorization", "Bearer admin_demo_token")
            .json(&json!({"type": "storage", "owner": "Ben", "quota": "1MiB", "bucket": "photos"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        resp.json::<Value>().await.unwrap()
    };
    assert_eq!(
        (made["bucket"].as_str(), made["quota"].as_u64()),
        (Some("photos"), Some(1 << 20))
    );
    let key = made["key"].as_str().unwrap();
    assert!(key.starts_with("kikaku_s3_"), "{made}");
    let id = made["s3"]["access_key_id"].as_str().unwrap();
    let secret = made["s3"]["secret_access_key"].as_str().unwrap();
    assert_eq!((id.len(), secret.len()), (20, 40), "{made}");

    let b = "admin-test-boundary";
    let form = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\na/b.txt\r\n--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.txt\"\r\n\r\nhello\r\n--{b}--\r\n"
    );
    let up = client()
        .post(gw.url("/s3/upload"))
        .header("authorization", bearer(key))
        .header("content-type", format!("multipart/form-data; boundary={b}"))
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 201, "{}", up.text().await.unwrap());

    let out = aws(&gw.url(""), id, secret, &["s3", "ls", "s3://photos/a/"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{listing}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        listing.contains("b.txt") && listing.contains(" 5 "),
        "{listing}"
    );

    let (s, seen) = {
        let resp = client()
            .get(gw.admin_url(&format!("/admin/v1/keys/{}", made["id"].as_str().unwrap())))
            .header("authorization", "Bearer admin_demo_token")
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    };
    assert_eq!((s, seen["used"].as_u64()), (200, Some(5)), "{seen}");
    assert!(
        !seen.to_string().contains(secret),
        "the S3 secret is shown once"
    );
}

/// boto3, in a loop: how long until `list_objects_v2` on `bucket` with this
/// credential answers `want` ("ok" or an S3 error code), at most 5 s.
fn boto3_until(endpoint: &str, id: &str, secret: &str, bucket: &str, want: &str) -> Duration {
    let script = r#"
import sys, time, boto3, botocore
from botocore.config import Config
endpoint, ident, secret, bucket, want = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ident,
                  aws_secret_access_key=secret, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
start = time.time()
while time.time() - start < 5:
    try:
        s3.list_objects_v2(Bucket=bucket)
        got = "ok"
    except botocore.exceptions.ClientError as e:
        got = e.response["Error"]["Code"]
    if got == want:
        print(f"{time.time() - start:.3f}")
        sys.exit(0)
    time.sleep(0.02)
sys.exit(f"still {got}, not {want}")
"#;
    let out = tool("python3")
        .args(["-c", script, endpoint, id, secret, bucket, want])
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Duration::from_secs_f64(String::from_utf8_lossy(&out.stdout).trim().parse().unwrap())
}

fn aws_ls(endpoint: &str, id: &str, secret: &str, bucket: &str) -> std::process::Output {
    aws(
        endpoint,
        id,
        secret,
        &["s3", "ls", &format!("s3://{bucket}/")],
    )
}

async fn demo_admin(gw: &Gateway, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    admin_as(gw, method, path, body, Some("admin_demo_token")).await
}

/// Seed 002's credentials: a second credential of one storage key works
/// with boto3 while the first works with the AWS CLI; switching it off
/// locks its clients out within a second and leaves the first alone.
#[tokio::test(flavor = "multi_thread")]
async fn extra_credentials_work_at_once_and_are_switched_off_alone() {
    let (gw, _sim, _data) = start_shipped("conf/kikaku.yaml");
    let endpoint = gw.url("");
    let (s, made) = demo_admin(
        &gw,
        "POST",
        "/keys",
        Some(json!({"type": "storage", "owner": "Cleo", "bucket": "media"})),
    )
    .await;
    assert_eq!(s, 201, "{made}");
    let key_id = made["id"].as_str().unwrap();
    let (id1, secret1) = (
        made["s3"]["access_key_id"].as_str().unwrap(),
        made["s3"]["secret_access_key"].as_str().unwrap(),
    );
    let (s, second) = demo_admin(
        &gw,
        "POST",
        "/credentials",
        Some(json!({"key_id": key_id, "user_name": "ci-runner"})),
    )
    .await;
    assert_eq!(s, 201, "{second}");
    let id2 = second["access_key"].as_str().unwrap();
    let secret2 = second["secret_key"].as_str().unwrap();
    assert_eq!(
        (second["user_name"].as_str(), second["is_active"].as_bool()),
        (Some("ci-runner"), Some(true))
    );

    // Both at once: the AWS CLI with the first, boto3 with the second.
    let cli = aws_ls(&endpoint, id1, secret1, "media");
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    boto3_until(&endpoint, id2, secret2, "media", "ok");

    let (s, listed) = demo_admin(&gw, "GET", &format!("/credentials?key_id={key_id}"), None).await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = listed["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id1, id2], "{listed}");
    assert!(
        !listed.to_string().contains(secret2),
        "the secret is shown once"
    );
    let (s, one) = demo_admin(&gw, "GET", &format!("/credentials/{id2}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(
        (one["bucket_count"].as_u64(), one["buckets"].clone()),
        (Some(1), json!(["media"]))
    );

    let (s, off) = demo_admin(
        &gw,
        "PATCH",
        &format!("/credentials/{id2}"),
        Some(json!({"is_active": false})),
    )
    .await;
    assert_eq!((s, off["is_active"].as_bool()), (200, Some(false)), "{off}");
    let locked_out = boto3_until(&endpoint, id2, secret2, "media", "InvalidAccessKeyId");
    eprintln!("a switched-off credential was refused after {locked_out:?}");
    assert!(locked_out < Duration::from_secs(1), "{locked_out:?}");
    let cli = aws_ls(&endpoint, id1, secret1, "media");
    assert!(cli.status.success(), "the first credential still works");

    // Taken, malformed, and read-only credentials.
    let (s, _) = demo_admin(
        &gw,
        "POST",
        "/credentials",
        Some(json!({"key_id": key_id, "access_key": id1})),
    )
    .await;
    assert_eq!(s, 409);
    for body in [
        json!({"key_id": key_id, "access_key": "lower-case-key-0000"}),
        json!({"key_id": key_id, "secret_key": "short"}),
        json!({"key_id": "ffffffffffff"}),
        json!({"key_id": key_id, "colour": 1}),
        json!({}),
    ] {
        let (s, v) = demo_admin(&gw, "POST", "/credentials", Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {v}");
    }
    let (s, _) = demo_admin(
        &gw,
        "PATCH",
        "/credentials/KIKAKUDEMOACCESSKEY0",
        Some(json!({"is_active": false})),
    )
    .await;
    assert_eq!(s, 409, "the config's credential is read-only");

    let (s, _) = demo_admin(&gw, "DELETE", &format!("/credentials/{id2}"), None).await;
    assert_eq!(s, 200);
    let (s, _) = demo_admin(&gw, "GET", &format!("/credentials/{id2}"), None).await;
    assert_eq!(s, 404);
    let cli = aws_ls(&endpoint, id1, secret1, "media");
    assert!(
        cli.status.success(),
        "the key and its first credential stay"
    );
}
