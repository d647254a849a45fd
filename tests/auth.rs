//! Key authentication and key-type routing against the real binary.

mod common;

use common::upstream::Upstream;
use common::*;
use serde_json::Value;

async fn gateway_with_echo() -> (Gateway, Upstream) {
    let up = Upstream::start("echo").await;
    let rest = format!(
        "upstreams:\n  echo:\n    endpoints: [{{address: '{}'}}]\nroutes:\n{}{}{}",
        up.address(),
        authed_route("images", "/v1", "image", "upstream: echo"),
        authed_route("storage", "/s3", "storage", "upstream: echo"),
        test_keys()
    );
    (Gateway::with(&rest), up)
}

async fn call(
    gw: &Gateway,
    path: &str,
    auth: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client().get(gw.url(path));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, headers, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_outcomes() {
    let (gw, up) = gateway_with_echo().await;

    let (s, h, b) = call(&gw, "/v1/echo", None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("Unauthorized"))
    );
    assert!(
        h.get("x-request-id").is_some(),
        "errors carry the request id"
    );

    let (s, _, b) = call(&gw, "/v1/echo", Some("Bearer kikaku_not_a_real_key")).await;
    assert_eq!(
        (s, b["error"]["message"].as_str()),
        (401, Some("Invalid API key."))
    );

    let (s, _, b) = call(&gw, "/v1/echo", Some(&bearer(SUSPENDED_KEY))).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("KeySuspended"))
    );

    let (s, _, b) = call(&gw, "/v1/echo", Some(&bearer(EXPIRED_KEY))).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("KeyExpired")));

    let (s, _, b) = call(&gw, "/v1/echo", Some(&bearer(STORAGE_KEY))).await;
    assert_eq!(s, 403);
    assert_eq!(
        b["error"]["message"],
        "You are logged in with an S3 Storage key. Please login with an AI Image API key (kikaku_xxx) to access this feature."
    );
    let (s, _, b) = call(&gw, "/s3/echo", Some(&bearer(IMAGE_KEY))).await;
    assert_eq!(s, 403);
    assert_eq!(
        b["error"]["message"],
        "You are logged in with an AI Image key. Please login with an S3 Storage API key (kikaku_s3_xxx) to access this feature."
    );
    assert_eq!(
        up.hits.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no refused request reached upstream"
    );

    let (s, h, b) = call(&gw, "/v1/echo?x=1", Some(&bearer(IMAGE_KEY))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["server"], "echo");
    assert_eq!(b["path"], "/v1/echo");
    assert_eq!(b["query"], "x=1");
    assert!(
        b["headers"].get("authorization").is_none(),
        "the customer key never goes upstream"
    );
    assert_eq!(b["headers"]["host"], up.address(), "Host is the upstream's");
    assert_eq!(
        b["headers"]["x-request-id"],
        h["x-request-id"].to_str().unwrap()
    );
    assert_eq!(b["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-ratelimit-limit"], "10");

    let (s, _, b) = call(&gw, "/s3/echo", Some(&bearer(STORAGE_KEY))).await;
    assert_eq!((s, b["server"].as_str()), (200, Some("echo")));
}

#[tokio::test(flavor = "multi_thread")]
async fn request_id_is_kept_when_sane() {
    let (gw, _up) = gateway_with_echo().await;
    let resp = client()
        .get(gw.url("/v1/echo"))
        .header("authorization", bearer(IMAGE_KEY))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-42");
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["headers"]["x-request-id"], "trace-42");
}

/// Raw bytes on a socket, so malformed requests reach the gateway as sent.
fn raw(port: u16, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_clear_errors() {
    let (gw, _up) = gateway_with_echo().await;

    for auth in [
        "kikaku_test_image_key",
        "Basic Zm9vOmJhcg==",
        "Bearer",
        "Bearer ",
        "Bearer kikaku_test_image_key trailing",
    ] {
        let r = raw(gw.public, format!("GET /v1/echo HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n").as_bytes());
        assert!(r.starts_with("HTTP/1.1 401"), "{auth:?} → {r}");
        assert!(r.contains("\"code\":\"Unauthorized\""), "{r}");
    }
    // Control and non-UTF-8 bytes: the HTTP parser itself refuses with 400,
    // or key_auth does with 401.
    for bad in [&b"Bearer \x7fkikaku"[..], b"Bearer \xff\xfe"] {
        let mut req = b"GET /v1/echo HTTP/1.1\r\nHost: x\r\nAuthorization: ".to_vec();
        req.extend_from_slice(bad);
        req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        let r = raw(gw.public, &req);
        assert!(
            r.starts_with("HTTP/1.1 401") || r.starts_with("HTTP/1.1 400"),
            "{r}"
        );
    }

    // Two Authorization headers.
    let r = raw(gw.public, format!("GET /v1/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {IMAGE_KEY}\r\nAuthorization: Bearer {IMAGE_KEY}\r\nConnection: close\r\n\r\n").as_bytes());
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");

    // 40 KiB of headers: over the 32 KiB default.
    let big = "a".repeat(40 * 1024);
    let r = raw(
        gw.public,
        format!("GET /v1/echo HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert!(r.starts_with("HTTP/1.1 431"), "{}", &r[..r.len().min(200)]);

    // 2 MiB of headers: past what the HTTP parser reads. A 4xx or a closed
    // connection is fine; a hang or a crash is not.
    let huge = "b".repeat(2 * 1024 * 1024);
    let r = raw(
        gw.public,
        format!("GET / HTTP/1.1\r\nHost: x\r\nX-Huge: {huge}\r\n\r\n").as_bytes(),
    );
    assert!(
        r.is_empty() || r.starts_with("HTTP/1.1 4"),
        "{}",
        &r[..r.len().min(200)]
    );

    // Unknown route: 404 JSON.
    let (s, h, b) = call(&gw, "/nowhere", None).await;
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("NotFound")));
    assert_eq!(h["content-type"], "application/json");

    // Dot segments never reach routing.
    let r = raw(
        gw.public,
        b"GET /v1/../s3/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");

    // Garbage instead of HTTP.
    let r = raw(gw.public, b"\x16\x03\x01\x02\x00garbage\r\n\r\n");
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 400"), "{r}");

    // Still alive and serving after all of it.
    let (s, _, _) = call(&gw, "/v1/echo", Some(&bearer(IMAGE_KEY))).await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_has_one_json_line_per_request_and_no_keys() {
    let (gw, _up) = gateway_with_echo().await;
    call(&gw, "/v1/echo", Some(&bearer(IMAGE_KEY))).await;
    call(&gw, "/v1/echo", Some("Bearer kikaku_wrong_secret_value")).await;
    call(&gw, "/nowhere", None).await;
    // Lines are written by a background thread after the answer is sent.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while gw.stdout().lines().count() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = gw.stdout();
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["route"], "images");
    assert!(lines[0]["key"].as_str().unwrap().starts_with("kikaku_~"));
    assert!(lines[0]["upstream_ms"].as_f64().unwrap() >= 0.0);
    assert!(lines[0]["total_ms"].as_f64().unwrap() >= lines[0]["upstream_ms"].as_f64().unwrap());
    assert_eq!(lines[1]["status"], 401);
    assert_eq!(lines[1]["rejected_by"], "key_auth");
    assert_eq!(lines[2]["status"], 404);
    for secret in [IMAGE_KEY, "kikaku_wrong_secret_value", "test_image_key"] {
        assert!(!out.contains(secret), "a key reached the access log");
        assert!(!gw.stderr().contains(secret), "a key reached the error log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ip_guard_cuts_floods_before_auth() {
    let gw = Gateway::with(&format!(
        "routes:\n  - name: guarded\n    match: {{path_prefix: /v1}}\n    filters: [{{ip_guard: {{per_second: 20}}}}, {{key_auth: {{}}}}]\n    handler: {{type: not_implemented, message: m}}\n{}",
        test_keys()
    ));
    let results = futures_util::future::join_all((0..100).map(|_| call(&gw, "/v1/x", None))).await;
    let limited = results.iter().filter(|(s, _, _)| *s == 429).count();
    let unauthorized = results.iter().filter(|(s, _, _)| *s == 401).count();
    assert_eq!(limited + unauthorized, 100);
    // The burst takes well under a second, but may straddle one boundary of
    // the guard's 1 s interval: at most two intervals' worth gets through.
    assert!(
        unauthorized <= 40 && limited >= 60,
        "401s {unauthorized}, 429s {limited}"
    );
    let (_, h, b) = results.iter().find(|(s, _, _)| *s == 429).unwrap();
    assert_eq!(b["error"]["code"], "TooManyRequests");
    assert_eq!(h["retry-after"], "1");
}
