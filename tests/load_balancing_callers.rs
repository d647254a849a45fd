//! The pool's rules beyond proxied routes: the image route's Ark calls and
//! the storage backend's calls go around a dead endpoint and hash on the
//! key; a reload that changes a pool keeps the state of the endpoints it
//! keeps.

mod common;

use std::time::{Duration, Instant};

use common::flaky::{endpoints, Flaky};
use common::s3::{Backend, StorageGateway};
use common::{client, free_port, header, images, Gateway};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn ark_calls_go_around_a_dead_endpoint() {
    let dead = free_port();
    for pool in [
        "    outlier: {enabled: false}\n",
        "    balance: consistent_hash\n    hash_on: key\n    outlier: {enabled: false}\n",
    ] {
        let (yaml, sim) = images::config("", "", 1000);
        let one = format!("    endpoints: [{{address: '127.0.0.1:{sim}'}}]\n");
        assert!(yaml.contains(&one));
        let yaml = yaml.replace(
            &one,
            &format!("    endpoints: [{{address: '127.0.0.1:{dead}'}}, {{address: '127.0.0.1:{sim}'}}]\n{pool}"),
        );
        let gw = Gateway::with(&yaml);
        common::wait_for_port(sim);
        let http = client();
        for i in 0..10 {
            let r = http
                .post(gw.url("/v1/images/generations"))
                .bearer_auth(images::KEY)
                .json(&json!({"model": "seedream-4.5", "prompt": format!("a cat {i}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{pool}: {}", r.text().await.unwrap());
        }
        let errors = gw.metric(&format!(
            "kikaku_upstream_endpoint_errors_total{{endpoint=\"127.0.0.1:{dead}\",kind=\"connect\",upstream=\"ark\"}}"
        ));
        let retries =
            gw.metric("kikaku_upstream_retries_total{reason=\"connect\",upstream=\"ark\"}");
        eprintln!("{pool}: {errors} connect failures, {retries} retries");
        assert_eq!(errors, retries);
        if !pool.contains("hash_on") {
            // In turn, the dead one is met.
            assert!(errors >= 1.0);
        } else {
            // One key, one place on the ring: every call or none meets it.
            assert!(errors == 0.0 || errors == 10.0, "{errors}");
        }
    }
}

#[test]
fn storage_calls_go_around_a_dead_endpoint() {
    let g = StorageGateway::start_pool(
        Backend::Embedded,
        &[free_port()],
        // Passive health as shipped: the dead one is ejected after five
        // refusals, each retried elsewhere.
        "    balance: consistent_hash\n    hash_on: key\n",
    );
    let out = g.scenario("basic");
    assert!(out.contains("scenario basic: ok"), "{out}");
    let out = g.scenario("multipart");
    assert!(out.contains("scenario multipart: ok"), "{out}");
    let retries =
        g.gw.metric("kikaku_upstream_retries_total{reason=\"connect\",upstream=\"s3\"}");
    assert!(retries >= 1.0, "{retries}");
}

fn pool_config(ups: &[&Flaky], extra: &str) -> String {
    format!(
        "{}upstreams:\n  pool:\n{}    outlier: {{consecutive_failures: 2, base_ejection_ms: 3000}}\n    retry: {{retries: 0}}\n{extra}routes:\n  - name: open\n    match: {{path_prefix: /}}\n    upstream: pool\n",
        header(),
        endpoints(ups)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_keeps_the_state_of_the_endpoints_it_keeps() {
    let [a, b, c] = Flaky::several(["a", "b", "c"]).await;
    let gw = Gateway::start(&pool_config(&[&a, &b], ""));
    let http = client();
    a.answer(503);
    while a.hits() < 2 {
        http.get(gw.url("/x")).send().await.unwrap();
    }
    let ejected = Instant::now();
    a.answer(200);
    // The pool changes (an endpoint more, other timeouts): a stays ejected.
    gw.write_config(&pool_config(
        &[&a, &b, &c],
        "    timeouts: {connect_ms: 1000, read_ms: 5000, write_ms: 5000}\n",
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.hits() == 0 {
        http.get(gw.url("/x")).send().await.unwrap();
        assert!(Instant::now() < deadline, "the reload did not take");
    }
    let a_before = a.hits();
    while ejected.elapsed() < Duration::from_millis(2700) {
        let r = http.get(gw.url("/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(a.hits(), a_before, "a was sent requests while ejected");
    let readyz = common::json_at(&gw.admin_url("/readyz")).await;
    assert_eq!(readyz["upstreams"]["pool"]["endpoints"][a.address()], false);
    assert_eq!(readyz["upstreams"]["pool"]["endpoints"][c.address()], true);
    // And it comes back when its time is up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..30 {
        http.get(gw.url("/x")).send().await.unwrap();
    }
    assert!(a.hits() > a_before);
    let series = format!(
        "kikaku_upstream_endpoint_ejections_total{{endpoint=\"{}\",upstream=\"pool\"}}",
        a.address()
    );
    assert_eq!(gw.metric(&series), 1.0);
}
