//! Every rule of `validate`, by the message a client gets.

use super::*;
use crate::images::api::inline::tests::jpeg_url;
use crate::images::api::models::default_models;
use kikaku_filters::ErrorKind;

fn ok(body: Value) -> Validated {
    validate(body.to_string().as_bytes(), &default_models()).unwrap()
}

fn err(body: Value) -> GatewayError {
    validate(body.to_string().as_bytes(), &default_models()).unwrap_err()
}

#[test]
fn minimal_request_gets_defaults_and_the_upstream_id() {
    let v = ok(json!({"model": "seedream-4.5", "prompt": "a cat"}));
    assert_eq!(
        v.ark_body,
        json!({
            "model": "seedream-4-5-251128", "prompt": "a cat", "size": "2048x2048",
            "response_format": "url", "watermark": true,
            "sequential_image_generation": "disabled",
            "optimize_prompt_options": {"mode": "standard"}, "stream": false
        })
    );
    assert_eq!((v.expected_images, v.batch), (1, false));
}

#[test]
fn legacy_n_becomes_batch_mode_and_unknown_fields_are_dropped() {
    let v =
        ok(json!({"model": "seedream-4.5", "prompt": "cats", "n": 3, "user": "x", "size": "2K"}));
    assert_eq!(v.ark_body["sequential_image_generation"], "auto");
    assert_eq!(
        v.ark_body["sequential_image_generation_options"]["max_images"],
        3
    );
    assert!(v.ark_body.get("n").is_none() && v.ark_body.get("user").is_none());
    assert_eq!(v.expected_images, 3);
    // An explicit mode wins over n.
    let v = ok(
        json!({"model": "seedream-4.5", "prompt": "c", "n": 3, "sequential_image_generation": "disabled"}),
    );
    assert_eq!(v.expected_images, 1);
}

#[test]
fn model_rules() {
    assert_eq!(
        err(json!({"prompt": "x"})).kind,
        ErrorKind::MissingParameter
    );
    assert!(err(json!({"model": "dall-e", "prompt": "x"}))
        .message
        .contains("Unknown model \"dall-e\""));
    assert!(err(json!({"model": 4.5, "prompt": "x"}))
        .message
        .contains("model must be a string"));
    assert_eq!(
        ok(json!({"model": "seedream-4-0-250828", "prompt": "x"}))
            .model
            .alias,
        "seedream-4.0"
    );
}

#[test]
fn prompt_rules() {
    assert_eq!(
        err(json!({"model": "seedream-4.5"})).kind,
        ErrorKind::MissingParameter
    );
    assert!(err(json!({"model": "seedream-4.5", "prompt": " "}))
        .message
        .contains("must not be empty"));
    let long = "é".repeat(10_001);
    assert!(err(json!({"model": "seedream-4.5", "prompt": long}))
        .message
        .contains("10001 characters"));
    ok(json!({"model": "seedream-4.5", "prompt": "é".repeat(10_000)}));
}

#[test]
fn size_rules() {
    let m = |model: &str, size: &str| json!({"model": model, "prompt": "x", "size": size});
    assert_eq!(
        err(m("seedream-4.5", "5K")).message,
        "Invalid size \"5K\". Use 2K/4K or WIDTHxHEIGHT."
    );
    assert!(err(m("seedream-4.5", "1K"))
        .message
        .contains("for seedream-4.5"));
    ok(m("seedream-4.0", "1K"));
    ok(m("seedream-4.5", "4K"));
    assert!(err(m("seedream-4.5", "1280x720"))
        .message
        .contains("3686400 to 16777216"));
    ok(m("seedream-4.0", "1280x720"));
    assert!(err(m("seedream-4.0", "5000x5000"))
        .message
        .contains("pixels"));
    assert!(err(m("seedream-4.0", "16384x960"))
        .message
        .contains("aspect ratio"));
    assert!(
        err(json!({"model": "seedream-4.5", "prompt": "x", "size": 2048}))
            .message
            .contains("size must be a string")
    );
}

#[test]
fn image_rules() {
    let with = |image: Value| json!({"model": "seedream-4.5", "prompt": "x", "image": image});
    ok(with(json!("https://example.com/a.jpg")));
    ok(with(json!([jpeg_url(64, 64), "http://example.com/b.png"])));
    assert!(err(with(json!("ftp://example.com/a.jpg")))
        .message
        .starts_with("image must be an http(s) URL"));
    assert!(err(with(json!([]))).message.contains("1 to 14"));
    assert!(err(with(json!(vec!["https://e.com/a.jpg"; 15])))
        .message
        .contains("it has 15"));
    assert!(err(with(json!(["https://e.com/a.jpg", 7])))
        .message
        .contains("image[1] must be a string"));
    assert!(err(with(json!(["https://e.com/a.jpg", jpeg_url(10, 10)])))
        .message
        .starts_with("image[1] is 10x10"));
    assert!(err(with(json!(42))).message.contains("string or an array"));
}

#[test]
fn batch_rules() {
    let b = |extra: Value| {
        let mut v =
            json!({"model": "seedream-4.5", "prompt": "x", "sequential_image_generation": "auto"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    assert_eq!(ok(b(json!({}))).expected_images, 15);
    assert_eq!(
        ok(b(
            json!({"sequential_image_generation_options": {"max_images": 4}})
        ))
        .expected_images,
        4
    );
    assert!(err(b(
        json!({"sequential_image_generation_options": {"max_images": 16}})
    ))
    .message
    .contains("from 1 to 15"));
    assert!(err(b(
        json!({"sequential_image_generation_options": {"max_images": 0}})
    ))
    .message
    .contains("from 1 to 15"));
    let refs = vec!["https://e.com/a.jpg"; 3];
    assert_eq!(
        ok(b(json!({"image": refs}))).expected_images,
        12,
        "seed: 3 references leave 12"
    );
    assert!(err(b(
        json!({"image": refs, "sequential_image_generation_options": {"max_images": 13}})
    ))
    .message
    .contains("exceed 15"));
    assert!(err(b(json!({"sequential_image_generation": "always"})))
        .message
        .contains("use disabled or auto"));
    assert!(err(json!({"model": "seedream-4.5", "prompt": "x", "n": 0}))
        .message
        .contains("n must be an integer from 1 to 15"));
    assert!(
        err(json!({"model": "seedream-4.5", "prompt": "x", "n": "3"}))
            .message
            .contains("n must be an integer")
    );
}

#[test]
fn format_watermark_mode_and_stream_rules() {
    let f = |extra: Value| {
        let mut v = json!({"model": "seedream-4.0", "prompt": "x"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    assert_eq!(
        ok(f(json!({"response_format": "b64_json"}))).response_format,
        ResponseFormat::B64Json
    );
    assert!(err(f(json!({"response_format": "png"})))
        .message
        .contains("use url or b64_json"));
    assert_eq!(
        ok(f(json!({"watermark": false}))).ark_body["watermark"],
        false
    );
    assert!(err(f(json!({"watermark": "no"})))
        .message
        .contains("watermark must be a boolean"));
    assert_eq!(
        ok(f(json!({"optimize_prompt_options": {"mode": "fast"}}))).ark_body
            ["optimize_prompt_options"]["mode"],
        "fast"
    );
    let on45 = json!({"model": "seedream-4.5", "prompt": "x", "optimize_prompt_options": {"mode": "fast"}});
    assert!(err(on45)
        .message
        .contains("\"fast\" is not available on seedream-4.5; use standard"));
    assert!(
        err(f(json!({"optimize_prompt_options": {"mode": "turbo"}})))
            .message
            .contains("use standard or fast")
    );
    let streamed = ok(f(json!({"stream": true})));
    assert!(streamed.stream);
    assert_eq!(streamed.ark_body["stream"], true);
    assert!(!ok(f(json!({"stream": null}))).stream);
    assert!(err(f(json!({"stream": "yes"})))
        .message
        .contains("stream must be a boolean, not a string"));
}

#[test]
fn malformed_bodies_are_bad_requests() {
    for body in [&b"{"[..], b"[]", b"null", b"\"str\"", b"\xff\xfe"] {
        let e = validate(body, &default_models()).unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::BadRequest,
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}

/// A model that takes Ark's optional fields (as a YAML entry would).
fn five() -> Vec<ModelSpec> {
    serde_yaml::from_str(
        "- {alias: seedream-5.0-lite, upstream_id: seedream-5-0-260128, \
           presets: [2K, {name: 3K, sizes: {'1:1': 3072x3072}}], \
           min_pixels: 3686400, max_pixels: 16777216, \
           fields: [seed, guidance_scale, thinking, output_format, tools], \
           output_formats: [jpeg, png], max_references: 10, max_total_images: 12}",
    )
    .unwrap()
}

#[test]
fn optional_fields_are_forwarded_where_the_model_takes_them() {
    let body = json!({
        "model": "seedream-5.0-lite", "prompt": "x", "size": "3K", "seed": 42,
        "guidance_scale": 5.5, "output_format": "png", "tools": [{"type": "web_search"}],
        "optimize_prompt_options": {"thinking": "auto"}
    });
    let v = validate(body.to_string().as_bytes(), &five()).unwrap();
    assert_eq!(v.ark_body["seed"], 42);
    assert_eq!(v.ark_body["guidance_scale"], 5.5);
    assert_eq!(v.ark_body["output_format"], "png");
    assert_eq!(v.ark_body["tools"], json!([{"type": "web_search"}]));
    assert_eq!(
        v.ark_body["optimize_prompt_options"],
        json!({"mode": "standard", "thinking": "auto"})
    );
    let bad = |extra: Value| {
        let mut b = json!({"model": "seedream-5.0-lite", "prompt": "x"});
        for (k, val) in extra.as_object().unwrap() {
            b[k] = val.clone();
        }
        validate(b.to_string().as_bytes(), &five())
            .unwrap_err()
            .message
    };
    assert!(bad(json!({"seed": -2})).contains("seed must be an integer from -1"));
    assert!(bad(json!({"guidance_scale": 11})).contains("from 1 to 10"));
    assert!(bad(json!({"output_format": "webp"})).contains("use jpeg or png"));
    assert!(bad(json!({"tools": [{"type": "calculator"}]})).contains("tools[0]"));
    assert!(bad(json!({"optimize_prompt_options": {"thinking": "hard"}})).contains("thinking"));
    assert!(bad(json!({"max_images": 1, "n": 13})).contains("n must be an integer from 1 to 12"));
    let refs: Vec<String> = (0..11).map(|_| "https://e.com/a.png".to_string()).collect();
    assert!(bad(json!({"image": refs})).contains("1 to 10 references for seedream-5.0-lite"));
}

#[test]
fn optional_fields_are_refused_naming_the_field_and_the_model() {
    for (field, value, name) in [
        ("seed", json!(1), "seed"),
        ("guidance_scale", json!(3), "guidance_scale"),
        ("output_format", json!("png"), "output_format"),
        ("tools", json!([{"type": "web_search"}]), "tools"),
        (
            "optimize_prompt_options",
            json!({"thinking": "auto"}),
            "optimize_prompt_options.thinking",
        ),
    ] {
        let mut b = json!({"model": "seedream-4.5", "prompt": "x"});
        b[field] = value;
        let e = err(b);
        assert_eq!(e.kind, ErrorKind::InvalidParameter);
        assert_eq!(
            e.message,
            format!("{name} is not supported by seedream-4.5.")
        );
    }
}
