//! Ark's image-generation request and response, as the simulator answers them.

use std::sync::atomic::Ordering;
use std::time::Instant;

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Simulator, StoredImage};
use crate::images::api::models::{
    default_models, output_tokens, parse_dimensions, preset_size, preset_table,
};

use crate::images::api::ARK_SENSITIVE_OUTPUT as SENSITIVE_OUTPUT;

#[derive(Deserialize)]
struct ArkRequest {
    model: String,
    prompt: String,
    #[serde(default)]
    image: Option<Value>,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    response_format: Option<String>,
    #[serde(default)]
    sequential_image_generation: Option<String>,
    #[serde(default)]
    sequential_image_generation_options: Option<SeqOptions>,
}

#[derive(Deserialize)]
struct SeqOptions {
    max_images: Option<u32>,
}

pub fn json(status: u16, v: &Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

/// Ark's error envelope.
pub fn ark_error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    let kind = match status {
        400 => "BadRequest",
        401 => "Unauthorized",
        404 => "NotFound",
        429 => "TooManyRequests",
        _ => "InternalServerError",
    };
    json(
        status,
        &json!({"error": {"code": code, "message": message, "param": "", "type": kind}}),
    )
}

pub async fn generate(sim: &Simulator, body: &[u8]) -> Response<Full<Bytes>> {
    *sim.last_request.lock() = Some(Bytes::copy_from_slice(body));
    let req: ArkRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return ark_error(
                400,
                "InvalidParameter",
                &format!("The request body is invalid: {e}"),
            )
        }
    };
    let Some(model) = default_models()
        .into_iter()
        .find(|m| m.upstream_id == req.model)
    else {
        return ark_error(
            404,
            "InvalidEndpointOrModel.NotFound",
            &format!(
                "The model or endpoint {} does not exist or you do not have access to it.",
                req.model
            ),
        );
    };
    if req.prompt.is_empty() {
        return ark_error(
            400,
            "MissingParameter",
            "The request failed because it is missing one or multiple required parameters: prompt.",
        );
    }
    let size = req.size.as_deref().unwrap_or("2048x2048");
    let (w, h) = if let Some(table) = model
        .presets
        .iter()
        .any(|p| p == size)
        .then(|| preset_table(size))
        .flatten()
    {
        preset_size(table, &req.prompt)
    } else if let Some((w, h)) = parse_dimensions(size) {
        let px = u64::from(w) * u64::from(h);
        if px < model.min_pixels || px > model.max_pixels {
            return ark_error(
                400,
                "InvalidParameter",
                &format!("The parameter `size` specified in the request is not valid: {size}."),
            );
        }
        (w, h)
    } else {
        return ark_error(
            400,
            "InvalidParameter",
            &format!("The parameter `size` specified in the request is not valid: {size}."),
        );
    };
    let refs = match &req.image {
        Some(Value::Array(a)) => a.len() as u32,
        Some(_) => 1,
        None => 0,
    };
    let count = if req.sequential_image_generation.as_deref() == Some("auto") {
        let asked = req
            .sequential_image_generation_options
            .and_then(|o| o.max_images)
            .unwrap_or(15)
            .min(15u32.saturating_sub(refs));
        let cap = sim.config.auto_max_images.unwrap_or(u32::MAX);
        asked.min(cap).max(1)
    } else {
        1
    };
    let b64 = req.response_format.as_deref() == Some("b64_json");
    let filtered = req.prompt.contains(&sim.config.content_filter_word);

    let mut data = Vec::with_capacity(count as usize);
    let (mut ok, mut tokens) = (0u64, 0u64);
    for i in 0..count {
        if filtered && i == 0 {
            data.push(json!({"error": {
                "code": SENSITIVE_OUTPUT,
                "message": "The request failed because the output image may contain sensitive information."
            }}));
            continue;
        }
        let size_str = format!("{w}x{h}");
        if b64 {
            let jpeg = sim.jpegs.get(w, h).await;
            data.push(json!({"b64_json": base64::engine::general_purpose::STANDARD.encode(&jpeg), "size": size_str}));
        } else {
            let id = format!("img-{:08}", sim.next_id.fetch_add(1, Ordering::Relaxed));
            sim.images.lock().insert(
                id.clone(),
                StoredImage {
                    w,
                    h,
                    created: Instant::now(),
                },
            );
            data.push(
                json!({"url": format!("{}/images/{id}.jpeg", sim.base_url()), "size": size_str}),
            );
        }
        ok += 1;
        tokens += output_tokens(w, h);
    }
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json(
        200,
        &json!({
            "model": model.upstream_id,
            "created": created,
            "data": data,
            "usage": {"generated_images": ok, "output_tokens": tokens, "total_tokens": tokens},
        }),
    )
}
