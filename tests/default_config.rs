//! `conf/kikaku.yaml` as shipped: the seed's eight curl examples work out of
//! the box with the demo key, offline, against the in-process simulator.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn the_eight_examples_work_on_the_shipped_config() {
    let (public, admin, sim) = (free_port(), free_port(), free_port());
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/kikaku.yaml"),
        &[
            ("KIKAKU_HTTP_ADDR", format!("127.0.0.1:{public}")),
            ("KIKAKU_ADMIN_ADDR", format!("127.0.0.1:{admin}")),
            ("KIKAKU_SIM_ARK_ADDR", format!("127.0.0.1:{sim}")),
            ("KIKAKU_DATA_DIR", data.path().display().to_string()),
            ("KIKAKU_ACCESS_LOG", "off".into()),
        ],
        public,
        admin,
    );
    wait_for_port(sim);
    let examples = seed_examples();
    let http = client();
    for (i, (body, want)) in examples.into_iter().enumerate() {
        let r = http
            .post(gw.url("/v1/images/generations"))
            .header("authorization", "Bearer kikaku_demo_key")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "example {}", i + 1);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["usage"]["generated_images"],
            want as u64,
            "example {}: {v}",
            i + 1
        );
    }
    let usage: Value = http
        .get(gw.url("/v1/usage"))
        .header("authorization", "Bearer kikaku_demo_key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["used_count"], 21);
    assert_eq!(usage["quota_limit"], 1000);
    // The demo key's 10 requests per minute: this was the 9th; the 11th is refused.
    let status = |r: reqwest::Response| r.status().as_u16();
    let next = || {
        http.get(gw.url("/v1/logs"))
            .header("authorization", "Bearer kikaku_demo_key")
            .send()
    };
    assert_eq!(status(next().await.unwrap()), 200);
    assert_eq!(status(next().await.unwrap()), 429);
}
