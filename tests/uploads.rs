//! The upload API (DESIGN §6, seed 003) on the shipped config, against the
//! real binary: stream and base64 uploads, their envelope, names and
//! overwrites, the file URLs (Range, ETag, HEAD, attachment), every error
//! with nothing stored, and expiry with the quota given back.

mod common;

use std::time::{Duration, Instant};

use common::admin::demo_admin;
use common::uploads::{self as up, file, text, KEY};
use common::*;
use serde_json::{json, Value};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0";

fn data(v: &Value) -> &Value {
    &v["data"]
}

fn s(v: &Value, k: &str) -> String {
    v["data"][k]
        .as_str()
        .unwrap_or_else(|| panic!("no {k}: {v}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_upload_answers_seed_003s_envelope_and_its_urls_serve_the_file() {
    let u = up::start(&[]);
    let gw = &u.gw;
    let body = b"hello, temporary world\n".repeat(100);
    // curl's order: the file first, its names after.
    let (status, v) = up::stream(
        gw,
        KEY,
        &[
            file("your-file.jpg", "image/jpeg", &body),
            text("uploadPath", "images/user-uploads"),
            text("fileName", "custom-name.jpg"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["msg"], "File uploaded successfully");
    let d = data(&v);
    assert_eq!(d["fileName"], "custom-name.jpg");
    assert_eq!(d["originalName"], "your-file.jpg");
    assert_eq!(d["fileSize"], body.len());
    assert_eq!(d["mimeType"], "image/jpeg");
    assert_eq!(d["uploadPath"], "images/user-uploads");
    assert!(s(&v, "fileId").starts_with("file_"));
    let file_url = s(&v, "fileUrl");
    let tenant = file_url.split('/').nth(4).unwrap().to_string();
    assert_eq!(
        file_url,
        gw.url(&format!(
            "/files/{tenant}/images/user-uploads/custom-name.jpg"
        ))
    );
    assert_eq!(
        s(&v, "downloadUrl"),
        gw.url(&format!("/download/{}", s(&v, "fileId")))
    );
    let t = |k| chrono::DateTime::parse_from_rfc3339(&s(&v, k)).unwrap();
    assert_eq!(
        t("expiresAt") - t("uploadTime"),
        chrono::Duration::days(3),
        "3 days"
    );
    assert_eq!(up::used(gw, KEY).await, body.len() as u64, "charged");

    // fileUrl: the bytes, the recorded type, an ETag, Range and HEAD.
    let (st, h, got) = up::fetch(&file_url, &[]).await;
    assert_eq!((st, got.as_slice()), (200, body.as_slice()));
    assert_eq!(h["content-type"], "image/jpeg");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["content-security-policy"], "sandbox");
    let etag = h["etag"].to_str().unwrap().to_string();
    let (st, h, got) = up::fetch(&file_url, &[("range", "bytes=6-15")]).await;
    assert_eq!((st, got.as_slice()), (206, &body[6..16]));
    assert_eq!(
        h["content-range"],
        format!("bytes 6-15/{}", body.len()).as_str()
    );
    let (st, _, _) = up::fetch(&file_url, &[("if-none-match", &etag)]).await;
    assert_eq!(st, 304);
    let head = client().head(&file_url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        body.len().to_string().as_str()
    );
    // downloadUrl: the same file, as an attachment.
    let (st, h, got) = up::fetch(&s(&v, "downloadUrl"), &[]).await;
    assert_eq!((st, got.len()), (200, body.len()));
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"custom-name.jpg\""),
        "{h:?}"
    );
    // No key needed; a wrong path or id is 404.
    for missing in [
        format!("/files/{tenant}/images/nope.jpg"),
        "/files/000000000000/images/user-uploads/custom-name.jpg".into(),
        "/download/file_doesnotexist".into(),
    ] {
        let (st, _, _) = up::fetch(&gw.url(&missing), &[]).await;
        assert_eq!(st, 404, "{missing}");
    }
    // It is in the key's storage, under the gateway's prefix.
    let listed = get_json(&gw.url("/s3/files?prefix=kikaku-uploads/"), KEY).await;
    assert_eq!(
        listed["files"][0]["key"],
        "kikaku-uploads/images/user-uploads/custom-name.jpg"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn names_overwrites_and_types() {
    let u = up::start(&[]);
    let gw = &u.gw;
    // Names first (Python requests' order), then an overwrite of the same
    // path and name: charged the difference, the old fileId is gone.
    let (st, first) = up::stream(
        gw,
        KEY,
        &[
            text("uploadPath", "docs"),
            text("fileName", "a.txt"),
            file("x.txt", "text/plain", &[b'1'; 300]),
        ],
    )
    .await;
    assert_eq!(st, 200, "{first}");
    let (st, second) = up::stream(
        gw,
        KEY,
        &[
            text("uploadPath", "/docs/"),
            text("fileName", "a.txt"),
            file("y.txt", "text/plain", &[b'2'; 120]),
        ],
    )
    .await;
    assert_eq!(st, 200, "{second}");
    assert_eq!(s(&second, "fileUrl"), s(&first, "fileUrl"), "the same path");
    assert_eq!(up::used(gw, KEY).await, 120, "charged the difference");
    let (st, _, got) = up::fetch(&s(&second, "fileUrl"), &[]).await;
    assert_eq!((st, got), (200, vec![b'2'; 120]));
    let (st, _, _) = up::fetch(&s(&first, "downloadUrl"), &[]).await;
    assert_eq!(st, 404, "the overwritten file's id is gone");

    // No fileName: a random name keeping the source's extension.
    let (st, v) = up::stream(gw, KEY, &[file("holiday.PNG", "image/png", PNG)]).await;
    assert_eq!(st, 200, "{v}");
    let name = s(&v, "fileName");
    assert!(name.ends_with(".png") && name.len() == 16, "{name}");
    assert_eq!(data(&v)["uploadPath"], "");
    assert!(s(&v, "fileUrl").ends_with(&format!("/{name}")));
    // A name that says nothing: the type comes from the content.
    let (st, v) = up::stream(
        gw,
        KEY,
        &[
            file("blob", "application/octet-stream", PNG),
            text("fileName", "picture"),
        ],
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(data(&v)["mimeType"], "image/png");
    let (_, h, _) = up::fetch(&s(&v, "fileUrl"), &[]).await;
    assert_eq!(h["content-type"], "image/png");

    // Base64: a data URL and plain base64, without a fileName.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(PNG);
    let (st, v) = up::post_json(
        gw,
        "/api/file-base64-upload",
        KEY,
        &json!({"base64Data": format!("data:image/png;base64,{b64}"), "uploadPath": "images", "fileName": "base64-image.png"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (data(&v)["fileSize"].as_u64(), data(&v)["mimeType"].as_str()),
        (Some(PNG.len() as u64), Some("image/png"))
    );
    let (_, _, got) = up::fetch(&s(&v, "fileUrl"), &[]).await;
    assert_eq!(got, PNG);
    let (st, v) = up::post_json(
        gw,
        "/api/file-base64-upload",
        KEY,
        &json!({"base64Data": b64, "uploadPath": "", "fileName": null}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(s(&v, "fileName").ends_with(".png"), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_has_its_status_and_nothing_is_stored() {
    let u = up::start(&[]);
    let gw = &u.gw;
    let (st, made) = demo_admin(
        gw,
        "POST",
        "/keys",
        Some(json!({"type": "storage", "owner": "Tiny", "quota": "1KiB"})),
    )
    .await;
    assert_eq!(st, 201, "{made}");
    let tiny = made["key"].as_str().unwrap().to_string();
    let cases: Vec<(u16, &str, reqwest::RequestBuilder)> = vec![
        (
            401,
            "API key",
            client().post(gw.url("/api/file-stream-upload")),
        ),
        (
            401,
            "",
            client()
                .post(gw.url("/api/file-base64-upload"))
                .header("authorization", bearer("kikaku_s3_not_a_key")),
        ),
        (
            403,
            "S3 Storage API key",
            client()
                .post(gw.url("/api/file-url-upload"))
                .header("authorization", bearer("kikaku_demo_key")),
        ),
        (
            405,
            "POST",
            client()
                .get(gw.url("/api/file-stream-upload"))
                .header("authorization", bearer(KEY)),
        ),
        (
            400,
            "multipart",
            client()
                .post(gw.url("/api/file-stream-upload"))
                .header("authorization", bearer(KEY))
                .body("not a form"),
        ),
        (
            400,
            "JSON",
            client()
                .post(gw.url("/api/file-base64-upload"))
                .header("authorization", bearer(KEY))
                .body("{nope"),
        ),
        (
            400,
            "base64Data is required",
            client()
                .post(gw.url("/api/file-base64-upload"))
                .header("authorization", bearer(KEY))
                .json(&json!({"uploadPath": "x"})),
        ),
        (
            400,
            "not valid base64",
            client()
                .post(gw.url("/api/file-base64-upload"))
                .header("authorization", bearer(KEY))
                .json(&json!({"base64Data": "%%%not base64%%%"})),
        ),
        (
            400,
            "fileUrl is required",
            client()
                .post(gw.url("/api/file-url-upload"))
                .header("authorization", bearer(KEY))
                .json(&json!({"uploadPath": "x"})),
        ),
        (
            413,
            "larger than 10000000",
            client()
                .post(gw.url("/api/file-base64-upload"))
                .header("authorization", bearer(KEY))
                .json(&json!({"base64Data": "A".repeat(14_000_000)})),
        ),
        (
            403,
            "quota",
            client()
                .post(gw.url("/api/file-base64-upload"))
                .header("authorization", bearer(&tiny))
                .json(&json!({"base64Data": "QUFB".repeat(1000)})),
        ),
    ];
    for (want, says, req) in cases {
        let (st, v) = up::answer(req.send().await.unwrap()).await;
        assert_eq!(st, want, "{v}");
        assert!(v["msg"].as_str().unwrap().contains(says), "{want}: {v}");
    }
    for (path, name, why) in [
        ("../etc", "a.txt", "uploadPath"),
        ("a//b", "a.txt", "uploadPath"),
        ("ok", "a/b.txt", "fileName"),
        ("ok", "..", "fileName"),
    ] {
        let (st, v) = up::stream(
            gw,
            KEY,
            &[
                file("f.txt", "text/plain", b"data"),
                text("uploadPath", path),
                text("fileName", name),
            ],
        )
        .await;
        assert_eq!(st, 400, "{path} {name}: {v}");
        assert!(v["msg"].as_str().unwrap().contains(why), "{v}");
    }
    let (st, v) = up::stream(gw, KEY, &[text("uploadPath", "x")]).await;
    assert_eq!(st, 400, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("no `file`"), "{v}");
    let (st, v) = up::stream(
        gw,
        KEY,
        &[file("a", "text/plain", b"1"), file("b", "text/plain", b"2")],
    )
    .await;
    assert_eq!(st, 400, "{v}");
    // A stream over the tiny quota: refused while it flows.
    let big = vec![7u8; 4096];
    let (st, v) = up::stream(
        gw,
        &tiny,
        &[file("big.bin", "application/octet-stream", &big)],
    )
    .await;
    assert_eq!(st, 403, "{v}");

    assert_eq!(up::used(gw, KEY).await, 0, "nothing charged");
    assert_eq!(up::used(gw, &tiny).await, 0);
    let listed = get_json(&gw.url("/s3/files"), KEY).await;
    assert_eq!(listed["files"], json!([]), "nothing stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn files_expire_their_urls_404_and_the_quota_comes_back() {
    let u = up::start(&[
        ("KIKAKU_UPLOAD_TTL", "2s".into()),
        ("KIKAKU_UPLOAD_SWEEP_INTERVAL", "200ms".into()),
    ]);
    let gw = &u.gw;
    // A file of the storage API (it does not expire) beside the uploads.
    up::keep(gw, KEY, 1000).await;
    let mut urls = Vec::new();
    for i in 0..3 {
        let (st, v) = up::stream(
            gw,
            KEY,
            &[file(&format!("t{i}.txt"), "text/plain", &[b't'; 500])],
        )
        .await;
        assert_eq!(st, 200, "{v}");
        urls.push(s(&v, "fileUrl"));
        urls.push(s(&v, "downloadUrl"));
    }
    assert_eq!(up::used(gw, KEY).await, 2500);
    for url in &urls {
        assert_eq!(up::fetch(url, &[]).await.0, 200);
    }
    let start = Instant::now();
    while up::used(gw, KEY).await != 1000 {
        assert!(start.elapsed() < Duration::from_secs(10), "never swept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for url in &urls {
        assert_eq!(up::fetch(url, &[]).await.0, 404, "{url}");
    }
    let listed = get_json(&gw.url("/s3/files"), KEY).await;
    let keys: Vec<&str> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["keep.txt"],
        "the uploads are deleted, the rest stays"
    );
    // The sweep ran here, once per file.
    assert_eq!(gw.metric("kikaku_uploads_expired_total"), 3.0);
    // Nothing more is given back later.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(up::used(gw, KEY).await, 1000);
}
