//! Large uploads stream (DESIGN §6): a 1 GiB stream upload (the file
//! before its name, as curl sends it) and a 100 MB URL upload, each with
//! the gateway's peak RSS under 100 MiB — the embedded S3 backend, which
//! runs in the same process, included.

mod common;

use bytes::Bytes;
use common::admin::demo_admin;
use common::uploads::{self as up, origin};
use common::*;
use serde_json::json;

const MIB: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread")]
async fn a_1_gib_stream_and_a_100_mb_url_upload_stay_under_100_mib_of_rss() {
    let o = origin();
    let u = up::start(&[("KIKAKU_URL_FETCH_ALLOW", "127.0.0.5".into())]);
    let gw = &u.gw;
    let (st, made) = demo_admin(
        gw,
        "POST",
        "/keys",
        Some(json!({"type": "storage", "owner": "Big", "quota": "2GiB", "rate_limit_per_minute": 100})),
    )
    .await;
    assert_eq!(st, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_string();

    let size: u64 = 1 << 30;
    let boundary = "bigBoundary0123456789";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!(
        "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"fileName\"\r\n\r\nbig.bin\r\n--{boundary}--\r\n"
    );
    let chunk = Bytes::from(vec![b'z'; MIB as usize]);
    let pieces = std::iter::once(Bytes::from(head.clone()))
        .chain((0..size / MIB).map(move |_| chunk.clone()))
        .chain(std::iter::once(Bytes::from(tail.clone())));
    let total = head.len() as u64 + size + tail.len() as u64;
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(
        pieces.map(Ok::<Bytes, std::io::Error>),
    ));
    let started = std::time::Instant::now();
    let resp = client()
        .post(gw.url("/api/file-stream-upload"))
        .header("authorization", bearer(&key))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header("content-length", total.to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    let (st, v) = up::answer(resp).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["fileSize"], size);
    let stream_secs = started.elapsed().as_secs_f64();
    let rss_stream = gw.peak_rss_kib();

    let started = std::time::Instant::now();
    let (st, v) = up::post_json(
        gw,
        "/api/file-url-upload",
        &key,
        &json!({"fileUrl": format!("http://127.0.0.5:{o}/bytes/100000000"), "uploadPath": "", "fileName": "hundred.bin"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["fileSize"], 100_000_000);
    let url_secs = started.elapsed().as_secs_f64();
    let rss = gw.peak_rss_kib();
    assert_eq!(up::used(gw, &key).await, size + 100_000_000);
    let head = client()
        .head(v["data"]["fileUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["content-length"], "100000000");
    eprintln!(
        "1 GiB stream in {stream_secs:.1} s (peak RSS {} MiB), 100 MB URL in {url_secs:.1} s (peak RSS {} MiB)",
        rss_stream / 1024,
        rss / 1024
    );
    assert!(rss < 100 * 1024, "peak RSS {rss} KiB");
}
