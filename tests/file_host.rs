//! The content-addressed file host (DESIGN §6, seed 001) on the shipped
//! config, against the real binary: seed 001's answer and URLs, one stored
//! copy per content with each account charged once, `/f/` with Range, ETag
//! and HEAD, deletes that free the bytes, the collector, `api=1`, the
//! anonymous form URL (off, then on with its per-IP limit and size cap),
//! and seed 001's curl lines as printed.

mod common;

use std::path::Path;
use std::time::Instant;

use common::admin::demo_admin;
use common::uploads::{self as up, file, KEY};
use common::*;
use serde_json::{json, Value};
use sha2::Digest;

fn sha256(data: &[u8]) -> String {
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The backend copy of a content, on the embedded S3 server's disk.
fn stored(data: &Path, hash: &str) -> bool {
    data.join("s3/kk-files/o+").join(hash).is_file()
}

/// `POST path` with a form holding `file`, with or without a key; status,
/// content type and body.
async fn post_file(
    gw: &Gateway,
    path: &str,
    key: Option<&str>,
    name: &str,
    data: &[u8],
) -> (u16, String, String) {
    let resp = up::post_form(
        gw,
        path,
        key,
        &[file(name, "application/octet-stream", data)],
    )
    .await;
    let status = resp.status().as_u16();
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    (status, ct, resp.text().await.unwrap())
}

async fn upload(gw: &Gateway, key: Option<&str>, name: &str, data: &[u8]) -> (u16, Value) {
    let (status, _, text) = post_file(gw, "/api/upload", key, name, data).await;
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

/// A storage key made through the management API (quota in bytes).
async fn new_key(gw: &Gateway, owner: &str, quota: u64) -> String {
    let (s, made) = demo_admin(
        gw,
        "POST",
        "/keys",
        Some(json!({"type": "storage", "owner": owner, "quota": quota})),
    )
    .await;
    assert_eq!(s, 201, "{made}");
    made["key"].as_str().unwrap().to_string()
}

async fn delete(gw: &Gateway, key: &str, hash: &str) -> (u16, Value) {
    let resp = client()
        .delete(gw.url(&format!("/api/upload/{hash}")))
        .header("authorization", bearer(key))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_content_is_stored_once_and_each_account_charged_once() {
    let u = up::start(&[("KIKAKU_UPLOAD_SWEEP_INTERVAL", "300ms".into())]);
    let (gw, data) = (&u.gw, u.data.path());
    let body = b"\x89PNG\r\n\x1a\n hosted content ".repeat(40);
    let hash = sha256(&body);
    let (st, v) = upload(gw, Some(KEY), "image.png", &body).await;
    assert_eq!(st, 200, "{v}");
    let base = gw.url("/f/");
    assert_eq!(
        v,
        json!({"hash": hash, "status": true, "urls": {
            "base": base,
            "full": format!("{base}{hash}/image.png"),
            "ext": format!("{base}{hash}.png"),
            "hash": format!("{base}{hash}"),
        }})
    );
    assert!(stored(data, &hash));
    assert_eq!(up::used(gw, KEY).await, body.len() as u64);

    // Again under another name: the same hash, nothing more charged.
    let (st, again) = upload(gw, Some(KEY), "copy.png", &body).await;
    assert_eq!((st, &again["hash"]), (200, &json!(hash)));
    assert_eq!(up::used(gw, KEY).await, body.len() as u64);

    // Another account: charged once too, still one copy at the backend.
    let other = new_key(gw, "Other Host User", 1 << 20).await;
    let (st, v) = upload(gw, Some(&other), "mine.png", &body).await;
    assert_eq!((st, &v["hash"]), (200, &json!(hash)), "{v}");
    assert_eq!(up::used(gw, &other).await, body.len() as u64);
    assert_eq!(up::used(gw, KEY).await, body.len() as u64);
    let copies = std::fs::read_dir(data.join("s3/kk-files/o+"))
        .unwrap()
        .count();
    assert_eq!(copies, 1, "one object for one content");

    // The key's listing.
    let listed = get_json(&gw.url("/api/upload"), KEY).await;
    assert_eq!(listed["files"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["files"][0]["name"], "image.png");
    assert_eq!(listed["files"][0]["size"], body.len());
    assert_eq!(listed["files"][0]["content_type"], "image/png");

    // The first holder lets go: its bytes return, the file still serves.
    let (st, v) = delete(gw, KEY, &hash).await;
    assert_eq!((st, &v["freed_bytes"]), (200, &json!(body.len())), "{v}");
    assert_eq!(up::used(gw, KEY).await, 0);
    assert_eq!(delete(gw, KEY, &hash).await.0, 404, "held no more");
    assert_eq!(up::fetch(&format!("{base}{hash}"), &[]).await.0, 200);
    // The last one: 404 at once, and the collector deletes the copy.
    assert_eq!(delete(gw, &other, &hash).await.0, 200);
    assert_eq!(up::used(gw, &other).await, 0);
    assert_eq!(up::fetch(&format!("{base}{hash}"), &[]).await.0, 404);
    assert_eq!(gw.wait_metric("kikaku_file_host_collected_total", 1.0), 1.0);
    assert!(!stored(data, &hash), "collected");
    // Uploaded again after collection: stored again, served again.
    let (st, _) = upload(gw, Some(KEY), "back.png", &body).await;
    assert_eq!(st, 200);
    assert!(stored(data, &hash));
    assert_eq!(up::fetch(&format!("{base}{hash}"), &[]).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn hash_urls_serve_the_content_with_range_etag_and_head() {
    let u = up::start(&[]);
    let gw = &u.gw;
    let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let (st, v) = upload(gw, Some(KEY), "data.bin", &body).await;
    assert_eq!(st, 200, "{v}");
    let hash = sha256(&body);
    let etag = format!("\"{hash}\"");
    for url in [
        v["urls"]["hash"].as_str().unwrap().to_string(),
        v["urls"]["ext"].as_str().unwrap().to_string(),
        v["urls"]["full"].as_str().unwrap().to_string(),
        gw.url(&format!("/f/{hash}.anything")),
        gw.url(&format!("/f/{hash}/any%20name.txt")),
        gw.url(&format!("/f/{}", hash.to_uppercase())),
    ] {
        let (st, h, got) = up::fetch(&url, &[]).await;
        assert_eq!(st, 200, "{url}");
        assert_eq!(got, body, "{url}");
        assert_eq!(h["etag"], etag.as_str());
        assert_eq!(h["content-type"], "application/octet-stream");
        assert_eq!(h["content-security-policy"], "sandbox");
    }
    let url = gw.url(&format!("/f/{hash}"));
    let (st, h, got) = up::fetch(&url, &[("range", "bytes=100-199")]).await;
    assert_eq!((st, got.as_slice()), (206, &body[100..200]));
    assert_eq!(h["content-range"], "bytes 100-199/5000");
    let (st, h, got) = up::fetch(&url, &[("if-none-match", &etag)]).await;
    assert_eq!((st, got.len()), (304, 0));
    assert_eq!(h["etag"], etag.as_str());
    assert_eq!(up::fetch(&url, &[("if-match", "\"other\"")]).await.0, 412);
    // If-Range with another ETag: the whole file, not the range.
    let (st, _, got) = up::fetch(&url, &[("range", "bytes=0-9"), ("if-range", "\"old\"")]).await;
    assert_eq!((st, got.len()), (200, 5000));
    let (st, _, got) = up::fetch(&url, &[("range", "bytes=0-9"), ("if-range", &etag)]).await;
    assert_eq!((st, got.len()), (206, 10));
    let head = client().head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "5000");
    assert_eq!(head.headers()["etag"], etag.as_str());
    // Unknown hashes and malformed ones: 404.
    for missing in [
        format!("/f/{}", "0".repeat(64)),
        "/f/abc".into(),
        "/f/".into(),
        format!("/f/{}x", &hash[..63]),
    ] {
        assert_eq!(up::fetch(&gw.url(&missing), &[]).await.0, 404, "{missing}");
    }
    let resp = client().delete(&url).send().await.unwrap();
    assert_eq!(resp.status(), 405, "the file URL is read-only");
}

#[tokio::test(flavor = "multi_thread")]
async fn api_1_answers_in_plain_text_and_errors_name_the_problem() {
    let u = up::start(&[]);
    let gw = &u.gw;
    let (st, ct, text) = post_file(gw, "/api/upload?api=1", Some(KEY), "a.txt", b"plain").await;
    assert_eq!((st, ct.as_str()), (200, "text/plain; charset=utf-8"));
    assert_eq!(text, format!("OK {}", sha256(b"plain")));
    // An error with api=1: `ERROR <message>`, with its status.
    let resp = client()
        .post(gw.url("/api/upload?api=1"))
        .header("authorization", bearer(KEY))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(
        text.starts_with("ERROR ") && text.contains("multipart"),
        "{text}"
    );
    // A form without `file`: 400, in seed 001's JSON shape.
    let resp = up::post_form(gw, "/api/upload", Some(KEY), &[up::text("other", "x")]).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["status"], false);
    assert!(v["error"].as_str().unwrap().contains("`file`"), "{v}");
    // A bad key, the wrong key type, with api=1 too.
    let (st, _, text) = post_file(
        gw,
        "/api/upload?api=1",
        Some("kikaku_s3_nope"),
        "a.txt",
        b"x",
    )
    .await;
    assert_eq!(st, 401);
    assert!(text.starts_with("ERROR "), "{text}");
    let (st, v) = upload(gw, Some("kikaku_demo_key"), "a.txt", b"x").await;
    assert_eq!((st, &v["status"]), (403, &json!(false)), "{v}");
    // Over the quota: 403, nothing stored or charged.
    let small = new_key(gw, "Small Quota", 1000).await;
    let (st, v) = upload(gw, Some(&small), "big.bin", &[7u8; 2000]).await;
    assert_eq!(st, 403, "{v}");
    assert_eq!(up::used(gw, &small).await, 0);
    assert!(!stored(u.data.path(), &sha256(&[7u8; 2000])));
    assert_eq!(
        up::fetch(&gw.url(&format!("/f/{}", sha256(&[7u8; 2000]))), &[])
            .await
            .0,
        404
    );
    // Deleting something never held, or a malformed hash: 404.
    assert_eq!(delete(gw, KEY, &"1".repeat(64)).await.0, 404);
    assert_eq!(delete(gw, KEY, "nothex").await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_uploads_are_off_by_default() {
    let u = up::start(&[]);
    let gw = &u.gw;
    let (st, v) = upload(gw, None, "a.txt", b"anon").await;
    assert_eq!((st, &v["status"]), (401, &json!(false)), "{v}");
    let (st, _, text) = post_file(gw, "/upload?api=1", None, "a.txt", b"anon").await;
    assert_eq!(st, 403);
    assert!(
        text.starts_with("ERROR Anonymous uploads are off"),
        "{text}"
    );
    assert!(!stored(u.data.path(), &sha256(b"anon")));
    let resp = client().get(gw.url("/api/upload")).send().await.unwrap();
    assert_eq!(resp.status(), 401, "a listing needs a key");
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_uploads_have_their_own_ip_limit_size_cap_and_quota() {
    let u = up::start(&[
        ("KIKAKU_ANONYMOUS_UPLOADS", "true".into()),
        ("KIKAKU_ANONYMOUS_UPLOADS_PER_MINUTE", "4".into()),
        ("KIKAKU_ANONYMOUS_UPLOADS_MAX_BYTES", "1000".into()),
        ("KIKAKU_ANONYMOUS_UPLOADS_QUOTA", "1500".into()),
    ]);
    let gw = &u.gw;
    // 1: the form URL, api=1.
    let (st, _, text) = post_file(gw, "/upload?api=1", None, "a.txt", &[1u8; 800]).await;
    assert_eq!((st, text), (200, format!("OK {}", sha256(&[1u8; 800]))));
    // 2: over the anonymous size cap: 413, nothing stored.
    let (st, v) = upload(gw, None, "big.bin", &[2u8; 1001]).await;
    assert_eq!(st, 413, "{v}");
    assert!(!stored(u.data.path(), &sha256(&[2u8; 1001])));
    // 3: /api/upload without a key; past the anonymous quota (800 + 800).
    let (st, v) = upload(gw, None, "b.txt", &[3u8; 800]).await;
    assert_eq!(st, 403, "{v}");
    // 4: a key sent to the form URL registers nothing to the account.
    let (st, _, _) = post_file(gw, "/upload", Some(KEY), "c.txt", &[4u8; 100]).await;
    assert_eq!(st, 200);
    let listed = get_json(&gw.url("/api/upload"), KEY).await;
    assert_eq!(listed["files"], json!([]), "{listed}");
    assert_eq!(up::used(gw, KEY).await, 0);
    // 5: past the per-IP limit of 4 a minute.
    let resp = up::post_form(gw, "/upload", None, &[file("d", "text/plain", b"d")]).await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["status"], false);
    // What anonymous uploads stored serves like any hosted file.
    let (st, _, got) = up::fetch(&gw.url(&format!("/f/{}", sha256(&[1u8; 800]))), &[]).await;
    assert_eq!((st, got), (200, vec![1u8; 800]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_file_is_staged_hashed_and_stored_once() {
    let u = up::start(&[]);
    let gw = &u.gw;
    // Over one 8 MiB part: sent as a multipart upload while it streams.
    let body: Vec<u8> = (0..20_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let hash = sha256(&body);
    let started = Instant::now();
    let (st, v) = upload(gw, Some(KEY), "large.bin", &body).await;
    eprintln!("20 MB upload: {:?}", started.elapsed());
    assert_eq!((st, &v["hash"]), (200, &json!(hash)), "{v}");
    assert_eq!(up::used(gw, KEY).await, body.len() as u64);
    let other = new_key(gw, "Large Other", 1 << 30).await;
    let (st, v) = upload(gw, Some(&other), "large.bin", &body).await;
    assert_eq!((st, &v["hash"]), (200, &json!(hash)));
    assert_eq!(up::used(gw, &other).await, body.len() as u64);
    assert_eq!(up::used(gw, KEY).await, body.len() as u64);
    let (st, _, got) = up::fetch(&gw.url(&format!("/f/{hash}")), &[]).await;
    assert_eq!(st, 200);
    assert!(got == body, "the stored bytes are the uploaded ones");
    // Nothing left staged in the bucket: only the content itself.
    let names: Vec<_> = std::fs::read_dir(u.data.path().join("s3/kk-files/o+"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec![hash.clone()]);
    // Reconcile restates the key's usage with its hosted content.
    let id = &sha256(KEY.as_bytes())[..12];
    let (st, r) = demo_admin(gw, "POST", &format!("/keys/{id}/reconcile"), None).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(up::used(gw, KEY).await, body.len() as u64);
}

/// Seed 001's curl lines, as printed, with the real curl.
#[tokio::test(flavor = "multi_thread")]
async fn seed_001s_curl_lines_work_as_printed() {
    let u = up::start(&[("KIKAKU_ANONYMOUS_UPLOADS", "true".into())]);
    let gw = &u.gw;
    let dir = tempfile::tempdir().unwrap();
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0seed001";
    std::fs::write(dir.path().join("image.png"), png).unwrap();
    let url = gw.url("/api/upload");
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .current_dir(dir.path())
            .arg("-s")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    // $ curl -F file=@image.png {{ url_for('api.upload') }}
    let v = curl(&["-F", "file=@image.png", &url]);
    assert_eq!(v["status"], true, "{v}");
    assert_eq!(v["hash"], sha256(png));
    assert_eq!(v["urls"]["ext"], gw.url(&format!("/f/{}.png", sha256(png))));
    // $ curl -H 'Authorization: Bearer api_key' -F file=@image.png {{ url_for('api.upload') }}
    let auth = format!("Authorization: Bearer {KEY}");
    let v = curl(&["-H", &auth, "-F", "file=@image.png", &url]);
    assert_eq!(v["status"], true, "{v}");
    assert_eq!(
        v["urls"]["full"],
        gw.url(&format!("/f/{}/image.png", sha256(png)))
    );
    // Registered to the account this time.
    let listed = get_json(&gw.url("/api/upload"), KEY).await;
    assert_eq!(listed["files"][0]["hash"], sha256(png));
    let (st, h, _) = up::fetch(v["urls"]["ext"].as_str().unwrap(), &[]).await;
    assert_eq!(
        (st, &h["content-type"]),
        (200, &"image/png".parse().unwrap())
    );
}

/// Two instances on one Redis and one backend: concurrent uploads of one
/// content through both are stored once and charged once, either serves
/// it, a delete through one is seen by the other at once, and the content
/// is collected once.
#[tokio::test(flavor = "multi_thread")]
async fn two_instances_on_redis_share_contents_holds_and_charges_exactly() {
    let redis = common::redis::RedisServer::start();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut env: Vec<(&str, String)> = vec![
        ("KIKAKU_REDIS_URL", redis.url()),
        ("KIKAKU_UPLOAD_SWEEP_INTERVAL", "200ms".into()),
        (
            "KIKAKU_S3_BACKEND_ACCESS_KEY_ID",
            "KKHOSTBACKEND0000001".into(),
        ),
        (
            "KIKAKU_S3_BACKEND_SECRET_ACCESS_KEY",
            "file-host-test-backend-secret-012345".into(),
        ),
    ];
    let (a, _, s3) = start_shipped_with("conf/redis.example.yaml", da.path(), &env);
    env.push(("KIKAKU_S3_EMBEDDED_ADDR", format!("127.0.0.1:{s3}")));
    let (b, _, _) = start_shipped_with("conf/redis.example.yaml", db.path(), &env);
    let body = b"shared between instances ".repeat(200);
    let hash = sha256(&body);
    let uploads = (0..12).map(|i| {
        let gw = if i % 2 == 0 { &a } else { &b };
        let body = &body;
        async move { upload(gw, Some(KEY), &format!("n{i}.txt"), body).await }
    });
    for (st, v) in futures_util::future::join_all(uploads).await {
        assert_eq!((st, &v["hash"]), (200, &json!(hash)), "{v}");
    }
    assert_eq!(up::used(&a, KEY).await, body.len() as u64, "charged once");
    let copies = std::fs::read_dir(da.path().join("s3/kk-files/o+"))
        .unwrap()
        .count();
    assert_eq!(copies, 1);
    let (st, _, got) = up::fetch(&b.url(&format!("/f/{hash}.txt")), &[]).await;
    assert_eq!((st, got), (200, body.clone()));
    assert_eq!(delete(&b, KEY, &hash).await.0, 200);
    assert_eq!(up::used(&a, KEY).await, 0);
    assert_eq!(up::fetch(&a.url(&format!("/f/{hash}")), &[]).await.0, 404);
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while stored(da.path(), &hash) {
        assert!(Instant::now() < deadline, "never collected");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Well past more rounds of both: collected once in all.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let collected =
        a.metric("kikaku_file_host_collected_total") + b.metric("kikaku_file_host_collected_total");
    assert_eq!(collected, 1.0);
}
