//! Key reset by its holder, `POST /account/rotate-key` (DESIGN §2), on the
//! shipped configs: the new key is shown once and keeps the account
//! (usage, logs, gallery, files, S3 credential); the old key dies at once
//! here and within a second on another instance (Redis); keys of the
//! config file answer 409.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::admin::{aws_ok, demo_admin, shipped};
use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};

async fn rotate(gw: &Gateway, key: &str) -> (u16, Value) {
    let resp = client()
        .post(gw.url("/account/rotate-key"))
        .header("authorization", bearer(key))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(
        resp.headers()["cache-control"],
        "no-store",
        "a new key is never cached"
    );
    (status, resp.json().await.unwrap())
}

async fn get(gw: &Gateway, path: &str, key: &str) -> (u16, Value) {
    let resp = client()
        .get(gw.url(path))
        .header("authorization", bearer(key))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Make a key through the management API; `(key, id)`.
async fn made(gw: &Gateway, body: Value) -> (String, String) {
    let (s, v) = demo_admin(gw, "POST", "/keys", Some(body)).await;
    assert_eq!(s, 201, "{v}");
    (
        v["key"].as_str().unwrap().to_string(),
        v["id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_key_reset_keeps_usage_logs_and_gallery_and_kills_the_old_key() {
    let s = shipped(false);
    let gw = &s.gw;
    let (old, old_id) = made(gw, json!({"type": "image", "owner": "Rita", "quota": 9})).await;
    let resp = client()
        .post(gw.url("/v1/images/generations"))
        .header("authorization", bearer(&old))
        .json(&json!({"model": "seedream-4.0", "prompt": "a lighthouse", "n": 1, "size": "2K"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let (_, usage_before) = get(gw, "/v1/usage", &old).await;
    assert_eq!(usage_before["used_count"], 1, "{usage_before}");
    let gallery_before = until_gallery(gw, &old).await;

    let (status, v) = rotate(gw, &old).await;
    assert_eq!(status, 200, "{v}");
    let new = v["key"].as_str().unwrap().to_string();
    let new_id = v["id"].as_str().unwrap();
    assert!(
        new.starts_with("kikaku_") && !new.starts_with("kikaku_s3_"),
        "{new}"
    );
    assert_ne!(new, old);
    assert_ne!(new_id, old_id, "a new key has a new id");
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");

    // The old key is dead at once on this instance, for every route.
    assert_eq!(get(gw, "/v1/usage", &old).await.0, 401);
    assert_eq!(
        rotate(gw, &old).await.0,
        401,
        "a dead key cannot be reset again"
    );

    let (s1, usage) = get(gw, "/v1/usage", &new).await;
    assert_eq!(s1, 200, "{usage}");
    for field in ["used_count", "quota_limit", "owner_name", "stats"] {
        assert_eq!(usage[field], usage_before[field], "{field} kept: {usage}");
    }
    let (_, logs) = get(gw, "/v1/logs", &new).await;
    assert_eq!(logs["pagination"]["total"], 1, "the logs stay: {logs}");
    let (_, gallery) = get(gw, "/v1/gallery", &new).await;
    assert_eq!(
        gallery["images"], gallery_before["images"],
        "the gallery stays"
    );

    // The operator sees the new id, with the usage; the old id is gone.
    let (st, _) = demo_admin(gw, "GET", &format!("/keys/{old_id}"), None).await;
    assert_eq!(st, 404);
    let (st, shown) = demo_admin(gw, "GET", &format!("/keys/{new_id}"), None).await;
    assert_eq!((st, shown["used"].as_u64()), (200, Some(1)), "{shown}");
    assert_eq!(shown["owner"], "Rita");

    // A reset again, with the new key: works the same way.
    let (status, again) = rotate(gw, &new).await;
    assert_eq!(status, 200, "{again}");
    let (_, u) = get(gw, "/v1/usage", again["key"].as_str().unwrap()).await;
    assert_eq!(u["used_count"], 1, "{u}");
    assert_eq!(get(gw, "/v1/usage", &new).await.0, 401);
}

/// The gallery copy is made after the answer; wait for it.
async fn until_gallery(gw: &Gateway, key: &str) -> Value {
    let start = Instant::now();
    loop {
        let (_, g) = get(gw, "/v1/gallery", key).await;
        if g["images"].as_array().is_some_and(|a| !a.is_empty()) {
            return g;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no gallery: {g}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_storage_key_reset_keeps_files_quota_and_the_s3_credential() {
    for redis in [false, true] {
        let s = shipped(redis);
        let gw = &s.gw;
        let (old, _) = made(
            gw,
            json!({"type": "storage", "owner": "Sam", "quota": "1MiB", "bucket": "box"}),
        )
        .await;
        let (_, creds) = get(gw, "/s3/credentials", &old).await;
        let (id, secret) = (
            creds["access_key_id"].as_str().unwrap().to_string(),
            creds["secret_access_key"].as_str().unwrap().to_string(),
        );
        let boundary = "xyzBOUNDARY";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\
             Content-Type: text/plain\r\n\r\nhello rotation\r\n--{boundary}--\r\n"
        );
        let resp = client()
            .post(gw.url("/s3/upload"))
            .header("authorization", bearer(&old))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());

        let (status, v) = rotate(gw, &old).await;
        assert_eq!(status, 200, "{v}");
        let new = v["key"].as_str().unwrap().to_string();
        assert!(new.starts_with("kikaku_s3_"), "{new}");
        assert_eq!(get(gw, "/s3/usage", &old).await.0, 401);

        let (_, usage) = get(gw, "/s3/usage", &new).await;
        assert_eq!(usage["used"], 14, "{usage}");
        assert_eq!(usage["quota"], 1 << 20);
        let (_, files) = get(gw, "/s3/files", &new).await;
        assert_eq!(files["files"][0]["key"], "a.txt", "{files}");
        let (_, after) = get(gw, "/s3/credentials", &new).await;
        assert_eq!(after, creds, "the same S3 credential and bucket");
        // The credential still signs for the same bucket (the access-key
        // index follows the new key on Redis too).
        let listed = aws_ok(aws(&gw.url(""), &id, &secret, &["s3", "ls", "s3://box/"]));
        assert!(listed.contains("a.txt"), "redis={redis}: {listed}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_of_the_config_file_answer_409_and_nothing_changes() {
    let s = shipped(false);
    let gw = &s.gw;
    for key in ["kikaku_demo_key", "kikaku_s3_demo_key"] {
        let (status, v) = rotate(gw, key).await;
        assert_eq!(status, 409, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("config file"),
            "{v}"
        );
    }
    assert_eq!(get(gw, "/v1/usage", "kikaku_demo_key").await.0, 200);
    let (status, _) = rotate(gw, "kikaku_nobody").await;
    assert_eq!(status, 401);
    let resp = client()
        .get(gw.url("/account/rotate-key"))
        .header("authorization", bearer("kikaku_demo_key"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_redis_the_old_key_dies_on_another_instance_within_a_second() {
    let redis = RedisServer::start();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env = [("KIKAKU_REDIS_URL", redis.url())];
    let (a, _, _) = start_shipped_with("conf/redis.example.yaml", d1.path(), &env);
    let (b, _, _) = start_shipped_with("conf/redis.example.yaml", d2.path(), &env);
    let (old, _) = made(&a, json!({"type": "image", "owner": "Ivo"})).await;
    // B has the old key cached as valid.
    assert_eq!(get(&b, "/v1/usage", &old).await.0, 200);
    let (status, v) = rotate(&a, &old).await;
    assert_eq!(status, 200, "{v}");
    let rotated = Instant::now();
    let new = v["key"].as_str().unwrap();
    let b = Arc::new(b);
    while get(&b, "/v1/usage", &old).await.0 != 401 {
        assert!(rotated.elapsed() < Duration::from_secs(3), "still served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dead = rotated.elapsed();
    eprintln!("old key refused by the other instance after {dead:?}");
    assert!(dead <= Duration::from_millis(1100), "{dead:?}");
    assert_eq!(get(&b, "/v1/usage", new).await.0, 200);
}
