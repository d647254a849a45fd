//! `POST /v1/images/generations` through the real binary, with the Ark
//! simulator (in-process, configured per test) as the upstream.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use futures_util::future::join_all;
use serde_json::{json, Value};

const KEY: &str = "kikaku_img_tester";
const ARK_KEY: &str = "ark-secret-test-key";

struct ImageGateway {
    gw: Gateway,
    sim: u16,
}

/// A gateway whose image route calls an in-process simulator.
/// `sim` and `handler` are extra YAML flow-map entries (`latency_ms: 5, ...`).
fn start(sim: &str, handler: &str, quota: u64) -> ImageGateway {
    let sim_port = free_port();
    let sep = |s: &str| {
        if s.is_empty() {
            String::new()
        } else {
            format!(", {s}")
        }
    };
    let chain =
        "[{request_id: {}}, {key_auth: {}}, {key_type: {require: image}}, {rate_limit: {}}]";
    let route = |name: &str, m: &str, handler: &str| {
        // Image calls get their own budget, so reading logs never spends it.
        let chain = if name == "images" {
            chain.replace("{rate_limit: {}}", "{rate_limit: {scope: images}}")
        } else {
            chain.to_string()
        };
        format!("  - name: {name}\n    match: {m}\n    filters: {chain}\n    handler: {handler}\n")
    };
    let mut yaml = format!(
        "simulators:\n  ark: {{listen: '127.0.0.1:{sim_port}', api_key: {ARK_KEY}{}}}\n",
        sep(sim)
    );
    yaml += &format!("upstreams:\n  ark:\n    endpoints: [{{address: '127.0.0.1:{sim_port}'}}]\n");
    yaml += "routes:\n";
    yaml += &route(
        "images",
        "{methods: [POST], path_prefix: /v1/images/generations}",
        &format!(
            "{{type: image_generation, upstream: ark, api_key: {ARK_KEY}{}}}",
            sep(handler)
        ),
    );
    yaml += &route("usage", "{path_prefix: /v1/usage}", "{type: image_usage}");
    yaml += &route("logs", "{path_prefix: /v1/logs}", "{type: image_logs}");
    yaml += &format!(
        "keys:\n  - {{key: {KEY}, owner: Img Tester, email: img@example.com, quota: {quota}, rate_limit_per_minute: 100000}}\n  - {{key: kikaku_s3_nope, owner: S3}}\n"
    );
    let gw = Gateway::with(&yaml);
    // The simulator starts beside the listeners; wait for it too.
    wait_for_port(sim_port);
    ImageGateway { gw, sim: sim_port }
}

impl ImageGateway {
    async fn generate(&self, body: Value) -> (u16, Value) {
        self.post(body.to_string()).await
    }

    async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = client()
            .post(self.gw.url("/v1/images/generations"))
            .header("authorization", bearer(KEY))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        get_json(&self.gw.url(path), KEY).await
    }

    async fn used(&self) -> u64 {
        self.get("/v1/usage").await["used_count"].as_u64().unwrap()
    }

    /// The body the simulator last received from the gateway.
    async fn last_upstream_request(&self) -> Value {
        client()
            .get(format!("http://127.0.0.1:{}/_sim/last-request", self.sim))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn images(v: &Value) -> usize {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d.get("error").is_none())
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seeds_eight_curl_examples_work() {
    let g = start("", "", 1000);
    let examples = seed_examples();
    let mut total = 0;
    for (i, (body, want)) in examples.into_iter().enumerate() {
        let (s, v) = g.generate(body).await;
        assert_eq!(s, 200, "example {}: {v}", i + 1);
        assert_eq!(images(&v), want, "example {}: {v}", i + 1);
        assert_eq!(v["usage"]["generated_images"], want as u64);
        assert_eq!(
            v["usage"]["output_tokens"],
            16_384 * want as u64,
            "2K 1:1 is 2048x2048"
        );
        assert_eq!(v["data"][0]["size"], "2048x2048");
        total += want as u64;
    }
    assert_eq!(g.used().await, total);
    // The image URL serves a real JPEG of that size.
    let (_, v) = g
        .generate(json!({"model": "seedream-4.5", "prompt": "poster portrait 3:4", "size": "2K"}))
        .await;
    assert_eq!(v["data"][0]["size"], "1728x2304");
    assert_eq!(
        jpeg_dimensions(v["data"][0]["url"].as_str().unwrap()).await,
        (1728, 2304)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rewriting_aliases_n_defaults_and_the_upstream_key() {
    let g = start("", "", 1000);
    let (s, v) = g.generate(json!({"model": "seedream-4.5", "prompt": "cats", "n": 3, "user": "someone", "size": "2K"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["model"], "seedream-4-5-251128");
    let sent = g.last_upstream_request().await;
    assert_eq!(
        sent["model"], "seedream-4-5-251128",
        "alias mapped to the upstream id"
    );
    assert_eq!(
        sent["sequential_image_generation"], "auto",
        "legacy n became batch mode"
    );
    assert_eq!(sent["sequential_image_generation_options"]["max_images"], 3);
    assert!(
        sent.get("n").is_none() && sent.get("user").is_none(),
        "only Ark's fields: {sent}"
    );
    assert_eq!(sent["watermark"], true, "defaults filled in");
    assert_eq!(sent["response_format"], "url");
    // The simulator insists on ARK_KEY: a 200 proves the gateway sent its own
    // key and not the client's.
}

#[tokio::test(flavor = "multi_thread")]
async fn both_response_formats() {
    let g = start("", "", 1000);
    let (s, v) = g.generate(json!({"model": "seedream-4.0", "prompt": "x", "size": "1280x720", "response_format": "b64_json"})).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["data"][0].get("url").is_none());
    let jpeg = base64::engine::general_purpose::STANDARD
        .decode(v["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    let dim = imagesize::blob_size(&jpeg).unwrap();
    assert_eq!((dim.width, dim.height), (1280, 720));
    assert_eq!(v["usage"]["output_tokens"], 3_600);
    let (s, v) = g
        .generate(json!({"model": "seedream-4.0", "prompt": "x", "size": "1280x720"}))
        .await;
    assert_eq!(s, 200);
    assert!(v["data"][0]["url"].as_str().unwrap().starts_with("http://"));
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_fallback_fills_missing_images_in_parallel() {
    let g = start("auto_max_images: 1, latency_ms: 500", "", 1000);
    let started = std::time::Instant::now();
    let (s, v) = g
        .generate(json!({"model": "seedream-4.5", "prompt": "4 scenes", "size": "2K", "sequential_image_generation": "auto", "sequential_image_generation_options": {"max_images": 4}}))
        .await;
    let took = started.elapsed();
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        images(&v),
        4,
        "simulator gave 1 of 4; fallback made the other 3: {v}"
    );
    assert_eq!(v["usage"]["generated_images"], 4);
    assert_eq!(g.used().await, 4);
    // One batch call, then 3 single calls: the last one the simulator saw.
    assert_eq!(
        g.last_upstream_request().await["sequential_image_generation"],
        "disabled"
    );
    // 300 ms per call: parallel fallback takes ~2 calls' time, serial ~4.
    assert!(
        took < Duration::from_millis(1100),
        "fallback not parallel: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn content_filter_failures_are_per_item_and_not_billed() {
    let g = start("", "", 1000);
    let (s, v) = g
        .generate(json!({"model": "seedream-4.5", "prompt": "4 scenes FORBIDDEN", "size": "2K", "sequential_image_generation": "auto", "sequential_image_generation_options": {"max_images": 4}}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["data"].as_array().unwrap().len(), 4);
    assert_eq!(v["data"][0]["error"]["code"], "ContentFilter");
    assert_eq!(
        v["data"][0]["error"]["message"],
        "Image rejected by content filter"
    );
    assert_eq!(v["usage"]["generated_images"], 3);
    assert_eq!(v["usage"]["output_tokens"], 3 * 16_384);
    assert_eq!(g.used().await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_faults_are_clear_errors_and_bill_nothing() {
    for (sim, handler, want) in [
        ("fault: http500", "", 502),
        ("fault: http503", "", 503),
        ("fault: reset", "", 502),
        ("fault: hang", "deadline_seconds: 1", 504),
    ] {
        let g = start(sim, handler, 1000);
        let (s, v) = g
            .generate(json!({"model": "seedream-4.5", "prompt": "x"}))
            .await;
        assert_eq!(s, want, "{sim}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("upstream"),
            "{sim}: {v}"
        );
        assert_eq!(g.used().await, 0, "{sim}: nothing billed");
        let logs = g.get("/v1/logs").await;
        assert_eq!(logs["logs"][0]["status"], "failed", "{sim}: {logs}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn quota_is_exact_under_concurrency() {
    let g = start("", "", 50);
    let body = json!({"model": "seedream-4.0", "prompt": "x", "size": "1K"}).to_string();
    let results = join_all((0..200).map(|_| g.post(body.clone()))).await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let refused = results
        .iter()
        .filter(|(s, v)| *s == 403 && v["error"]["code"] == "QuotaExceeded")
        .count();
    assert_eq!((ok, refused), (50, 150));
    let usage = g.get("/v1/usage").await;
    assert_eq!(
        (usage["used_count"].as_u64(), usage["remaining"].as_u64()),
        (Some(50), Some(0))
    );
    assert_eq!(usage["stats"]["total_requests"], 200);
    assert_eq!(usage["stats"]["successful_requests"], 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn model_ceiling_counts_images_gateway_wide() {
    let g = start("", "model_images_per_minute: 5", 1000);
    let batch = json!({"model": "seedream-4.5", "prompt": "x", "sequential_image_generation": "auto", "sequential_image_generation_options": {"max_images": 4}});
    assert_eq!(g.generate(batch.clone()).await.0, 200);
    let (s, v) = g.generate(batch).await;
    assert_eq!(s, 429, "4 + 4 images > 5 per minute: {v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("5 images per minute"));
    assert_eq!(
        g.generate(json!({"model": "seedream-4.5", "prompt": "x"}))
            .await
            .0,
        200,
        "4 + 1 fits"
    );
    assert_eq!(g.used().await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn validation_rules_over_http() {
    let g = start("", "", 1000);
    let m = |extra: Value| {
        let mut v = json!({"model": "seedream-4.5", "prompt": "x"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    // (passing case, failing case, expected code, message fragment)
    let cases = [
        (
            m(json!({})),
            json!({"prompt": "x"}),
            "MissingParameter",
            "model is required",
        ),
        (
            m(json!({})),
            json!({"model": "gpt-image", "prompt": "x"}),
            "InvalidParameter",
            "Unknown model",
        ),
        (
            m(json!({})),
            json!({"model": "seedream-4.5"}),
            "MissingParameter",
            "prompt is required",
        ),
        (
            m(json!({"prompt": "p".repeat(10_000)})),
            m(json!({"prompt": "p".repeat(10_001)})),
            "InvalidParameter",
            "at most 10000",
        ),
        (
            m(json!({"size": "4K"})),
            m(json!({"size": "5K"})),
            "InvalidParameter",
            "Invalid size \"5K\"",
        ),
        (
            json!({"model": "seedream-4.0", "prompt": "x", "size": "1K"}),
            m(json!({"size": "1K"})),
            "InvalidParameter",
            "for seedream-4.5",
        ),
        (
            m(json!({"size": "2560x1440"})),
            m(json!({"size": "1280x720"})),
            "InvalidParameter",
            "pixels",
        ),
        (
            json!({"model": "seedream-4.0", "prompt": "x", "size": "4096x1024"}),
            json!({"model": "seedream-4.0", "prompt": "x", "size": "16000x900"}),
            "InvalidParameter",
            "aspect ratio",
        ),
        (
            m(json!({"image": "https://example.com/a.png"})),
            m(json!({"image": "file:///etc/passwd"})),
            "InvalidParameter",
            "http(s) URL",
        ),
        (
            m(json!({"image": vec!["https://e.com/a.png"; 14]})),
            m(json!({"image": vec!["https://e.com/a.png"; 15]})),
            "InvalidParameter",
            "1 to 14",
        ),
        (
            m(json!({"response_format": "b64_json"})),
            m(json!({"response_format": "png"})),
            "InvalidParameter",
            "url or b64_json",
        ),
        (
            m(json!({"watermark": false})),
            m(json!({"watermark": "no"})),
            "InvalidParameter",
            "watermark must be a boolean",
        ),
        (
            m(
                json!({"sequential_image_generation": "auto", "sequential_image_generation_options": {"max_images": 2}}),
            ),
            m(json!({"sequential_image_generation": "sometimes"})),
            "InvalidParameter",
            "disabled or auto",
        ),
        (
            m(
                json!({"sequential_image_generation": "auto", "sequential_image_generation_options": {"max_images": 15}}),
            ),
            m(
                json!({"sequential_image_generation": "auto", "sequential_image_generation_options": {"max_images": 16}}),
            ),
            "InvalidParameter",
            "from 1 to 15",
        ),
        (
            m(
                json!({"image": ["https://e.com/a.png", "https://e.com/b.png"], "sequential_image_generation": "auto", "sequential_image_generation_options": {"max_images": 13}}),
            ),
            m(
                json!({"image": ["https://e.com/a.png", "https://e.com/b.png", "https://e.com/c.png"], "sequential_image_generation": "auto", "sequential_image_generation_options": {"max_images": 13}}),
            ),
            "InvalidParameter",
            "exceed 15",
        ),
        (
            json!({"model": "seedream-4.0", "prompt": "x", "optimize_prompt_options": {"mode": "fast"}}),
            m(json!({"optimize_prompt_options": {"mode": "fast"}})),
            "InvalidParameter",
            "not seedream-4.5",
        ),
        (
            m(json!({"n": 2})),
            m(json!({"n": 16})),
            "InvalidParameter",
            "n must be an integer from 1 to 15",
        ),
    ];
    for (i, (good, bad, code, fragment)) in cases.into_iter().enumerate() {
        let (s, v) = g.generate(good).await;
        assert_eq!(s, 200, "case {i} passing: {v}");
        let (s, v) = g.generate(bad).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some(code)),
            "case {i}: {v}"
        );
        assert!(
            v["error"]["message"].as_str().unwrap().contains(fragment),
            "case {i}: {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn inline_images_are_checked_from_their_header() {
    let g = start("", "", 1000);
    let jpeg = |w, h| {
        let img = kikaku_edge::standins::ark_sim::jpeg::encode(w, h);
        format!(
            "data:image/jpeg;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&img)
        )
    };
    let with = |image: Value| json!({"model": "seedream-4.5", "prompt": "x", "image": image});
    assert_eq!(g.generate(with(json!(jpeg(64, 64)))).await.0, 200);
    for (bad, fragment) in [
        (json!("data:image/jpeg;base64,@@@not-base64@@@"), "base64"),
        (
            json!(jpeg(64, 64).replace("image/jpeg", "image/JPEG")),
            "lower-case",
        ),
        (json!(jpeg(10, 64)), "> 14 px"),
        (json!(jpeg(64, 64)[..60].to_string()), "image"),
        (json!([jpeg(64, 64), jpeg(1000, 40)]), "image[1]"),
    ] {
        let (s, v) = g.generate(with(bad)).await;
        assert_eq!(s, 400, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(fragment),
            "{fragment}: {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_oversized_bodies_never_hang_or_crash() {
    let g = start("", "max_body_bytes: 60000000", 1000);
    for body in [
        "{",
        "[]",
        "null",
        "{\"model\": 7, \"prompt\": \"x\"}",
        "\u{0}\u{1}",
        "",
    ] {
        let (s, v) = g.post(body.to_string()).await;
        assert_eq!(s, 400, "{body:?}: {v}");
    }
    // A 50 MB prompt is read (within the body limit) and refused by rule.
    let huge = json!({"model": "seedream-4.5", "prompt": "a".repeat(50_000_000)}).to_string();
    let (s, v) = g.post(huge).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("50000000 characters"));
    // Past the body limit: 413, without reading it all.
    let (s, v) = g.post(vec![b'x'; 61_000_000]).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (413, Some("PayloadTooLarge"))
    );
    // The gateway still serves.
    assert_eq!(
        g.generate(json!({"model": "seedream-4.5", "prompt": "x"}))
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_and_logs_report_what_happened() {
    let g = start("", "", 10);
    g.generate(json!({"model": "seedream-4.5", "prompt": "x"}))
        .await;
    g.generate(json!({"model": "seedream-4.5", "prompt": "x", "size": "9K"}))
        .await;
    g.generate(json!({"model": "seedream-4.0", "prompt": "x", "n": 2}))
        .await;
    let u = g.get("/v1/usage").await;
    assert_eq!(u["owner_name"], "Img Tester");
    assert_eq!(u["email"], "img@example.com");
    assert_eq!(
        (
            u["quota_limit"].as_u64(),
            u["used_count"].as_u64(),
            u["remaining"].as_u64()
        ),
        (Some(10), Some(3), Some(7))
    );
    assert_eq!(u["status"], "active");
    assert_eq!(u["expires_at"], Value::Null);
    assert_eq!(
        (
            u["stats"]["total_requests"].as_u64(),
            u["stats"]["failed_requests"].as_u64()
        ),
        (Some(3), Some(1))
    );
    let l = g.get("/v1/logs?limit=2&page=1").await;
    assert_eq!(l["pagination"], json!({"page": 1, "limit": 2, "total": 3}));
    assert_eq!(l["logs"][0]["model"], "seedream-4.0", "newest first");
    assert_eq!(l["logs"][1]["status"], "failed");
    assert!(l["logs"][1]["error_message"]
        .as_str()
        .unwrap()
        .contains("9K"));
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let l = g
        .get(&format!("/v1/logs?start_date={today}&end_date={today}"))
        .await;
    assert_eq!(l["pagination"]["total"], 3);
    let l = g
        .get("/v1/logs?start_date=2020-01-01&end_date=2020-01-31")
        .await;
    assert_eq!(l["pagination"]["total"], 0);
    let bad = client()
        .get(g.gw.url("/v1/logs?limit=500"))
        .header("authorization", bearer(KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // Storage keys are turned away with the portal's sentence.
    let r = client()
        .get(g.gw.url("/v1/usage"))
        .header("authorization", bearer("kikaku_s3_nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_is_not_billed_and_frees_its_reservation() {
    let g = start("latency_ms: 800", "", 1);
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let r = impatient
        .post(g.gw.url("/v1/images/generations"))
        .header("authorization", bearer(KEY))
        .body(json!({"model": "seedream-4.5", "prompt": "x"}).to_string())
        .send()
        .await;
    assert!(r.is_err(), "the client gave up");
    // Once the gateway notices, the single image of quota is free again.
    let mut logged = Value::Null;
    for _ in 0..100 {
        logged = g.get("/v1/logs").await;
        if logged["pagination"]["total"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(logged["logs"][0]["status"], "failed", "{logged}");
    assert!(
        logged["logs"][0]["error_message"]
            .as_str()
            .unwrap()
            .contains("closed"),
        "{logged}"
    );
    assert_eq!(g.used().await, 0);
    let (s, v) = g
        .generate(json!({"model": "seedream-4.5", "prompt": "x"}))
        .await;
    assert_eq!(s, 200, "the reservation was released: {v}");
    assert_eq!(g.used().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn accounting_survives_kill_9() {
    let mut g = start("latency_ms: 150", "", 1000);
    let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let url = g.gw.url("/v1/images/generations");
    let mut clients = Vec::new();
    for i in 0..12 {
        let (served, answered, url) = (served.clone(), answered.clone(), url.clone());
        clients.push(tokio::spawn(async move {
            let http = client();
            for _ in 0..20 {
                let body = json!({"model": "seedream-4.5", "prompt": "x", "n": 1 + i % 3});
                let Ok(r) = http
                    .post(&url)
                    .header("authorization", bearer(KEY))
                    .body(body.to_string())
                    .send()
                    .await
                else {
                    return; // the gateway died under us
                };
                if r.status() != 200 {
                    return;
                }
                let Ok(v) = r.json::<Value>().await else {
                    return;
                };
                served.fetch_add(
                    v["usage"]["generated_images"].as_u64().unwrap(),
                    std::sync::atomic::Ordering::SeqCst,
                );
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    // kill -9 with requests in flight.
    g.gw.child.kill().unwrap();
    g.gw.child.wait().unwrap();
    for c in clients {
        c.await.unwrap();
    }
    let (served, answered) = (
        served.load(std::sync::atomic::Ordering::SeqCst),
        answered.load(std::sync::atomic::Ordering::SeqCst),
    );
    assert!(served > 0, "some requests completed before the kill");
    g.gw = g.gw.kill9_and_restart();
    assert_eq!(
        g.used().await,
        served,
        "used_count equals the images clients received"
    );
    let logs = g.get("/v1/logs?limit=100").await;
    let successes = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["status"] == "success")
        .count() as u64;
    assert_eq!(successes, answered, "one success log per answered request");
    let billed: u64 = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["images"].as_u64().unwrap())
        .sum();
    assert_eq!(billed, served);
    eprintln!("{answered} answers, {served} images served and billed across kill -9");
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_refused_by_the_rate_limit_are_logged_too() {
    let g = start("", "", 1000);
    // The test key allows 100000/min; a tight key shows the refusal.
    let tight = "kikaku_img_tight";
    let yaml = std::fs::read_to_string(&g.gw.config_path).unwrap();
    g.gw.write_config(&yaml.replace(
        "  - {key: kikaku_s3_nope, owner: S3}\n",
        &format!("  - {{key: kikaku_s3_nope, owner: S3}}\n  - {{key: {tight}, owner: Tight, rate_limit_per_minute: 1}}\n"),
    ));
    let http = client();
    let call = || {
        http.post(g.gw.url("/v1/images/generations"))
            .header("authorization", bearer(tight))
            .body(json!({"model": "seedream-4.5", "prompt": "x"}).to_string())
            .send()
    };
    let mut first = 401;
    for _ in 0..100 {
        first = call().await.unwrap().status().as_u16();
        if first != 401 {
            break; // the reload with the new key is in
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(first, 200);
    assert_eq!(call().await.unwrap().status(), 429);
    let logs: Value = http
        .get(g.gw.url("/v1/logs"))
        .header("authorization", bearer(tight))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Two image requests; the /v1/logs call itself is not an image request.
    assert_eq!(logs["pagination"]["total"], 2, "{logs}");
    assert_eq!(logs["logs"][0]["status"], "failed");
    assert!(
        logs["logs"][0]["error_message"]
            .as_str()
            .unwrap()
            .contains("Rate limit"),
        "{logs}"
    );
}

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
    Gateway::with(&format!(
        "upstreams:\n  ark:\n    endpoints: [{{address: '127.0.0.1:{port}'}}]\n{extra}routes:\n  - name: images\n    match: {{methods: [POST], path_prefix: /v1/images/generations}}\n    filters: [{{request_id: {{}}}}, {{key_auth: {{}}}}, {{key_type: {{require: image}}}}]\n    handler: {{type: image_generation, upstream: ark, api_key: {ARK_KEY}}}\nkeys:\n  - {{key: {KEY}, owner: Img Tester, quota: 100, rate_limit_per_minute: 100000}}\n"
    ))
}

async fn post_a_cat(gw: &Gateway) -> reqwest::Response {
    let body = json!({"model": "seedream-4.0", "prompt": "a cat", "size": "1K"}).to_string();
    client()
        .post(gw.url("/v1/images/generations"))
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
                if sock.write_all(one_image_answer().as_bytes()).await.is_err() {
                    return;
                }
                counter.fetch_add(1, Ordering::SeqCst);
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
        for i in 0..3 {
            let r = post_a_cat(&gw).await;
            assert_eq!(
                r.status().as_u16(),
                200,
                "keepalive {keepalive}, request {i}"
            );
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
