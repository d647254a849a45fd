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
    default_models, output_tokens, parse_dimensions, preset_dims, ExtraField, ModelSpec,
    OutputFormat, PresetSpec, PromptMode,
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
    #[serde(default)]
    seed: Option<Value>,
    #[serde(default)]
    guidance_scale: Option<Value>,
    #[serde(default)]
    output_format: Option<String>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    optimize_prompt_options: Option<Value>,
}

/// The models this Ark serves: the two the gateway ships with, and
/// Seedream 5.0 lite, which a gateway serves once its YAML names it (the
/// values are this simulator's; confirm them against Ark's documentation).
pub fn catalogue() -> Vec<ModelSpec> {
    let mut models = default_models();
    let three_k = crate::config::PresetTable {
        name: "3K".into(),
        sizes: [
            ("1:1", "3072x3072"),
            ("4:3", "3456x2592"),
            ("3:4", "2592x3456"),
            ("16:9", "4096x2304"),
            ("9:16", "2304x4096"),
        ]
        .iter()
        .map(|(r, s)| (r.to_string(), s.to_string()))
        .collect(),
    };
    models.push(ModelSpec {
        alias: "seedream-5.0-lite".into(),
        upstream_id: "seedream-5-0-260128".into(),
        presets: vec![
            PresetSpec::BuiltIn("2K".into()),
            PresetSpec::Table(three_k),
            PresetSpec::BuiltIn("4K".into()),
        ],
        min_pixels: 3_686_400,
        max_pixels: 16_777_216,
        prompt_modes: vec![PromptMode::Standard],
        fields: vec![
            ExtraField::OutputFormat,
            ExtraField::Tools,
            ExtraField::Thinking,
        ],
        max_references: 14,
        max_total_images: 15,
        output_formats: vec![OutputFormat::Jpeg, OutputFormat::Png],
    });
    models
}

/// A field the model does not take, as Ark refuses it.
fn unsupported(req: &ArkRequest, model: &ModelSpec) -> Option<&'static str> {
    let thinking = req
        .optimize_prompt_options
        .as_ref()
        .is_some_and(|o| o.get("thinking").is_some());
    let given = [
        (ExtraField::Seed, req.seed.is_some()),
        (ExtraField::GuidanceScale, req.guidance_scale.is_some()),
        (ExtraField::OutputFormat, req.output_format.is_some()),
        (ExtraField::Tools, req.tools.is_some()),
        (ExtraField::Thinking, thinking),
    ];
    given
        .iter()
        .find(|(f, present)| *present && !model.fields.contains(f))
        .map(|(f, _)| f.request_name())
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
    let Some(model) = catalogue().into_iter().find(|m| m.upstream_id == req.model) else {
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
    if let Some(field) = unsupported(&req, &model) {
        return ark_error(
            400,
            "InvalidParameter",
            &format!(
                "The parameter `{field}` specified in the request is not valid for model {}.",
                model.upstream_id
            ),
        );
    }
    let png = match req.output_format.as_deref() {
        None | Some("jpeg") => false,
        Some("png") if model.output_formats.contains(&OutputFormat::Png) => true,
        Some(other) => {
            return ark_error(
                400,
                "InvalidParameter",
                &format!(
                    "The parameter `output_format` specified in the request is not valid: {other}."
                ),
            )
        }
    };
    let size = req.size.as_deref().unwrap_or("2048x2048");
    let (w, h) = if let Some(dims) = preset_dims(&model, size, &req.prompt) {
        dims
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
            let bytes = sim.jpegs.get_as(w, h, png).await;
            data.push(json!({"b64_json": base64::engine::general_purpose::STANDARD.encode(&bytes), "size": size_str}));
        } else {
            let id = format!("img-{:08}", sim.next_id.fetch_add(1, Ordering::Relaxed));
            sim.images.lock().insert(
                id.clone(),
                StoredImage {
                    w,
                    h,
                    png,
                    created: Instant::now(),
                },
            );
            let ext = if png { "png" } else { "jpeg" };
            data.push(
                json!({"url": format!("{}/images/{id}.{ext}", sim.base_url()), "size": size_str}),
            );
        }
        ok += 1;
        tokens += output_tokens(w, h);
    }
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut answer = json!({
        "model": model.upstream_id,
        "created": created,
        "data": data,
        "usage": {"generated_images": ok, "output_tokens": tokens, "total_tokens": tokens},
    });
    if refs > 0 {
        answer["usage"]["input_images"] = json!(refs);
    }
    if let Some(tools) = &req.tools {
        // One web search per tool asked for, as Ark reports it.
        answer["tool_usage"] = json!({"web_search": tools.len()});
    }
    json(200, &answer)
}
