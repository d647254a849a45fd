//! One behaviour suite, two state backends (DESIGN §8): every test here runs
//! on the embedded journal, on one Redis, and on a 3-master Redis Cluster. The Redis-only part checks what a
//! single node cannot show: several gateway instances acting as one.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::redis::{redis_state, RedisCluster, RedisServer};
use common::*;
use futures_util::future::join_all;
use serde_json::{json, Value};

const KEY: &str = "kikaku_shared_key";

/// The `state:` section of one backend (the Redis server lives as long as the test).
enum Backend {
    Embedded,
    Redis(RedisServer),
    Cluster(RedisCluster),
}

impl Backend {
    fn yaml(&self) -> String {
        match self {
            Backend::Embedded => "state: {backend: embedded}\n".into(),
            Backend::Redis(r) => redis_state(&r.url()),
            Backend::Cluster(c) => format!(
                "state: {{backend: redis, redis: {{url: '{}', cluster: [{}]}}}}\n",
                c.urls()[0],
                c.urls()
                    .iter()
                    .map(|u| format!("'{u}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// A gateway with an image route (own simulator), usage/logs routes and a
/// rate-limited probe route answering 501.
fn gateway(state: &str, quota: u64, per_minute: u32) -> Gateway {
    gateway_with_ceiling(state, quota, per_minute, 100_000)
}

/// `gateway`, with Ark's gateway-wide images per minute set to `ceiling`.
fn gateway_with_ceiling(state: &str, quota: u64, per_minute: u32, ceiling: u32) -> Gateway {
    let sim = free_port();
    let chain = "[{key_auth: {}}, {key_type: {require: image}}, {rate_limit: {}}]";
    let images_chain =
        "[{key_auth: {}}, {key_type: {require: image}}, {rate_limit: {scope: images}}]";
    let mut yaml = state.to_string();
    yaml += &format!("simulators:\n  ark: {{listen: '127.0.0.1:{sim}'}}\n");
    yaml += &format!("upstreams:\n  ark:\n    endpoints: [{{address: '127.0.0.1:{sim}'}}]\n");
    yaml += "routes:\n";
    yaml += &format!("  - name: images\n    match: {{path_prefix: /v1/images/generations}}\n    filters: {images_chain}\n    handler: {{type: image_generation, upstream: ark, api_key: k, model_images_per_minute: {ceiling}}}\n");
    yaml += "  - name: usage\n    match: {path_prefix: /v1/usage}\n    filters: [{key_auth: {}}]\n    handler: {type: image_usage}\n";
    yaml += "  - name: logs\n    match: {path_prefix: /v1/logs}\n    filters: [{key_auth: {}}]\n    handler: {type: image_logs}\n";
    yaml += &format!("  - name: probe\n    match: {{path_prefix: /probe}}\n    filters: {chain}\n    handler: {{type: not_implemented, message: admitted}}\n");
    yaml += &format!("keys:\n  - {{key: {KEY}, owner: Shared, quota: {quota}, rate_limit_per_minute: {per_minute}}}\n");
    let gw = Gateway::with(&yaml);
    wait_for_port(sim);
    gw
}

async fn probe(gw: &Gateway) -> u16 {
    client()
        .get(gw.url("/probe"))
        .header("authorization", bearer(KEY))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn image(gw: &Gateway) -> u16 {
    client()
        .post(gw.url("/v1/images/generations"))
        .header("authorization", bearer(KEY))
        .body(json!({"model": "seedream-4.0", "prompt": "x", "size": "1K"}).to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn get(gw: &Gateway, path: &str) -> Value {
    get_json(&gw.url(path), KEY).await
}

// ---- the shared suite ----

async fn rate_limit_is_exact(b: Backend) {
    let gw = gateway(&b.yaml(), 1000, 10);
    let codes = join_all((0..30).map(|_| probe(&gw))).await;
    assert_eq!(codes.iter().filter(|c| **c == 501).count(), 10, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 20);
}

async fn quota_is_exact(b: Backend) {
    let gw = gateway(&b.yaml(), 25, 100_000);
    let codes = join_all((0..100).map(|_| image(&gw))).await;
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 25, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 403).count(), 75);
    assert_eq!(get(&gw, "/v1/usage").await["used_count"], 25);
}

async fn accounting_survives_a_gateway_restart(b: Backend) {
    let gw = gateway(&b.yaml(), 1000, 100_000);
    for _ in 0..3 {
        assert_eq!(image(&gw).await, 200);
    }
    let gw = gw.kill9_and_restart();
    let u = get(&gw, "/v1/usage").await;
    assert_eq!(
        (
            u["used_count"].as_u64(),
            u["stats"]["total_requests"].as_u64()
        ),
        (Some(3), Some(3))
    );
    let l = get(&gw, "/v1/logs").await;
    assert_eq!(l["pagination"]["total"], 3);
    assert_eq!(l["logs"][0]["id"], 3, "ids keep counting: {l}");
}

async fn generate(gw: &Gateway, body: Value) -> u16 {
    client()
        .post(gw.url("/v1/images/generations"))
        .header("authorization", bearer(KEY))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn model_ceiling_refusal_bills_nothing_and_holds_nothing(b: Backend) {
    // Each model has its own ceiling of 5 images a minute; the key has 8.
    let gw = gateway_with_ceiling(&b.yaml(), 8, 100_000, 5);
    let batch = |model: &str| {
        json!({"model": model, "prompt": "x", "sequential_image_generation": "auto",
               "sequential_image_generation_options": {"max_images": 4}})
    };
    assert_eq!(generate(&gw, batch("seedream-4.5")).await, 200);
    assert_eq!(
        generate(&gw, batch("seedream-4.5")).await,
        429,
        "4 + 4 images > seedream-4.5's 5 per minute"
    );
    // 4 used + 4 more fit the quota of 8 only if the refused request holds nothing.
    assert_eq!(generate(&gw, batch("seedream-4.0")).await, 200);
    let u = get(&gw, "/v1/usage").await;
    assert_eq!(u["used_count"], 8, "{u}");
}

macro_rules! on_both_backends {
    ($($behaviour:ident),*) => {$(
        mod $behaviour {
            use super::*;
            #[tokio::test(flavor = "multi_thread")]
            async fn embedded() {
                super::$behaviour(Backend::Embedded).await
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn redis() {
                super::$behaviour(Backend::Redis(RedisServer::start())).await
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn redis_cluster() {
                super::$behaviour(Backend::Cluster(RedisCluster::start())).await
            }
        }
    )*};
}

on_both_backends!(
    rate_limit_is_exact,
    quota_is_exact,
    accounting_survives_a_gateway_restart,
    model_ceiling_refusal_bills_nothing_and_holds_nothing
);

// ---- several instances, one Redis ----

fn three_on(redis: &RedisServer, quota: u64, per_minute: u32) -> Vec<Arc<Gateway>> {
    let state = redis_state(&redis.url());
    (0..3)
        .map(|_| Arc::new(gateway(&state, quota, per_minute)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_instances_share_one_exact_rate_limit() {
    let redis = RedisServer::start();
    let gws = three_on(&redis, 1000, 10);
    let codes = join_all((0..300).map(|i| {
        let gw = gws[i % 3].clone();
        async move { probe(&gw).await }
    }))
    .await;
    assert_eq!(
        codes.iter().filter(|c| **c == 501).count(),
        10,
        "10/min across 3 replicas, not 30"
    );
    assert_eq!(
        codes.iter().filter(|c| **c == 429).count(),
        290,
        "{codes:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn three_instances_never_overshoot_a_quota() {
    let redis = RedisServer::start();
    let gws = three_on(&redis, 50, 100_000);
    let codes = join_all((0..200).map(|i| {
        let gw = gws[i % 3].clone();
        async move { image(&gw).await }
    }))
    .await;
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 50, "{codes:?}");
    for gw in &gws {
        assert_eq!(
            get(gw, "/v1/usage").await["used_count"],
            50,
            "every instance sees the same ledger"
        );
    }
    assert_eq!(
        get(&gws[0], "/v1/logs?limit=1").await["pagination"]["total"],
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_outage_fails_closed_then_recovers_with_an_exact_ledger() {
    let mut redis = RedisServer::start_persistent();
    let gw = Arc::new(gateway(&redis_state(&redis.url()), 100_000, 100_000));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (gw, stop) = (gw.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let (mut served, mut statuses) = (0u64, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let status = image(&gw).await;
                if status == 200 {
                    served += 1;
                }
                statuses.push(status);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (served, statuses)
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.restart();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut served, mut statuses) = (0, Vec::new());
    for c in clients {
        let (s, st) = c.await.unwrap();
        served += s;
        statuses.extend(st);
    }
    let unavailable = statuses.iter().filter(|s| **s == 503).count();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "only answers or 503s: {statuses:?}"
    );
    assert!(unavailable > 0, "the outage was seen as 503");
    // Service came back without a restart of the gateway...
    assert_eq!(
        statuses.last(),
        Some(&200),
        "served again after Redis returned"
    );
    assert_eq!(image(&gw).await, 200);
    served += 1;
    // ...and the ledger equals what clients received: nothing billed during
    // the outage, nothing lost or counted twice.
    // Settles whose reply was lost in the outage are retried until Redis
    // confirms them: poll until the ledger has converged.
    let mut used = Value::Null;
    for _ in 0..100 {
        used = get(&gw, "/v1/usage").await["used_count"].clone();
        if used == served {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(used, served);
    eprintln!(
        "{} requests, {served} served, {unavailable} answered 503 during the outage",
        statuses.len() + 1
    );
}

/// One client's requests: when each was sent and answered, and its status.
type Timeline = Vec<(std::time::Instant, std::time::Instant, u16)>;

/// A Redis restart fails no request once Redis answers again. Three
/// instances under a steady load; Redis (AOF, fsync always) is killed and
/// started again 10 times, down 1 s each time. A request that overlaps an
/// outage may fail, and then only as 503 (the quota fails closed); one
/// that starts after Redis answers PING again is served, on every
/// instance; and the ledger equals what the clients received.
#[tokio::test(flavor = "multi_thread")]
async fn redis_restarts_fail_no_request_once_redis_answers_again() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;
    let mut redis = RedisServer::start_persistent();
    let gws = three_on(&redis, 10_000_000, 10_000_000);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let (gw, stop) = (gws[i % 3].clone(), stop.clone());
            tokio::spawn(async move {
                let mut timeline = Timeline::new();
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let status = image(&gw).await;
                    timeline.push((sent, Instant::now(), status));
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
                (i % 3, timeline)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // (being killed, answering again) for each restart, and the stretch
    // in which Redis was surely down (dead, not yet started again).
    let (mut outages, mut down) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let (r, killing, dead, starting) = tokio::task::spawn_blocking(move || {
            let killing = Instant::now();
            redis.kill();
            let dead = Instant::now();
            std::thread::sleep(Duration::from_secs(1));
            let starting = Instant::now();
            redis.restart(); // returns once Redis answers PING
            (redis, killing, dead, starting)
        })
        .await
        .unwrap();
        redis = r;
        outages.push((killing, Instant::now()));
        down.push((dead, starting));
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut timelines = Vec::new();
    for c in clients {
        timelines.push(c.await.unwrap());
    }

    let overlaps =
        |sent: Instant, done: Instant| outages.iter().any(|(k, a)| sent < *a && done > *k);
    let mut served = 0u64;
    for (_, timeline) in &timelines {
        for &(sent, done, status) in timeline {
            match status {
                200 => served += 1,
                503 => assert!(
                    overlaps(sent, done),
                    "a request sent {:?} after the start failed with no outage around it",
                    sent.duration_since(outages[0].0)
                ),
                other => panic!("only answers or 503s, got {other}"),
            }
            // Wholly inside an outage: refused, never served unbilled.
            if down.iter().any(|(d, s)| sent > *d && done < *s) {
                assert_eq!(status, 503, "served while Redis was down");
            }
        }
    }
    // After every restart, every instance's first requests were served.
    for (n, (_, up)) in outages.iter().enumerate() {
        let next = outages.get(n + 1).map(|o| o.0);
        for gw in 0..3 {
            let after: Vec<u16> = timelines
                .iter()
                .filter(|(g, _)| *g == gw)
                .flat_map(|(_, t)| t.iter())
                .filter(|(sent, done, _)| sent >= up && next.is_none_or(|k| *done < k))
                .map(|t| t.2)
                .collect();
            assert!(
                !after.is_empty(),
                "instance {gw} sent nothing after restart {n}"
            );
            assert!(
                after.iter().all(|s| *s == 200),
                "instance {gw} after restart {n}: {after:?}"
            );
        }
    }
    let failed: usize = timelines
        .iter()
        .map(|(_, t)| t.iter().filter(|r| r.2 != 200).count())
        .sum();
    assert!(failed > 0, "the outages were seen (quota fails closed)");
    // The ledger equals what the clients received: settles whose reply was
    // lost are retried until Redis confirms them.
    let mut usage = Value::Null;
    for _ in 0..100 {
        usage = get(&gws[0], "/v1/usage").await;
        if usage["used_count"] == served && usage["stats"]["successful_requests"] == served {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(usage["used_count"], served, "{usage}");
    assert_eq!(
        usage["stats"]["successful_requests"], served,
        "every served request logged once: {usage}"
    );
    eprintln!(
        "10 restarts: {} requests, {served} served, {failed} refused during outages",
        timelines.iter().map(|(_, t)| t.len()).sum::<usize>()
    );
}

/// While Redis is away the configured policy holds: the quota fails closed
/// (503) whatever the policy; rate limits fail closed (503) or, with
/// `local`, count on the instance itself (3/min: three admitted, then 429).
/// When Redis answers again, Redis counts again.
#[tokio::test(flavor = "multi_thread")]
async fn while_redis_is_away_the_configured_policy_holds() {
    for policy in ["fail_closed", "local"] {
        let mut redis = RedisServer::start();
        let state = format!(
            "state: {{backend: redis, redis: {{url: '{}', rate_limit_when_unavailable: {policy}}}}}\n",
            redis.url()
        );
        let gw = gateway(&state, 1000, 3);
        assert_eq!(probe(&gw).await, 501, "{policy}: admitted by Redis");
        redis.kill();
        let mut away = Vec::new();
        for _ in 0..5 {
            away.push(probe(&gw).await);
        }
        let want: &[u16] = match policy {
            "local" => &[501, 501, 501, 429, 429],
            _ => &[503; 5],
        };
        assert_eq!(away, want, "{policy}: the rate limit while Redis is away");
        assert_eq!(image(&gw).await, 503, "{policy}: the quota fails closed");
        redis.restart(); // empty: nothing persisted
        assert_eq!(probe(&gw).await, 501, "{policy}: Redis counts again");
        assert_eq!(image(&gw).await, 200, "{policy}");
    }
}

/// The case the steady load hides: an instance with no traffic while Redis
/// was away. Its connection is found dead only when used; the first
/// request after Redis answers again is still served (three times over).
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_instance_serves_its_first_request_after_a_redis_restart() {
    let mut redis = RedisServer::start_persistent();
    let gw = gateway(&redis_state(&redis.url()), 1000, 1000);
    assert_eq!(image(&gw).await, 200);
    for round in 0..3 {
        redis = tokio::task::spawn_blocking(move || {
            redis.kill();
            std::thread::sleep(Duration::from_secs(1));
            redis.restart();
            redis
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(image(&gw).await, 200, "first request after restart {round}");
    }
    let usage = get(&gw, "/v1/usage").await;
    assert_eq!(usage["used_count"], 4, "{usage}");
    assert_eq!(usage["stats"]["total_requests"], 4, "{usage}");
}

/// On the image route the rate limit is counted with the quota reservation,
/// in one script: still exact across instances, and every request has one
/// log line.
#[tokio::test(flavor = "multi_thread")]
async fn three_instances_share_one_exact_rate_limit_on_the_image_route() {
    let redis = RedisServer::start();
    let gws = three_on(&redis, 1000, 10);
    let codes = join_all((0..300).map(|i| {
        let gw = gws[i % 3].clone();
        async move { image(&gw).await }
    }))
    .await;
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 10, "{codes:?}");
    assert_eq!(
        codes.iter().filter(|c| **c == 429).count(),
        290,
        "{codes:?}"
    );
    assert_eq!(get(&gws[1], "/v1/usage").await["used_count"], 10);
    assert_eq!(
        get(&gws[2], "/v1/logs?limit=1").await["pagination"]["total"],
        300,
        "each request logged once"
    );
}

/// Redis commands a successful image request costs, counted by Redis itself:
/// one script for rate limit + reservation + the model ceiling, one to
/// settle and log together — two round trips, none of them extra. (On a
/// Cluster the ceiling's gateway-wide key lives in another slot than the
/// key's, so admission takes two calls there: three in all.)
#[tokio::test(flavor = "multi_thread")]
async fn an_image_request_costs_two_redis_round_trips() {
    let redis = RedisServer::start();
    let gw = gateway(&redis_state(&redis.url()), 1000, 100_000);
    assert_eq!(image(&gw).await, 200); // scripts loaded, caches warm
    let admin = ::redis::Client::open(redis.url()).unwrap();
    let mut conn = admin.get_multiplexed_async_connection().await.unwrap();
    let _: () = ::redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();
    const N: u64 = 20;
    for _ in 0..N {
        assert_eq!(image(&gw).await, 200);
    }
    let info: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    // Commandstats also counts the commands scripts run inside; the
    // round trips are the EVALSHA calls (no EVAL, no script reloads).
    let calls = |name: &str| -> u64 {
        info.lines()
            .find(|l| l.starts_with(&format!("cmdstat_{name}:")))
            .and_then(|l| l.split("calls=").nth(1)?.split(',').next()?.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(calls("evalsha"), 2 * N, "{info}");
    assert_eq!(calls("eval") + calls("script|load"), 0, "{info}");
}
