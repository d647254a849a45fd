//! Validation and rewriting of `POST /v1/images/generations` (DESIGN §3,
//! seed 000). Every refusal is a 400 whose message names the field and the
//! rule. What passes becomes the body Ark gets: the model alias mapped to its
//! upstream id, legacy `n` turned into batch mode, defaults filled in, and
//! only Ark's fields kept.

use kikaku_filters::GatewayError;
use serde_json::{json, Map, Value};

mod fields;
#[cfg(test)]
mod tests;

use super::models::ModelSpec;
use fields::{
    batch, extras, model, optimize_options, parse_body, prompt, references, response_format, size,
    stream, watermark, Fields,
};

pub const MAX_PROMPT_CHARS: usize = 10_000;
pub const DEFAULT_SIZE: &str = "2048x2048";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    Url,
    B64Json,
}

/// A request that passed every rule, ready for Ark.
#[derive(Debug, Clone)]
pub struct Validated {
    pub model: ModelSpec,
    /// The body to send to Ark.
    pub ark_body: Value,
    /// Images the request may produce (1, or `max_images` under `auto`).
    pub expected_images: u32,
    pub batch: bool,
    /// `stream: true`: the answer is Ark's server-sent events.
    pub stream: bool,
    pub response_format: ResponseFormat,
    pub prompt: String,
    /// As the client sent it, or the default (for the gallery's `image_size`).
    pub size: String,
}

pub fn validate(body: &[u8], models: &[ModelSpec]) -> Result<Validated, GatewayError> {
    let req = parse_body(body)?;
    let f = Fields(&req);
    let model = model(&f, models)?;
    let prompt = prompt(&f)?;
    let refs = references(&f, &model)?;
    let size = size(&f, &model)?;
    let response_format = response_format(&f)?;
    let watermark = watermark(&f)?;
    let stream = stream(&f)?;
    let outputs = batch(&f, refs.len() as u64, &model)?;
    let optimize = optimize_options(&f, &model)?;
    let extra = extras(&f, &model)?;

    // The body Ark gets: its fields only, defaults filled in.
    let mut ark = Map::new();
    ark.insert("model".into(), json!(model.upstream_id));
    ark.insert("prompt".into(), json!(prompt));
    if let Some(img) = f.get("image") {
        ark.insert("image".into(), img.clone());
    }
    ark.insert("size".into(), json!(size));
    ark.insert(
        "response_format".into(),
        json!(if response_format == ResponseFormat::Url {
            "url"
        } else {
            "b64_json"
        }),
    );
    ark.insert("watermark".into(), json!(watermark));
    ark.insert(
        "sequential_image_generation".into(),
        json!(if outputs.is_some() {
            "auto"
        } else {
            "disabled"
        }),
    );
    if let Some(n) = outputs {
        ark.insert(
            "sequential_image_generation_options".into(),
            json!({ "max_images": n }),
        );
    }
    ark.insert("optimize_prompt_options".into(), Value::Object(optimize));
    ark.extend(extra);
    ark.insert("stream".into(), json!(stream));

    Ok(Validated {
        expected_images: outputs.unwrap_or(1) as u32,
        batch: outputs.is_some(),
        stream,
        response_format,
        prompt: prompt.to_string(),
        size,
        model,
        ark_body: Value::Object(ark),
    })
}
