//! The image route's request checks over HTTP, through the real binary:
//! every validation rule of DESIGN §3 and the seed, inline images checked
//! from their header, and malformed or oversized bodies that never hang or
//! crash the gateway.

mod common;

use base64::Engine;
use common::images::*;
use serde_json::{json, Value};

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
            "not available on seedream-4.5",
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
