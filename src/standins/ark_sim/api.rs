//! Ark's image-generation request and response, as the simulator answers them.

use std::sync::atomic::Ordering;
use std::time::Instant;

use base64::Engine;
use bytes::Bytes;
use hyper::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{full, Body, Simulator, StoredImage};
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
    #[serde(default)]
    stream: bool,
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

pub fn json(status: u16, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(full(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

/// Ark's error envelope.
pub fn ark_error(status: u16, code: &str, message: &str) -> Response<Body> {
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

/// What one generation request will make, once it has passed Ark's checks.
pub struct Plan {
    pub model_id: String,
    pub w: u32,
    pub h: u32,
    pub png: bool,
    pub b64: bool,
    /// Images to make (1, or what `auto` yields).
    pub count: u32,
    /// The prompt holds the content-filter word: the first image fails.
    pub filtered: bool,
    /// Reference images sent (`usage.input_images`).
    pub refs: u32,
    /// Tools asked for (`usage.tool_usage.web_search`).
    pub tools: Option<usize>,
    /// `stream: true`.
    pub stream: bool,
}

/// Ark's error envelope, as a refusal of [`plan`].
fn refuse(status: u16, code: &str, message: &str) -> Box<Response<Body>> {
    Box::new(ark_error(status, code, message))
}

/// Check a request as Ark does; its refusal is the `Err` answer.
pub fn plan(sim: &Simulator, body: &[u8]) -> Result<Plan, Box<Response<Body>>> {
    *sim.last_request.lock() = Some(Bytes::copy_from_slice(body));
    let req: ArkRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return Err(refuse(
                400,
                "InvalidParameter",
                &format!("The request body is invalid: {e}"),
            ))
        }
    };
    let Some(model) = catalogue().into_iter().find(|m| m.upstream_id == req.model) else {
        return Err(refuse(
            404,
            "InvalidEndpointOrModel.NotFound",
            &format!(
                "The model or endpoint {} does not exist or you do not have access to it.",
                req.model
            ),
        ));
    };
    if req.prompt.is_empty() {
        return Err(refuse(
            400,
            "MissingParameter",
            "The request failed because it is missing one or multiple required parameters: prompt.",
        ));
    }
    if let Some(field) = unsupported(&req, &model) {
        return Err(refuse(
            400,
            "InvalidParameter",
            &format!(
                "The parameter `{field}` specified in the request is not valid for model {}.",
                model.upstream_id
            ),
        ));
    }
    let png = match req.output_format.as_deref() {
        None | Some("jpeg") => false,
        Some("png") if model.output_formats.contains(&OutputFormat::Png) => true,
        Some(other) => {
            return Err(refuse(
                400,
                "InvalidParameter",
                &format!(
                    "The parameter `output_format` specified in the request is not valid: {other}."
                ),
            ))
        }
    };
    let size = req.size.as_deref().unwrap_or("2048x2048");
    let (w, h) = if let Some(dims) = preset_dims(&model, size, &req.prompt) {
        dims
    } else if let Some((w, h)) = parse_dimensions(size) {
        let px = u64::from(w) * u64::from(h);
        if px < model.min_pixels || px > model.max_pixels {
            return Err(refuse(
                400,
                "InvalidParameter",
                &format!("The parameter `size` specified in the request is not valid: {size}."),
            ));
        }
        (w, h)
    } else {
        return Err(refuse(
            400,
            "InvalidParameter",
            &format!("The parameter `size` specified in the request is not valid: {size}."),
        ));
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

    Ok(Plan {
        model_id: model.upstream_id,
        w,
        h,
        png,
        b64,
        count,
        filtered,
        refs,
        tools: req.tools.as_ref().map(Vec::len),
        stream: req.stream,
    })
}

/// Image `i` of a plan: Ark's `data[]` entry, an image or its error.
pub async fn image(sim: &Simulator, plan: &Plan, i: u32) -> Value {
    let (w, h, png) = (plan.w, plan.h, plan.png);
    if plan.filtered && i == 0 {
        return json!({"error": {
            "code": SENSITIVE_OUTPUT,
            "message": "The request failed because the output image may contain sensitive information."
        }});
    }
    let size = format!("{w}x{h}");
    if plan.b64 {
        let bytes = sim.jpegs.get_as(w, h, png).await;
        return json!({"b64_json": base64::engine::general_purpose::STANDARD.encode(&bytes), "size": size});
    }
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
    json!({"url": format!("{}/images/{id}.{ext}", sim.base_url()), "size": size})
}

/// Ark's `usage` for `ok` images of the plan, with `input_images` when
/// references were sent and `tool_usage` (one web search per tool) when
/// tools were asked for, where Ark's SDK reads them.
pub fn usage(plan: &Plan, ok: u64) -> Value {
    let tokens = ok * output_tokens(plan.w, plan.h);
    let mut usage =
        json!({"generated_images": ok, "output_tokens": tokens, "total_tokens": tokens});
    if plan.refs > 0 {
        usage["input_images"] = json!(plan.refs);
    }
    if let Some(n) = plan.tools {
        usage["tool_usage"] = json!({"web_search": n});
    }
    usage
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The whole answer, not streamed.
pub async fn generate(sim: &Simulator, plan: &Plan) -> Response<Body> {
    let mut data = Vec::with_capacity(plan.count as usize);
    for i in 0..plan.count {
        data.push(image(sim, plan, i).await);
    }
    let ok = data.iter().filter(|d| d.get("error").is_none()).count() as u64;
    let answer = json!({
        "model": plan.model_id,
        "created": unix_now(),
        "data": data,
        "usage": usage(plan, ok),
    });
    json(200, &answer)
}
