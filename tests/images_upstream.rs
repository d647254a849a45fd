//! The image route's upstream connections, against an Ark stand-in that
//! this test controls at the socket: a pooled connection Ark closed under a
//! request is retried on a fresh one, and `keepalive` on reuses one
//! connection while off opens one per call.

mod common;

use common::images::{ARK_KEY, KEY};
use common::*;
use serde_json::{json, Value};

/// Read one request (its head, then Content-Length bytes of body) off
/// `sock`, keeping what follows in `buf`; the head, lowercased. `None` once
/// the connection ends.
async fn read_request(sock: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= i + 4 + len {
                buf.drain(..i + 4 + len);
                return Some(head);
            }
        }
        let mut chunk = [0u8; 4096];
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A gateway whose image route calls the Ark stand-in on `port`, with
/// `upstream_extra` (YAML flow mapping entries) added to its upstream.
fn stand_in_gateway(port: u16, upstream_extra: &str) -> Gateway {
    let extra = if upstream_extra.is_empty() {
        String::new()
    } else {
        format!("    {upstream_extra}\n")
    };
    // One worker thread: each thread keeps its own pool of Ark connections,
    // and these tests count the connections of one pool.
    let header = header().replace("threads: 2", "threads: 1");
    Gateway::start(&format!(
        "{header}upstreams:\n  ark:\n    endpoints: [{{address: '127.0.0.1:{port}'}}]\n{extra}routes:\n  - name: images\n    match: {{methods: [POST], path_prefix: /v1/images/generations}}\n    filters: [{{request_id: {{}}}}, {{key_auth: {{}}}}, {{key_type: {{require: image}}}}]\n    handler: {{type: image_generation, upstream: ark, api_key: {ARK_KEY}}}\nkeys:\n  - {{key: {KEY}, owner: Img Tester, quota: 100, rate_limit_per_minute: 100000}}\n"
    ))
}

async fn post_a_cat(gw: &Gateway) -> reqwest::Response {
    post_a_cat_with(&client(), gw).await
}

/// The same on `c`'s connections (one kept-alive connection for calls in turn).
async fn post_a_cat_with(c: &reqwest::Client, gw: &Gateway) -> reqwest::Response {
    let body = json!({"model": "seedream-4.0", "prompt": "a cat", "size": "1K"}).to_string();
    c.post(gw.url("/v1/images/generations"))
        .header("authorization", bearer(KEY))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Ark's answer with one image, as raw HTTP/1.1.
fn one_image_answer() -> String {
    let body = json!({
        "model": "seedream-4-0-250828",
        "created": 1_700_000_000,
        "data": [{"url": "http://127.0.0.1/1.jpeg", "size": "1024x1024"}],
        "usage": {"generated_images": 1, "output_tokens": 4096, "total_tokens": 4096}
    })
    .to_string();
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// An Ark stand-in that answers the first request on each connection and
/// keeps it open, then closes it on the second request without answering:
/// a server that dropped an idle keep-alive connection just as the gateway
/// reused it. Counts connections and answers.
async fn first_request_only_upstream() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let answered = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = answered.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if read_request(&mut sock, &mut buf).await.is_none() {
                    return;
                }
                // Counted before the answer goes out: the gateway may pass it
                // on, and the test read the count, before this task runs again.
                counter.fetch_add(1, Ordering::SeqCst);
                if sock.write_all(one_image_answer().as_bytes()).await.is_err() {
                    return;
                }
                // The next request: drop the connection, no answer.
                let _ = read_request(&mut sock, &mut buf).await;
            });
        }
    });
    (port, answered)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pooled_upstream_connection_closed_under_a_request_is_retried_on_a_new_one() {
    let (port, answered) = first_request_only_upstream().await;
    let gw = stand_in_gateway(port, "");
    for i in 0..3 {
        let r = post_a_cat(&gw).await;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "request {i}: {v}");
        assert_eq!(v["data"][0]["url"], "http://127.0.0.1/1.jpeg", "{v}");
    }
    // Each later call found its pooled connection dropped and went again on
    // a new one: three answers, none lost.
    assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 3);
}

/// An Ark stand-in that answers every request on a connection and leaves the
/// connection open; it counts connections and keeps each request's head.
async fn keep_open_upstream() -> (
    u16,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let conns = std::sync::Arc::new(AtomicUsize::new(0));
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, h) = (conns.clone(), heads.clone());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let h = h.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(head) = read_request(&mut sock, &mut buf).await {
                    h.lock().unwrap().push(head);
                    if sock.write_all(one_image_answer().as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, conns, heads)
}

#[tokio::test(flavor = "multi_thread")]
async fn ark_keepalive_on_reuses_one_connection_and_off_opens_one_per_call() {
    for keepalive in [true, false] {
        let (port, conns, heads) = keep_open_upstream().await;
        let gw = stand_in_gateway(port, &format!("keepalive: {{enabled: {keepalive}}}"));
        // One client connection: one worker thread serves all three calls
        // (each thread keeps its own pool of Ark connections, and with
        // `server.reuse_port` a new client connection may land on either).
        let c = client();
        for i in 0..3 {
            let r = post_a_cat_with(&c, &gw).await;
            assert_eq!(
                r.status().as_u16(),
                200,
                "keepalive {keepalive}, request {i}"
            );
            // Read whole, the client connection goes back to reqwest's pool.
            r.bytes().await.unwrap();
        }
        let heads = heads.lock().unwrap().clone();
        assert_eq!(heads.len(), 3, "{heads:?}");
        let closing = heads
            .iter()
            .filter(|h| h.contains("\r\nconnection: close"))
            .count();
        let n = conns.load(std::sync::atomic::Ordering::SeqCst);
        if keepalive {
            assert_eq!((n, closing), (1, 0), "one pooled connection: {heads:?}");
        } else {
            assert_eq!((n, closing), (3, 3), "a connection per call: {heads:?}");
        }
    }
}

/// Ark over HTTPS as its endpoint serves it, HTTP/2 by ALPN: the gateway
/// speaks HTTP/2 to it (the default `tls.http2`), or HTTP/1.1 when told
/// not to; whole answers and streamed ones come back either way.
#[tokio::test(flavor = "multi_thread")]
async fn ark_over_tls_is_called_over_http2_when_it_offers_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = common::tls::Ca::new(d);
    let leaf = ca.leaf(d, "ark", &["ark.test"], -1, 365);
    for (http2, want) in [("", "HTTP/2.0"), (", http2: false", "HTTP/1.1")] {
        let sim = free_port();
        let header = header().replace(
            "watch_interval_ms: 200}",
            &format!("watch_interval_ms: 200, ca_file: '{}'}}", ca.file.display()),
        );
        let gw = Gateway::start(&format!(
            "{header}simulators:\n  ark: {{listen: '127.0.0.1:{sim}', api_key: {ARK_KEY}, tls_cert_file: '{}', tls_key_file: '{}'}}\nupstreams:\n  ark:\n    endpoints: [{{address: '127.0.0.1:{sim}'}}]\n    tls: {{sni: ark.test{http2}}}\nroutes:\n  - name: images\n    match: {{methods: [POST], path_prefix: /v1/images/generations}}\n    filters: [{{request_id: {{}}}}, {{key_auth: {{}}}}, {{key_type: {{require: image}}}}]\n    handler: {{type: image_generation, upstream: ark, api_key: {ARK_KEY}}}\nkeys:\n  - {{key: {KEY}, owner: Img Tester, quota: 100, rate_limit_per_minute: 100000}}\n",
            leaf.cert.display(),
            leaf.key.display()
        ));
        wait_for_port(sim);
        let r = post_a_cat(&gw).await;
        assert_eq!(r.status(), 200, "{want}: {}", r.text().await.unwrap());
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["data"].as_array().map(Vec::len), Some(1), "{v}");
        // Streamed: two images, then completed.
        let body = json!({"model": "seedream-4.0", "prompt": "two cats", "size": "1K", "n": 2, "stream": true});
        let text = client()
            .post(gw.url("/v1/images/generations"))
            .header("authorization", bearer(KEY))
            .json(&body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(
            text.matches("event: image_generation.partial_succeeded")
                .count(),
            2,
            "{text}"
        );
        assert!(text.contains("image_generation.completed"), "{text}");
        // What the simulator was asked in.
        let pem = std::fs::read(&ca.file).unwrap();
        let version = reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .resolve("ark.test", ([127, 0, 0, 1], sim).into())
            .build()
            .unwrap()
            .get(format!("https://ark.test:{sim}/_sim/last-version"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(version, want);
    }
}
