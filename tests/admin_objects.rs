//! The management API's object side (DESIGN §5) on the shipped offline
//! config: buckets, objects, bulk delete, uploads in progress, presigned
//! URLs, stats and reconcile, while the tenant writes with the AWS CLI.

mod common;

use std::time::Duration;

use common::admin::{aws_ok, demo_admin, shipped, storage_key, Shipped, StorageKey};
use common::*;
use serde_json::{json, Value};

/// Buckets and objects seen, counted and deleted by the operator while the
/// tenant writes them with the AWS CLI; deleted bytes return to the quota.
macro_rules! on_both_backends {
    ($($behaviour:ident),*) => {$(
        mod $behaviour {
            #[tokio::test(flavor = "multi_thread")]
            async fn embedded() {
                super::$behaviour(false).await
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn redis() {
                super::$behaviour(true).await
            }
        }
    )*};
}

on_both_backends!(
    buckets_and_objects_are_listed_counted_and_deleted,
    presigned_urls_stats_and_reconcile
);

async fn buckets_and_objects_are_listed_counted_and_deleted(redis: bool) {
    let Shipped { gw, data, _redis } = shipped(redis);
    let endpoint = gw.url("");
    let StorageKey { owner, id, secret } = storage_key(&gw, "Dan", "main").await;
    let cli = |args: &[&str]| aws(&endpoint, &id, &secret, args);

    let (s, b) = demo_admin(
        &gw,
        "POST",
        "/buckets",
        Some(json!({"name": "archive", "owner_id": owner, "region": "us-east-1"})),
    )
    .await;
    assert_eq!(
        (s, b["name"].as_str(), b["object_count"].as_u64()),
        (201, Some("archive"), Some(0)),
        "{b}"
    );
    for (body, want) in [
        (json!({"name": "archive", "owner_id": owner}), 409),
        (json!({"name": "v1", "owner_id": owner}), 400),
        (json!({"name": "other", "owner_id": "ffffffffffff"}), 400),
        (
            json!({"name": "other", "owner_id": owner, "region": "eu-west-9"}),
            400,
        ),
        (json!({"name": "other"}), 400),
    ] {
        let (s, v) = demo_admin(&gw, "POST", "/buckets", Some(body.clone())).await;
        assert_eq!(s, want, "{body}: {v}");
    }

    let file = data.path().join("five.txt");
    std::fs::write(&file, "hello").unwrap();
    let f = file.to_str().unwrap();
    aws_ok(cli(&[
        "s3api",
        "put-object",
        "--bucket",
        "archive",
        "--key",
        "a.txt",
        "--body",
        f,
        "--metadata",
        "colour=blue",
        "--content-type",
        "text/plain",
    ]));
    std::fs::write(&file, "abc").unwrap();
    aws_ok(cli(&[
        "s3api",
        "put-object",
        "--bucket",
        "archive",
        "--key",
        "dir/b c.txt",
        "--body",
        f,
    ]));
    let upload = aws_ok(cli(&[
        "s3api",
        "create-multipart-upload",
        "--bucket",
        "archive",
        "--key",
        "big.bin",
        "--query",
        "UploadId",
        "--output",
        "text",
    ]));
    let upload = upload.trim();
    std::fs::write(&file, vec![7u8; 1024]).unwrap();
    aws_ok(cli(&[
        "s3api",
        "upload-part",
        "--bucket",
        "archive",
        "--key",
        "big.bin",
        "--part-number",
        "1",
        "--upload-id",
        upload,
        "--body",
        f,
    ]));

    let (s, all) = admin_get(&gw, "/buckets").await;
    assert_eq!(s, 200);
    let archive = all["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "archive" && b["owner"] == owner.as_str())
        .unwrap_or_else(|| panic!("{all}"))
        .clone();
    assert_eq!(
        (
            archive["object_count"].as_u64(),
            archive["total_size"].as_u64(),
            archive["owner_name"].as_str()
        ),
        (Some(2), Some(8), Some("Dan"))
    );
    assert_eq!(archive["total_size_human"], "8 B");
    assert!(all["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["name"] == "main" && b["owner"] == owner.as_str()));

    let (s, one) = admin_get(&gw, &format!("/buckets/{owner}/archive?prefix=dir/")).await;
    assert_eq!(s, 200, "{one}");
    let keys: Vec<&str> = one["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["dir/b c.txt"]);
    let (_, page) = admin_get(&gw, &format!("/buckets/{owner}/archive/objects?limit=1")).await;
    assert_eq!(page["objects"].as_array().unwrap().len(), 1);
    assert!(page["next_cursor"].is_string(), "{page}");
    let (_, rest) = admin_get(
        &gw,
        &format!(
            "/buckets/{owner}/archive/objects?limit=1&cursor={}",
            page["next_cursor"].as_str().unwrap()
        ),
    )
    .await;
    assert_ne!(rest["objects"][0]["key"], page["objects"][0]["key"]);

    let (s, a) = admin_get(&gw, &format!("/buckets/{owner}/archive/objects/a.txt")).await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(
        (a["size"].as_u64(), a["content_type"].as_str()),
        (Some(5), Some("text/plain"))
    );
    assert_eq!(a["metadata"], json!({"colour": "blue"}));
    assert_eq!(a["is_multipart"], false);
    let (s, _) = admin_get(
        &gw,
        &format!("/buckets/{owner}/archive/objects/dir/b%20c.txt"),
    )
    .await;
    assert_eq!(s, 200, "keys with slashes and spaces");
    let (s, _) = admin_get(&gw, &format!("/buckets/{owner}/archive/objects/nope")).await;
    assert_eq!(s, 404);
    let (s, _) = admin_get(&gw, &format!("/buckets/{owner}/nothing")).await;
    assert_eq!(s, 404);

    let (_, ups) = admin_get(&gw, &format!("/buckets/{owner}/archive/multipart-uploads")).await;
    let ups = ups["uploads"].as_array().unwrap().clone();
    assert_eq!(ups.len(), 1, "{ups:?}");
    assert_eq!(
        (
            ups[0]["upload_id"].as_str(),
            ups[0]["object_key"].as_str(),
            ups[0]["part_count"].as_u64(),
            ups[0]["total_size"].as_u64()
        ),
        (Some(upload), Some("big.bin"), Some(1), Some(1024))
    );

    let used = |v: &Value| v["used"].as_u64().unwrap();
    let (_, k) = admin_get(&gw, &format!("/keys/{owner}")).await;
    assert_eq!(used(&k), 8 + 1024, "{k}");
    let (s, v) = admin_delete(&gw, &format!("/buckets/{owner}/archive")).await;
    assert_eq!(s, 409, "not empty: {v}");

    let (s, bulk) = demo_admin(
        &gw,
        "POST",
        &format!("/buckets/{owner}/archive/delete"),
        Some(json!({"keys": ["a.txt", "missing.txt"]})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(bulk["deleted"], json!(["a.txt"]));
    assert_eq!(bulk["errors"][0]["key"], "missing.txt");
    assert_eq!(bulk["errors"][0]["code"], "NotFound");
    let (s, d) = admin_delete(
        &gw,
        &format!("/buckets/{owner}/archive/objects/dir/b%20c.txt"),
    )
    .await;
    assert_eq!((s, d["freed_bytes"].as_u64()), (200, Some(3)), "{d}");
    let (_, k) = admin_get(&gw, &format!("/keys/{owner}")).await;
    assert_eq!(used(&k), 1024, "the deleted objects' bytes came back: {k}");
    let (s, _) = admin_delete(&gw, &format!("/buckets/{owner}/archive")).await;
    assert_eq!(s, 409, "an upload in progress keeps it");

    aws_ok(cli(&[
        "s3api",
        "abort-multipart-upload",
        "--bucket",
        "archive",
        "--key",
        "big.bin",
        "--upload-id",
        upload,
    ]));
    let (s, v) = admin_delete(&gw, &format!("/buckets/{owner}/archive")).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = admin_get(&gw, &format!("/buckets/{owner}/archive")).await;
    assert_eq!(s, 404);
    let (s, _) = demo_admin(
        &gw,
        "POST",
        &format!("/buckets/{owner}/main/delete"),
        Some(json!({"keys": []})),
    )
    .await;
    assert_eq!(s, 400);
}

async fn admin_get(gw: &Gateway, path: &str) -> (u16, Value) {
    demo_admin(gw, "GET", path, None).await
}

async fn admin_delete(gw: &Gateway, path: &str) -> (u16, Value) {
    demo_admin(gw, "DELETE", path, None).await
}

async fn issue(gw: &Gateway, body: Value) -> (u16, Value) {
    demo_admin(gw, "POST", "/presigned-urls", Some(body)).await
}

/// Presigned URLs work with no other credential until they expire, and the
/// live ones are listed and counted; reconcile restates a key's usage.
async fn presigned_urls_stats_and_reconcile(redis: bool) {
    let Shipped { gw, data, _redis } = shipped(redis);
    let endpoint = gw.url("");
    let StorageKey { owner, id, secret } = storage_key(&gw, "Eve", "main").await;
    let file = data.path().join("p.txt");
    std::fs::write(&file, "hello").unwrap();
    aws_ok(aws(
        &endpoint,
        &id,
        &secret,
        &[
            "s3api",
            "put-object",
            "--bucket",
            "main",
            "--key",
            "p q.txt",
            "--body",
            file.to_str().unwrap(),
        ],
    ));

    let presign = |method: &str, key: &str, expires: u64| json!({"owner_id": owner, "bucket_name": "main", "object_key": key, "method": method, "expires_in": expires});
    let (s, get) = issue(&gw, presign("GET", "p q.txt", 60)).await;
    assert_eq!(s, 201, "{get}");
    let url = get["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{endpoint}/main/p%20q.txt?X-Amz-Algorithm=")),
        "{url}"
    );
    let resp = client().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.text().await.unwrap(),
        "hello",
        "no other credential needed"
    );

    let (_, put) = issue(&gw, presign("PUT", "up.txt", 60)).await;
    let resp = client()
        .put(put["url"].as_str().unwrap())
        .body("xyz")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let (s, info) = admin_get(&gw, &format!("/buckets/{owner}/main/objects/up.txt")).await;
    assert_eq!((s, info["size"].as_u64()), (200, Some(3)));
    let (_, k) = admin_get(&gw, &format!("/keys/{owner}")).await;
    assert_eq!(
        k["used"], 8,
        "a presigned PUT counts against the owner's quota: {k}"
    );

    let (_, short) = issue(&gw, presign("GET", "p q.txt", 1)).await;
    let (_, del) = issue(&gw, presign("DELETE", "up.txt", 60)).await;
    let resp = client()
        .delete(del["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let (_, k) = admin_get(&gw, &format!("/keys/{owner}")).await;
    assert_eq!(k["used"], 5, "a presigned DELETE gives the bytes back: {k}");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let resp = client()
        .get(short["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "expired");
    let (_, listed) = admin_get(&gw, "/presigned-urls").await;
    let mut live: Vec<(String, String)> = listed["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["method"].as_str().unwrap().into(),
                u["object_key"].as_str().unwrap().into(),
            )
        })
        .collect();
    let created: Vec<&str> = listed["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["created_at"].as_str().unwrap())
        .collect();
    assert!(
        created.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {listed}"
    );
    live.sort();
    assert_eq!(
        live,
        [
            ("DELETE".into(), "up.txt".into()),
            ("GET".into(), "p q.txt".into()),
            ("PUT".into(), "up.txt".into()),
        ],
        "the expired one gone: {listed}"
    );
    assert_eq!(listed["urls"][0]["owner_id"], owner.as_str());

    for (body, field) in [
        (presign("GET", "p q.txt", 0), "expires_in"),
        (presign("GET", "p q.txt", 604_801), "expires_in"),
        (presign("POST", "p q.txt", 60), "method"),
        (
            json!({"owner_id": owner, "bucket_name": "nope", "object_key": "a", "method": "GET", "expires_in": 60}),
            "bucket_name",
        ),
        (
            json!({"owner_id": owner, "bucket_name": "main", "object_key": "", "method": "GET", "expires_in": 60}),
            "object_key",
        ),
    ] {
        let (s, v) = demo_admin(&gw, "POST", "/presigned-urls", Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(field),
            "{body}: {v}"
        );
    }

    let (s, stats) = admin_get(&gw, "/stats").await;
    assert_eq!(s, 200, "{stats}");
    assert_eq!(stats["active_presigned_urls"], 3, "{stats}");
    assert_eq!(stats["credentials"], 2, "the demo key's and Eve's: {stats}");
    assert_eq!(stats["keys"]["storage"], 2, "{stats}");
    assert_eq!(stats["keys"]["image"], 1, "{stats}");
    let (_, buckets) = admin_get(&gw, "/buckets").await;
    let (n, bytes) = buckets["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .fold((0, 0), |(n, b), x| {
            (
                n + x["object_count"].as_u64().unwrap(),
                b + x["total_size"].as_u64().unwrap(),
            )
        });
    assert_eq!(
        (stats["objects"].as_u64(), stats["total_storage"].as_u64()),
        (Some(n), Some(bytes))
    );
    assert_eq!(
        stats["buckets"].as_u64(),
        Some(buckets["buckets"].as_array().unwrap().len() as u64)
    );

    let (s, r) = demo_admin(&gw, "POST", &format!("/keys/{owner}/reconcile"), None).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (r["used"].as_u64(), r["objects"].as_u64()),
        (Some(5), Some(1)),
        "{r}"
    );
}
