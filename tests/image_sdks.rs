//! The image API through the SDKs customers use (`tests/sdk_clients/`):
//! OpenAI's Python SDK, not streamed, and Ark's own Python SDK, whose
//! stream reader parses the gateway's events as it parses Ark's.

mod common;

use std::path::Path;

use common::images::{self, ImageGateway, KEY};
use common::*;
use serde_json::Value;

/// Run a script of `tests/sdk_clients/` against the gateway; its JSON.
fn run(g: &ImageGateway, script: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk_clients")
        .join(script);
    let out = tool("python3")
        .arg(&path)
        .env("BASE_URL", g.gw.url(""))
        .env("KEY", KEY)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const TOKENS_2K: u64 = 2048 * 2048 / 256;

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_sdk_generates_images() {
    let g = images::start("", "", 100);
    let v = run(&g, "openai_images.py");
    let urls = v["urls"].as_array().unwrap();
    assert_eq!(urls.len(), 2, "n=2 became a batch of two: {v}");
    for u in urls {
        assert_eq!(jpeg_dimensions(u.as_str().unwrap()).await, (2048, 2048));
    }
    assert_eq!(v["usage"]["output_tokens"], 2 * TOKENS_2K);
    assert_eq!(g.used().await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn arks_sdk_reads_the_stream_and_the_plain_answer() {
    let g = images::start("image_interval_ms: 100", "", 100);
    let v = run(&g, "ark_stream.py");
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 4, "three images and completed: {v}");
    for (i, e) in events[..3].iter().enumerate() {
        assert_eq!(e["type"], "image_generation.partial_succeeded");
        assert_eq!(e["image_index"], i);
        assert_eq!(e["size"], "2048x2048");
        assert_eq!(e["model"], "seedream-4-5-251128");
        assert!(e["url"].as_str().unwrap().starts_with("http://127.0.0.1:"));
    }
    assert_eq!(events[3]["type"], "image_generation.completed");
    assert_eq!(events[3]["usage"]["generated_images"], 3);
    assert_eq!(events[3]["usage"]["output_tokens"], 3 * TOKENS_2K);
    assert_eq!(v["plain"]["sizes"][0], "1024x1024");
    assert_eq!(v["plain"]["usage"]["generated_images"], 1);
    assert_eq!(g.used().await, 4);
}
