//! `POST /api/file-url-upload` cannot be turned against the host (DESIGN
//! §6): 36 payloads — loopback, private, link-local, CGNAT, multicast,
//! unspecified, metadata, IPv4-mapped / NAT64 / IPv4-compatible IPv6, the
//! decimal, octal, hex and short IPv4 forms, other schemes, credentials,
//! redirects to any of them, too many redirects — are refused with 400 and
//! their reason, nothing is stored, and a listener on 127.0.0.1 records
//! that no connection was made. The one allowed origin is 127.0.0.5
//! (`uploads.url_fetch.allow`); from it, fetches work, redirects are
//! followed up to 5, and the size cap and timeout hold while streaming.

mod common;

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::uploads::{self as up, origin, JPEG, KEY};
use common::*;
use serde_json::json;

/// Counts the connections made to it (the address fetches must never reach).
fn recorder() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            h.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    (port, hits)
}

async fn url_upload(gw: &Gateway, file_url: &str) -> (u16, serde_json::Value) {
    up::post_json(
        gw,
        "/api/file-url-upload",
        KEY,
        &json!({"fileUrl": file_url, "uploadPath": "downloads", "fileName": null}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_urls_are_400_with_the_reason_and_never_connected_to() {
    let (p, hits) = recorder();
    let o = origin();
    let u = up::start(&[("KIKAKU_URL_FETCH_ALLOW", "127.0.0.5".into())]);
    let gw = &u.gw;
    let via = |to: &str| format!("http://127.0.0.5:{o}/redirect?to={to}");
    let payloads: Vec<(String, &str)> = vec![
        (format!("http://127.0.0.1:{p}/"), "loopback"),
        (format!("http://localhost:{p}/"), "own host"),
        (format!("http://LOCALHOST.:{p}/"), "own host"),
        (format!("http://[::1]:{p}/"), "loopback"),
        (format!("http://2130706433:{p}/"), "loopback"),
        (format!("http://0x7f000001:{p}/"), "loopback"),
        (format!("http://0177.0.0.1:{p}/"), "loopback"),
        (format!("http://0x7f.0.0.1:{p}/"), "loopback"),
        (format!("http://127.1:{p}/"), "loopback"),
        (format!("http://127.0.1:{p}/"), "loopback"),
        (format!("http://0:{p}/"), "unspecified"),
        (format!("http://0.0.0.0:{p}/"), "unspecified"),
        (format!("http://[::]:{p}/"), "unspecified"),
        (format!("http://[::ffff:127.0.0.1]:{p}/"), "IPv4-mapped"),
        (format!("http://[::ffff:7f00:1]:{p}/"), "IPv4-mapped"),
        (format!("http://[64:ff9b::7f00:1]:{p}/"), "NAT64"),
        (format!("http://[::127.0.0.1]:{p}/"), "IPv4-compatible"),
        (
            "http://169.254.169.254/latest/meta-data/".into(),
            "metadata",
        ),
        (
            "http://[fd00:ec2::254]/latest/meta-data/".into(),
            "unique local",
        ),
        (
            "http://metadata.google.internal/computeMetadata/v1/".into(),
            "metadata",
        ),
        (format!("http://10.0.0.1:{p}/"), "private"),
        (format!("http://172.16.0.1:{p}/"), "private"),
        (format!("http://192.168.1.1:{p}/"), "private"),
        (format!("http://100.64.0.1:{p}/"), "CGNAT"),
        (format!("http://224.0.0.1:{p}/"), "multicast"),
        (format!("http://[fe80::1]:{p}/"), "link-local"),
        (
            format!("ftp://127.0.0.5:{o}/file.jpg"),
            "only http and https",
        ),
        ("file:///etc/passwd".into(), "only http and https"),
        (format!("gopher://127.0.0.1:{p}/"), "only http and https"),
        (
            format!("http://user:pw@127.0.0.5:{o}/file.jpg"),
            "user name or password",
        ),
        (via(&format!("http://127.0.0.1:{p}/")), "a redirect to"),
        (via(&format!("http://localhost:{p}/")), "a redirect to"),
        (via(&format!("http://2130706433:{p}/")), "a redirect to"),
        (via(&format!("http://[::1]:{p}/")), "a redirect to"),
        (
            format!("http://127.0.0.5:{o}/chain/6"),
            "more than 5 redirects",
        ),
        ("not a url at all".into(), "not a URL"),
    ];
    assert!(payloads.len() >= 25);
    for (url, why) in &payloads {
        let (st, v) = url_upload(gw, url).await;
        assert_eq!(st, 400, "{url}: {v}");
        let msg = v["msg"].as_str().unwrap();
        assert!(msg.starts_with("fileUrl refused: "), "{url}: {msg}");
        assert!(msg.contains(why), "{url}: {msg} (wanted {why:?})");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no connection reached 127.0.0.1:{p}"
    );
    assert_eq!(up::used(gw, KEY).await, 0, "nothing charged");
    let listed = get_json(&gw.url("/s3/files"), KEY).await;
    assert_eq!(listed["files"], json!([]), "nothing stored");
    eprintln!("{} payloads refused, 0 connections", payloads.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_allowed_origin_is_fetched_with_redirects_a_size_cap_and_a_timeout() {
    let o = origin();
    let u = up::start(&[
        ("KIKAKU_URL_FETCH_ALLOW", "127.0.0.5/32".into()),
        ("KIKAKU_URL_FETCH_MAX_BYTES", "1MB".into()),
        ("KIKAKU_URL_FETCH_TIMEOUT", "2s".into()),
    ]);
    let gw = &u.gw;
    let (st, v) = url_upload(gw, &format!("http://127.0.0.5:{o}/file.jpg")).await;
    assert_eq!(st, 200, "{v}");
    let d = &v["data"];
    assert_eq!(d["originalName"], "file.jpg");
    assert_eq!(d["mimeType"], "image/jpeg");
    assert!(d["fileName"].as_str().unwrap().ends_with(".jpg"), "{d}");
    let (_, _, got) = up::fetch(d["fileUrl"].as_str().unwrap(), &[]).await;
    assert_eq!(got, JPEG);
    // Five redirects are followed; the final URL names the file.
    let (st, v) = up::post_json(
        gw,
        "/api/file-url-upload",
        KEY,
        &json!({"fileUrl": format!("http://127.0.0.5:{o}/chain/5"), "uploadPath": "images", "fileName": "my-image.jpg"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["fileName"], "my-image.jpg");
    let used = up::used(gw, KEY).await;
    assert_eq!(used, 2 * JPEG.len() as u64);

    for path in ["/big", "/big-chunked"] {
        let (st, v) = url_upload(gw, &format!("http://127.0.0.5:{o}{path}")).await;
        assert_eq!(st, 413, "{path}: {v}");
        assert!(v["msg"].as_str().unwrap().contains("1000000"), "{v}");
    }
    let (st, v) = url_upload(gw, &format!("http://127.0.0.5:{o}/stall")).await;
    assert_eq!(st, 400, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("timed out"), "{v}");
    let (st, v) = url_upload(gw, &format!("http://127.0.0.5:{o}/missing")).await;
    assert_eq!(st, 400, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("404"), "{v}");
    assert_eq!(
        up::used(gw, KEY).await,
        used,
        "the refused fetches stored nothing"
    );
    let listed = get_json(&gw.url("/s3/files?prefix=kikaku-uploads/"), KEY).await;
    assert_eq!(listed["files"].as_array().unwrap().len(), 2, "{listed}");
}
