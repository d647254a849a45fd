//! Per-key rate limits are exact: the 11th request inside a minute at limit
//! 10 is refused, under concurrency too, and across a `kill -9` restart.

mod common;

use common::*;
use futures_util::future::join_all;

fn config() -> String {
    format!(
        "routes:\n{}{}",
        authed_route(
            "images",
            "/v1",
            "image",
            "handler: {type: not_implemented, message: 'counted, then refused'}"
        ),
        test_keys()
    )
}

async fn hit(gw: &Gateway, key: &str) -> reqwest::Response {
    client()
        .post(gw.url("/v1/images/generations"))
        .header("authorization", bearer(key))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn eleventh_request_in_a_minute_is_refused_with_headers() {
    let gw = Gateway::with(&config());
    for i in 0..10 {
        let r = hit(&gw, IMAGE_KEY).await;
        assert_eq!(
            r.status(),
            501,
            "request {i} passes the limiter (the handler answers 501)"
        );
        assert_eq!(r.headers()["x-ratelimit-limit"], "10");
        assert_eq!(
            r.headers()["x-ratelimit-remaining"],
            (9 - i).to_string().as_str()
        );
    }
    let r = hit(&gw, IMAGE_KEY).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let reset: u64 = r.headers()["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(reset, retry);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RateLimitExceeded");

    // Another key has its own budget; a key's own higher limit applies.
    assert_eq!(
        hit(&gw, "kikaku_test_fast").await.headers()["x-ratelimit-limit"],
        "100000"
    );
    let series = "kikaku_rejections_total{filter=\"rate_limit\",reason=\"rate_limited\"}";
    assert_eq!(gw.wait_metric(series, 1.0), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_admit_exactly_the_limit() {
    let gw = Gateway::with(&config());
    let results = join_all((0..60).map(|_| hit(&gw, IMAGE_KEY))).await;
    let passed = results.iter().filter(|r| r.status() == 501).count();
    let refused = results.iter().filter(|r| r.status() == 429).count();
    assert_eq!((passed, refused), (10, 50));
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_survive_kill_9() {
    let gw = Gateway::with(&config());
    for _ in 0..7 {
        assert_eq!(hit(&gw, IMAGE_KEY).await.status(), 501);
    }
    let gw = gw.kill9_and_restart();
    for _ in 0..3 {
        assert_eq!(hit(&gw, IMAGE_KEY).await.status(), 501);
    }
    assert_eq!(
        hit(&gw, IMAGE_KEY).await.status(),
        429,
        "the 11th in the minute, across a restart"
    );
}
