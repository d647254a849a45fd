//! `POST /v1/images/generations` through the real binary, with the Ark
//! simulator (in-process, configured per test) as the upstream.

mod common;

use std::time::Duration;

use base64::Engine;
use common::images::*;
use common::*;
use futures_util::future::join_all;
use serde_json::{json, Value};

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
