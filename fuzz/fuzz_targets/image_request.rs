//! The image API's request validation (`POST /v1/images/generations`):
//! any body is accepted or refused with an error, never a panic, and an
//! accepted one keeps the promises the handler relies on.
#![no_main]

use kikaku_edge::images::api::models::default_models;
use kikaku_edge::images::api::validate::{validate, MAX_PROMPT_CHARS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let models = default_models();
    let Ok(v) = validate(body, &models) else {
        return;
    };
    assert!(v.expected_images >= 1, "{}", v.expected_images);
    assert!(!v.prompt.is_empty() && v.prompt.chars().count() <= MAX_PROMPT_CHARS);
    assert!(models.iter().any(|m| m.upstream_id == v.model.upstream_id));
    // What goes to Ark is a JSON object naming the model.
    assert_eq!(
        v.ark_body["model"].as_str(),
        Some(v.model.upstream_id.as_str()),
        "{}",
        v.ark_body
    );
    serde_json::to_vec(&v.ark_body).unwrap();
});
