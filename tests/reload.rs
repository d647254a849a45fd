//! Hot reload: on SIGHUP and on file change; a broken file is rejected and
//! counted while the old snapshot keeps serving; no request fails during
//! reloads under load.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::upstream::Upstream;
use common::*;

const FAST_KEY: &str = "kikaku_test_fast";

/// Config "A" or "B": same shape, different `/which` message and an extra key in B.
fn config(which: &str, upstream: &str, watch_ms: u64) -> String {
    let extra_key = if which == "B" {
        "  - {key: kikaku_only_in_b, owner: B}\n"
    } else {
        ""
    };
    format!(
        "{}upstreams:\n  echo:\n    endpoints: [{{address: '{upstream}'}}]\nroutes:\n{}  - name: which\n    match: {{path_prefix: /which}}\n    filters: [{{request_id: {{}}}}]\n    handler: {{type: not_implemented, message: 'config {which}'}}\n{}{extra_key}",
        header().replace("watch_interval_ms: 200", &format!("watch_interval_ms: {watch_ms}")),
        authed_route("images", "/v1", "image", "upstream: echo"),
        test_keys(),
    )
}

/// Valid YAML, invalid config: reload must refuse it.
fn broken(upstream: &str) -> String {
    config("A", upstream, 200).replace("rate_limit: {}", "rate_limit: {per_minute: 0}")
}

async fn which(gw: &Gateway) -> String {
    let r = client().get(gw.url("/which")).send().await.unwrap();
    let b: serde_json::Value = r.json().await.unwrap();
    b["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn wait_for(gw: &Gateway, want: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if which(gw).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads() {
    let up = Upstream::start("u").await;
    let gw = Gateway::start(&config("A", &up.address(), 0));
    assert_eq!(which(&gw).await, "config A");
    gw.write_config(&config("B", &up.address(), 0));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        which(&gw).await,
        "config A",
        "watching is off: only SIGHUP reloads"
    );
    gw.signal("HUP");
    assert!(wait_for(&gw, "config B").await, "{}", gw.stderr());
    assert_eq!(
        gw.wait_metric("kikaku_config_reloads_total{result=\"ok\"}", 1.0),
        1.0
    );
    assert_eq!(gw.wait_metric("kikaku_config_generation", 2.0), 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn file_change_reloads_and_a_broken_file_keeps_the_old_snapshot() {
    let up = Upstream::start("u").await;
    let gw = Gateway::start(&config("A", &up.address(), 100));
    let b_key = || async {
        client()
            .get(gw.url("/v1/echo"))
            .header("authorization", bearer("kikaku_only_in_b"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(b_key().await, 401);

    gw.write_config(&config("B", &up.address(), 100));
    assert!(wait_for(&gw, "config B").await, "{}", gw.stderr());
    assert_eq!(b_key().await, 200, "a key added by the reload works");

    gw.write_config(&broken(&up.address()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.metric("kikaku_config_reloads_total{result=\"error\"}") < 1.0 {
        assert!(Instant::now() < deadline, "broken reload not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        which(&gw).await,
        "config B",
        "the old snapshot keeps serving"
    );
    assert_eq!(b_key().await, 200);
    assert!(
        gw.stderr()
            .contains("routes[0].filters[3].rate_limit.per_minute: must be > 0"),
        "{}",
        gw.stderr()
    );

    gw.write_config(&config("A", &up.address(), 100));
    assert!(wait_for(&gw, "config A").await);
    assert_eq!(
        b_key().await,
        401,
        "a key removed by the reload stops working"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_request_fails_during_reloads_under_load() {
    let up = Upstream::start("u").await;
    let addr = up.address();
    let gw = Arc::new(Gateway::start(&config("A", &addr, 50)));
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (gw, stop, ok) = (gw.clone(), stop.clone(), ok.clone());
        clients.push(tokio::spawn(async move {
            let http = client();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if c % 2 == 0 {
                    match http
                        .get(gw.url("/v1/echo"))
                        .header("authorization", bearer(FAST_KEY))
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 200 => match r.json::<serde_json::Value>().await {
                            Ok(b) if b["server"] == "u" => {}
                            other => failures.push(format!("echo body: {other:?}")),
                        },
                        other => failures.push(format!("echo: {other:?}")),
                    }
                } else {
                    match http.get(gw.url("/which")).send().await {
                        Ok(r) if r.status() == 501 => match r.json::<serde_json::Value>().await {
                            Ok(b)
                                if b["error"]["message"] == "config A"
                                    || b["error"]["message"] == "config B" => {}
                            other => failures.push(format!("which body: {other:?}")),
                        },
                        other => failures.push(format!("which: {other:?}")),
                    }
                }
                ok.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    let files = [
        config("A", &addr, 50),
        config("B", &addr, 50),
        broken(&addr),
    ];
    for i in 0..20 {
        gw.write_config(&files[i % 3]);
        if i % 2 == 1 {
            gw.signal("HUP");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.unwrap());
    }
    let total = ok.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(total > 100, "only {total} requests ran");
    let good = gw.metric("kikaku_config_reloads_total{result=\"ok\"}");
    let bad = gw.metric("kikaku_config_reloads_total{result=\"error\"}");
    assert!(good >= 10.0 && bad >= 5.0, "reloads ok={good} error={bad}");
    eprintln!("{total} requests, 0 failed, reloads ok={good} error={bad}");
}
