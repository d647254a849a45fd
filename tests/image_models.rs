//! Models as configuration (DESIGN §3): a Seedream version the gateway
//! does not ship, added only in YAML, serves requests with its own presets
//! (a 3K aspect table of its own), its own pixel range and its own optional
//! fields (`output_format`, `tools`), which reach Ark as sent; the shipped
//! models refuse those fields before anything is sent upstream, naming the
//! field and the model. Ark's `usage.input_images` and `usage.tool_usage` pass
//! through.

mod common;

use base64::Engine;
use common::images::{self, ImageGateway};
use common::*;
use serde_json::json;

const FIVE: &str = "{alias: seedream-5.0-lite, upstream_id: seedream-5-0-260128, \
    presets: [2K, {name: 3K, sizes: {'1:1': 3072x3072, '16:9': 4096x2304}}, 4K], \
    min_pixels: 3686400, max_pixels: 16777216, \
    fields: [output_format, tools, thinking], output_formats: [jpeg, png]}";
const FOUR_FIVE: &str = "{alias: seedream-4.5, upstream_id: seedream-4-5-251128, \
    presets: [2K, 4K], min_pixels: 3686400, max_pixels: 16777216}";

fn start() -> ImageGateway {
    images::start("", &format!("models: [{FIVE}, {FOUR_FIVE}]"), 1000)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_added_in_yaml_serves_its_own_presets_and_fields() {
    let g = start();
    let (st, v) = g
        .generate(json!({
            "model": "seedream-5.0-lite", "prompt": "a harbour", "size": "3K",
            "output_format": "png", "tools": [{"type": "web_search"}],
            "image": "https://example.com/ref.jpg",
        }))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["model"], "seedream-5-0-260128");
    assert_eq!(v["data"][0]["size"], "3072x3072");
    assert_eq!(v["usage"]["output_tokens"], 3072 * 3072 / 256);
    assert_eq!(v["usage"]["input_images"], 1, "passed through: {v}");
    assert_eq!(v["usage"]["tool_usage"], json!({"web_search": 1}));
    let png = get_bytes(v["data"][0]["url"].as_str().unwrap()).await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG, as asked");
    let sent = g.last_upstream_request().await;
    assert_eq!(sent["model"], "seedream-5-0-260128");
    assert_eq!(sent["output_format"], "png");
    assert_eq!(sent["tools"], json!([{"type": "web_search"}]));
    assert_eq!(sent["size"], "3K");

    // The table's other ratio, named in the prompt; b64_json as PNG.
    let (st, v) = g
        .generate(json!({
            "model": "seedream-5.0-lite", "prompt": "a wide 16:9 harbour", "size": "3K",
            "output_format": "png", "response_format": "b64_json",
        }))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"][0]["size"], "4096x2304");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    assert!(bytes.starts_with(b"\x89PNG"));
    assert!(v["usage"].get("tool_usage").is_none() && v["usage"].get("input_images").is_none());

    // Its own rules: no 1K preset, its pixel range, its formats.
    for (body, words) in [
        (
            json!({"model": "seedream-5.0-lite", "prompt": "x", "size": "1K"}),
            "Invalid size \"1K\" for seedream-5.0-lite. Use 2K/3K/4K or WIDTHxHEIGHT.",
        ),
        (
            json!({"model": "seedream-5.0-lite", "prompt": "x", "output_format": "webp"}),
            "output_format \"webp\" is not available on seedream-5.0-lite; use jpeg or png.",
        ),
        (
            json!({"model": "seedream-5.0-lite", "prompt": "x", "seed": 7}),
            "seed is not supported by seedream-5.0-lite.",
        ),
    ] {
        let (st, v) = g.generate(body).await;
        assert_eq!((st, v["error"]["message"].as_str().unwrap()), (400, words));
    }
    assert_eq!(g.used().await, 2, "only the two answered requests billed");
}

#[tokio::test(flavor = "multi_thread")]
async fn shipped_models_refuse_the_fields_before_ark_sees_them() {
    let g = start();
    let (st, _) = g
        .generate(json!({"model": "seedream-4.5", "prompt": "first", "size": "2K"}))
        .await;
    assert_eq!(st, 200);
    for (field, value) in [
        ("output_format", json!("png")),
        ("tools", json!([{"type": "web_search"}])),
        ("optimize_prompt_options", json!({"thinking": "auto"})),
    ] {
        let mut body = json!({"model": "seedream-4.5", "prompt": "second"});
        body[field] = value;
        let (st, v) = g.generate(body).await;
        assert_eq!(st, 400, "{v}");
        assert_eq!(v["error"]["code"], "InvalidParameter");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .ends_with("is not supported by seedream-4.5."),
            "{v}"
        );
    }
    // Ark last saw the first request: nothing refused went upstream.
    assert_eq!(g.last_upstream_request().await["prompt"], "first");
    // A model the YAML does not list is unknown, even one Ark has.
    let (st, v) = g
        .generate(json!({"model": "seedream-4.0", "prompt": "x"}))
        .await;
    assert_eq!(st, 400);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Unknown model \"seedream-4.0\""));
}
