//! Upstream pools: round-robin and weights, health checks taking dead
//! endpoints out, and clear JSON errors for refused, failed and slow upstreams.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::upstream::Upstream;
use common::*;

fn gateway(upstream_yaml: &str) -> Gateway {
    Gateway::with(&format!(
        "upstreams:\n  pool:\n{upstream_yaml}routes:\n  - name: open\n    match: {{path_prefix: /}}\n    filters: [{{request_id: {{}}}}]\n    upstream: pool\n"
    ))
}

async fn servers(gw: &Gateway, n: usize) -> HashMap<String, usize> {
    let http = client();
    let mut seen = HashMap::new();
    for _ in 0..n {
        let r = http.get(gw.url("/echo")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let b: serde_json::Value = r.json().await.unwrap();
        *seen
            .entry(b["server"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_and_weights() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = gateway(&format!(
        "    endpoints: [{{address: '{}'}}, {{address: '{}'}}]\n",
        a.address(),
        b.address()
    ));
    let seen = servers(&gw, 40).await;
    assert_eq!(
        (seen["a"], seen["b"]),
        (20, 20),
        "plain round-robin alternates"
    );

    let gw = gateway(&format!(
        "    endpoints: [{{address: '{}', weight: 3}}, {{address: '{}', weight: 1}}]\n",
        a.address(),
        b.address()
    ));
    let seen = servers(&gw, 40).await;
    assert_eq!(
        (seen["a"], seen["b"]),
        (30, 10),
        "weighted round-robin is 3:1"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_checks_take_dead_endpoints_out() {
    let a = Upstream::start("a").await;
    let dead = free_port();
    let gw = gateway(&format!(
        "    endpoints: [{{address: '{}'}}, {{address: '127.0.0.1:{dead}'}}]\n    health_check: {{kind: http, path: /health, interval_seconds: 1, timeout_ms: 300}}\n",
        a.address()
    ));
    // Within a few check rounds every request goes to the live endpoint.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let http = client();
        let mut all_ok = true;
        for _ in 0..10 {
            let r = http.get(gw.url("/echo")).send().await.unwrap();
            all_ok &= r.status() == 200;
        }
        if all_ok {
            break;
        }
        assert!(Instant::now() < deadline, "dead endpoint never taken out");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_healthy_endpoint_is_503() {
    let dead = free_port();
    let gw = gateway(&format!(
        "    endpoints: [{{address: '127.0.0.1:{dead}'}}]\n    health_check: {{kind: tcp, interval_seconds: 1, timeout_ms: 200}}\n"
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = client().get(gw.url("/echo")).send().await.unwrap();
        let status = r.status().as_u16();
        let b: serde_json::Value = r.json().await.unwrap();
        if status == 503 {
            assert_eq!(b["error"]["code"], "ServiceUnavailable");
            assert!(b["error"]["message"].as_str().unwrap().contains("pool"));
            break;
        }
        assert_eq!(
            status, 502,
            "before the first check: connection refused is 502"
        );
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_is_502_and_slow_is_504() {
    let dead = free_port();
    let gw = gateway(&format!(
        "    endpoints: [{{address: '127.0.0.1:{dead}'}}]\n"
    ));
    let r = client().get(gw.url("/echo")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.headers().get("x-request-id").is_some());
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "BadGateway");

    let slow = Upstream::start("slow").await;
    let gw = gateway(&format!(
        "    endpoints: [{{address: '{}'}}]\n    timeouts: {{read_ms: 300}}\n",
        slow.address()
    ));
    let r = client().get(gw.url("/slow/2000")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "GatewayTimeout");
    let r = client().get(gw.url("/slow/10")).send().await.unwrap();
    assert_eq!(r.status(), 200, "fast enough requests pass");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_upstreams_use_sni_and_verify_certificates() {
    let (tls, pem) = common::upstream::start_tls("tls", "localhost").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let with = |server: &str, tls_yaml: &str| {
        let head = header().replace(
            "watch_interval_ms: 200}",
            &format!("watch_interval_ms: 200, {server}}}"),
        );
        Gateway::start(&format!(
            "{head}upstreams:\n  pool:\n    endpoints: [{{address: '{}'}}]\n    tls: {tls_yaml}\nroutes:\n  - name: open\n    match: {{path_prefix: /}}\n    upstream: pool\n",
            tls.address()
        ))
    };
    let status = |gw: Gateway| async move {
        client()
            .get(gw.url("/echo"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };

    // Unknown CA: refused (verification is on by default).
    assert_eq!(status(with("", "{sni: localhost}")).await, 502);
    // Trusted CA and the right name: served over TLS.
    let ca_line = format!("ca_file: '{}'", ca.display());
    let gw = with(&ca_line, "{sni: localhost}");
    let r = client().get(gw.url("/echo")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["server"], "tls");
    // The upstream offers h2 by ALPN: the gateway speaks it, unless told not to.
    assert_eq!(b["version"], "HTTP/2.0", "{b}");
    let gw = with(&ca_line, "{sni: localhost, http2: false}");
    let b: serde_json::Value = client()
        .get(gw.url("/echo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (b["server"].as_str(), b["version"].as_str()),
        (Some("tls"), Some("HTTP/1.1")),
        "{b}"
    );
    // Trusted CA but a name the certificate does not carry: refused.
    assert_eq!(status(with(&ca_line, "{sni: other.example}")).await, 502);
    // Explicitly unverified (test rigs only): served.
    assert_eq!(
        status(with("", "{sni: localhost, verify: false}")).await,
        200
    );
    // A plain-HTTP server posing as TLS: the handshake fails, 502.
    let plain = Upstream::start("plain").await;
    let gw = gateway(&format!(
        "    endpoints: [{{address: '{}'}}]\n    tls: {{sni: localhost}}\n",
        plain.address()
    ));
    assert_eq!(
        client().get(gw.url("/echo")).send().await.unwrap().status(),
        502
    );
}
