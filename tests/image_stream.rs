//! `stream: true` (DESIGN §3) against the real binary and the simulator
//! streaming as Ark does: events written as they arrive, in order, with
//! the gateway's own `image_index` and usage; fallback images of a short
//! batch streamed next; the content filter and upstream faults as events,
//! never a torn answer; errors before the stream as plain JSON; a client
//! that leaves billed for what it received, the rest released.

mod common;

use std::time::{Duration, Instant};

use common::images::{self, ImageGateway, KEY};
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// The request as a client sends it; the answer unread.
async fn send(g: &ImageGateway, body: &Value) -> reqwest::Response {
    client()
        .post(g.gw.url("/v1/images/generations"))
        .header("authorization", bearer(KEY))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// One frame as a client reads it: `event:` and the `data:` JSON (`None`
/// for `[DONE]`), and when it arrived.
#[derive(Debug)]
struct Frame {
    event: Option<String>,
    data: Option<Value>,
    at: Instant,
}

/// A streamed answer: status, headers and frames. The body is read chunk
/// by chunk and split at blank lines here, independently of the gateway's
/// own reader.
async fn stream(g: &ImageGateway, body: Value) -> (u16, reqwest::header::HeaderMap, Vec<Frame>) {
    let r = send(g, &body).await;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let mut frames = Vec::new();
    let mut buf = String::new();
    let mut body = r.bytes_stream();
    while let Some(chunk) = body.next().await {
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let text: String = buf.drain(..end + 2).collect();
            frames.push(parse(&text, Instant::now()));
        }
    }
    assert!(buf.is_empty(), "a torn last frame: {buf:?}");
    (status, headers, frames)
}

fn parse(text: &str, at: Instant) -> Frame {
    let mut f = Frame {
        event: None,
        data: None,
        at,
    };
    for line in text.lines() {
        if let Some(e) = line.strip_prefix("event: ") {
            f.event = Some(e.to_string());
        } else if let Some(d) = line.strip_prefix("data: ") {
            f.data = (d != "[DONE]").then(|| serde_json::from_str(d).unwrap());
        }
    }
    f
}

/// Frames well formed: `event:` equals `data.type`, each image event
/// carries the model, `created` and the next `image_index`, `completed`
/// and `[DONE]` close the stream. Returns the events' data.
fn check_shape(frames: &[Frame], model: &str) -> Vec<Value> {
    let last = frames.last().expect("frames");
    assert!(last.data.is_none() && last.event.is_none(), "[DONE] last");
    let events: Vec<Value> = frames[..frames.len() - 1]
        .iter()
        .map(|f| {
            let d = f.data.clone().expect("JSON data");
            assert_eq!(f.event.as_deref(), d["type"].as_str(), "{d}");
            assert_eq!(d["model"], model);
            assert!(d["created"].as_u64().unwrap() > 1_700_000_000);
            d
        })
        .collect();
    let (images, done) = events.split_at(events.len() - 1);
    assert_eq!(done[0]["type"], "image_generation.completed");
    for (i, e) in images.iter().enumerate() {
        assert_eq!(e["image_index"], i, "{e}");
        let kind = e["type"].as_str().unwrap();
        match kind {
            "image_generation.partial_succeeded" => {
                assert!(e["url"].is_string() || e["b64_json"].is_string(), "{e}");
                assert!(e["size"].is_string());
            }
            "image_generation.partial_failed" => assert!(e["error"]["code"].is_string()),
            other => panic!("unexpected event {other}"),
        }
    }
    events
}

/// A streamed answer that must be a 200 of well-formed frames; its events.
async fn streamed(g: &ImageGateway, body: Value, model: &str) -> Vec<Value> {
    let (st, _, frames) = stream(g, body).await;
    assert_eq!(st, 200);
    check_shape(&frames, model)
}

fn succeeded(events: &[Value]) -> usize {
    events
        .iter()
        .filter(|e| e["type"] == "image_generation.partial_succeeded")
        .count()
}

const TOKENS_2K: u64 = 2048 * 2048 / 256;

fn batch(prompt: &str, n: u32) -> Value {
    json!({"model": "seedream-4.5", "prompt": prompt, "stream": true,
        "sequential_image_generation": "auto",
        "sequential_image_generation_options": {"max_images": n}})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_four_image_batch_streams_in_order_as_images_finish() {
    let g = images::start("image_interval_ms: 400", "", 100);
    let (st, headers, frames) = stream(&g, batch("four lighthouses", 4)).await;
    assert_eq!(st, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["transfer-encoding"], "chunked");
    // The response filters ran on the stream's header, once.
    assert_eq!(headers.get_all("x-request-id").iter().count(), 1);
    assert_eq!(headers["x-ratelimit-limit"], "100000");
    assert_eq!(frames.len(), 6, "4 images, completed, [DONE]");
    let events = check_shape(&frames, "seedream-4-5-251128");
    assert_eq!(succeeded(&events), 4);
    for e in &events[..4] {
        assert_eq!(e["size"], "2048x2048");
        let (w, h) = jpeg_dimensions(e["url"].as_str().unwrap()).await;
        assert_eq!((w, h), (2048, 2048));
    }
    assert_eq!(
        events[4]["usage"],
        json!({"generated_images": 4, "output_tokens": 4 * TOKENS_2K,
            "total_tokens": 4 * TOKENS_2K})
    );
    // Forwarded as each image is made (400 ms apart), not held to the end.
    let spread = frames[4].at - frames[0].at;
    assert!(spread >= Duration::from_millis(900), "{spread:?}");
    // Ark was asked to stream the batch.
    let sent = g.last_upstream_request().await;
    assert_eq!(
        (&sent["stream"], &sent["sequential_image_generation"]),
        (&json!(true), &json!("auto"))
    );
    assert_eq!(g.used().await, 4);
    let logs = g.get("/v1/logs").await;
    assert_eq!(logs["logs"][0]["status"], "success", "{logs}");

    // b64_json streams too; one image without batch mode.
    let body = json!({"model": "seedream-4.0", "prompt": "one", "size": "1K",
        "response_format": "b64_json", "stream": true});
    let events = streamed(&g, body, "seedream-4-0-250828").await;
    assert_eq!(events.len(), 2);
    assert!(events[0]["b64_json"].as_str().unwrap().len() > 1000);
    assert!(events[0].get("url").is_none());
    assert_eq!(events[1]["usage"]["output_tokens"], 1024 * 1024 / 256);
    assert_eq!(g.used().await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_batch_streams_its_fallback_images_next() {
    let g = images::start("auto_max_images: 2", "", 100);
    let events = streamed(&g, batch("a short batch", 5), "seedream-4-5-251128").await;
    assert_eq!(events.len(), 6, "5 images then completed");
    assert_eq!(succeeded(&events), 5, "3 made by fallback calls");
    assert_eq!(events[5]["usage"]["generated_images"], 5);
    assert_eq!(events[5]["usage"]["output_tokens"], 5 * TOKENS_2K);
    // The fallbacks asked for one image each, not streamed.
    let sent = g.last_upstream_request().await;
    assert_eq!(sent["stream"], false);
    assert_eq!(sent["sequential_image_generation"], "disabled");
    assert_eq!(g.used().await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_content_filter_is_a_partial_failed_event_and_not_billed() {
    let g = images::start("", "", 100);
    let events = streamed(&g, batch("FORBIDDEN scene", 3), "seedream-4-5-251128").await;
    assert_eq!(events[0]["type"], "image_generation.partial_failed");
    assert_eq!(
        events[0]["error"],
        json!({"code": "ContentFilter", "message": "Image rejected by content filter"})
    );
    assert_eq!(succeeded(&events), 2);
    assert_eq!(events[3]["usage"]["generated_images"], 2);
    assert_eq!(g.used().await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_faults_mid_stream_become_events_not_a_torn_answer() {
    for (fault, code) in [
        ("http500", "InternalServiceError"),
        ("reset", "UpstreamError"),
    ] {
        // Every call faults: the stream after its first image, each
        // fallback call at once.
        let g = images::start(&format!("fault: {fault}"), "", 100);
        let events = streamed(&g, batch("a fragile batch", 3), "seedream-4-5-251128").await;
        assert_eq!(events.len(), 4, "{fault}: {events:?}");
        assert_eq!(events[0]["type"], "image_generation.partial_succeeded");
        for e in &events[1..3] {
            assert_eq!(e["type"], "image_generation.partial_failed", "{fault}");
            assert_eq!(e["error"]["code"], code, "{fault}: {e}");
        }
        assert_eq!(events[3]["usage"]["generated_images"], 1);
        assert_eq!(g.used().await, 1, "{fault}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_before_the_stream_are_plain_json() {
    let ghost =
        "{alias: ghost, upstream_id: ghost-1, presets: [2K], min_pixels: 1, max_pixels: 99999999}";
    let four_five = "{alias: seedream-4.5, upstream_id: seedream-4-5-251128, \
        presets: [2K, 4K], min_pixels: 3686400, max_pixels: 16777216}";
    let g = images::start("", &format!("models: [{four_five}, {ghost}]"), 3);
    let cases = [
        // Validation.
        (
            json!({"model": "seedream-4.5", "prompt": "x", "size": "5K", "stream": true}),
            400,
            "InvalidParameter",
        ),
        // The quota (3) cannot cover a batch of 4.
        (batch("too many", 4), 403, "QuotaExceeded"),
        // Ark refuses the request before any image (a model it does not know).
        (
            json!({"model": "ghost", "prompt": "x", "stream": true}),
            502,
            "BadGateway",
        ),
    ];
    for (body, status, code) in cases {
        let r = send(&g, &body).await;
        assert_eq!(r.status(), status, "{body}");
        assert_eq!(r.headers()["content-type"], "application/json");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{v}");
    }
    assert_eq!(g.used().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_mid_stream_pays_for_what_it_received() {
    // Quota 5: the batch of 4 reserves 4; after leaving with one image,
    // another batch of 4 fits only if the other 3 were released.
    let g = images::start("image_interval_ms: 1500", "", 5);
    let r = send(&g, &batch("leave early", 4)).await;
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    let first = String::from_utf8(first.to_vec()).unwrap();
    assert!(
        first.starts_with("event: image_generation.partial_succeeded\n"),
        "{first}"
    );
    drop(body);

    let logs = until(|| async {
        let logs = g.get("/v1/logs").await;
        (logs["pagination"]["total"] == 1).then_some(logs)
    })
    .await;
    let log = &logs["logs"][0];
    assert_eq!(log["status"], "failed", "{log}");
    assert_eq!(
        log["error_message"],
        "The client closed the stream after 1 of 4 image(s)."
    );
    assert_eq!(g.used().await, 1);
    // Admitted: 3 released + 1 never reserved.
    let events = streamed(&g, batch("the rest", 4), "seedream-4-5-251128").await;
    assert_eq!(succeeded(&events), 4);
    assert_eq!(g.used().await, 5);
}

/// Every delivered image of a stream lands in the gallery (the shipped
/// config keeps one).
#[tokio::test(flavor = "multi_thread")]
async fn streamed_images_are_kept_in_the_gallery() {
    let (gw, _sim, _data) = start_shipped("conf/kikaku.yaml");
    let r = client()
        .post(gw.url("/v1/images/generations"))
        .header("authorization", "Bearer kikaku_demo_key")
        .body(
            json!({"model": "seedream-4.0", "prompt": "two streamed boats", "size": "1K",
                "stream": true, "n": 2})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert_eq!(
        text.matches("event: image_generation.partial_succeeded")
            .count(),
        2
    );
    let gallery = until(|| async {
        let g = get_json(&gw.url("/v1/gallery?limit=10"), "kikaku_demo_key").await;
        (g["pagination"]["total"] == 2).then_some(g)
    })
    .await;
    for img in gallery["images"].as_array().unwrap() {
        assert_eq!(img["prompt"], "two streamed boats");
        assert_eq!(
            jpeg_dimensions(img["s3_url"].as_str().unwrap()).await,
            (1024, 1024)
        );
    }
}

/// Poll `f` until it returns something (10 s at most).
async fn until<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..100 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not reached in 10 s");
}
