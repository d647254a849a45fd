//! One check per field of the request, each naming the field and the
//! rule in its refusal (a 400).

use kikaku_filters::{ErrorKind, GatewayError};
use serde_json::{Map, Value};

use super::super::inline;
use super::super::models::{aspect_ok, parse_dimensions, ExtraField, ModelSpec};
use super::{ResponseFormat, DEFAULT_SIZE, MAX_PROMPT_CHARS};

/// The request's fields; a `null` counts as absent.
pub(super) struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }
}

fn invalid(msg: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorKind::InvalidParameter, msg)
}

fn missing(field: &str) -> GatewayError {
    GatewayError::new(ErrorKind::MissingParameter, format!("{field} is required."))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn want_str<'a>(field: &str, v: &'a Value) -> Result<&'a str, GatewayError> {
    v.as_str()
        .ok_or_else(|| invalid(format!("{field} must be a string, not {}.", type_name(v))))
}

fn want_object<'a>(field: &str, v: &'a Value) -> Result<&'a Map<String, Value>, GatewayError> {
    v.as_object()
        .ok_or_else(|| invalid(format!("{field} must be an object, not {}.", type_name(v))))
}

/// An integer within `[lo, hi]`.
fn want_int(field: &str, v: &Value, lo: u64, hi: u64) -> Result<u64, GatewayError> {
    match v.as_u64() {
        Some(n) if (lo..=hi).contains(&n) => Ok(n),
        _ if v.is_number() => Err(invalid(format!(
            "{field} must be an integer from {lo} to {hi}."
        ))),
        _ => Err(invalid(format!(
            "{field} must be an integer, not {}.",
            type_name(v)
        ))),
    }
}

pub(super) fn parse_body(body: &[u8]) -> Result<Map<String, Value>, GatewayError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::new(
            ErrorKind::BadRequest,
            format!("The body is not valid JSON: {e}."),
        )
    })?;
    match v {
        Value::Object(m) => Ok(m),
        other => Err(GatewayError::new(
            ErrorKind::BadRequest,
            format!("The body must be a JSON object, not {}.", type_name(&other)),
        )),
    }
}

/// `model`: an alias or an upstream id of a configured model.
pub(super) fn model(f: &Fields<'_>, models: &[ModelSpec]) -> Result<ModelSpec, GatewayError> {
    let model_name = want_str("model", f.get("model").ok_or_else(|| missing("model"))?)?;
    models
        .iter()
        .find(|m| m.alias == model_name || m.upstream_id == model_name)
        .cloned()
        .ok_or_else(|| {
            let names: Vec<&str> = models.iter().map(|m| m.alias.as_str()).collect();
            invalid(format!(
                "Unknown model \"{model_name}\". Use {}.",
                names.join(" or ")
            ))
        })
}

/// `prompt`: not blank, at most `MAX_PROMPT_CHARS` characters.
pub(super) fn prompt<'a>(f: &Fields<'a>) -> Result<&'a str, GatewayError> {
    let prompt = want_str("prompt", f.get("prompt").ok_or_else(|| missing("prompt"))?)?;
    if prompt.trim().is_empty() {
        return Err(invalid("prompt must not be empty."));
    }
    let chars = prompt.chars().count();
    if chars > MAX_PROMPT_CHARS {
        return Err(invalid(format!(
            "prompt has {chars} characters; at most {MAX_PROMPT_CHARS} are allowed."
        )));
    }
    Ok(prompt)
}

/// `image`: one reference or 1 to the model's `max_references` of them,
/// each an http(s) URL or an inline data URL.
pub(super) fn references<'a>(
    f: &Fields<'a>,
    model: &ModelSpec,
) -> Result<Vec<&'a str>, GatewayError> {
    let max = model.max_references as usize;
    let refs: Vec<&str> = match f.get("image") {
        None => vec![],
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => {
            if items.is_empty() || items.len() > max {
                return Err(invalid(format!(
                    "image must hold 1 to {max} references for {}; it has {}.",
                    model.alias,
                    items.len()
                )));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, v)| want_str(&format!("image[{i}]"), v))
                .collect::<Result<_, _>>()?
        }
        Some(other) => {
            return Err(invalid(format!(
                "image must be a string or an array of strings, not {}.",
                type_name(other)
            )))
        }
    };
    for (i, r) in refs.iter().enumerate() {
        let name = if f.get("image").is_some_and(Value::is_array) {
            format!("image[{i}]")
        } else {
            "image".to_string()
        };
        check_reference(r).map_err(|m| invalid(format!("{name} {m}.")))?;
    }
    Ok(refs)
}

/// `size`: a preset of the model or WIDTHxHEIGHT in its pixel range.
pub(super) fn size(f: &Fields<'_>, model: &ModelSpec) -> Result<String, GatewayError> {
    let size = match f.get("size") {
        Some(v) => want_str("size", v)?.to_string(),
        None => DEFAULT_SIZE.to_string(),
    };
    check_size(model, &size)?;
    Ok(size)
}

/// `response_format`: `url` (default) or `b64_json`.
pub(super) fn response_format(f: &Fields<'_>) -> Result<ResponseFormat, GatewayError> {
    match f
        .get("response_format")
        .map(|v| want_str("response_format", v))
        .transpose()?
    {
        None | Some("url") => Ok(ResponseFormat::Url),
        Some("b64_json") => Ok(ResponseFormat::B64Json),
        Some(other) => Err(invalid(format!(
            "response_format \"{other}\" is not supported; use url or b64_json."
        ))),
    }
}

/// `watermark`: a boolean, default true.
pub(super) fn watermark(f: &Fields<'_>) -> Result<bool, GatewayError> {
    match f.get("watermark") {
        None => Ok(true),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(invalid(format!(
            "watermark must be a boolean, not {}.",
            type_name(v)
        ))),
    }
}

/// `stream`: a boolean (default false); `true` asks for Ark's server-sent
/// events.
pub(super) fn stream(f: &Fields<'_>) -> Result<bool, GatewayError> {
    match f.get("stream") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(invalid(format!(
            "stream must be a boolean, not {}.",
            type_name(v)
        ))),
    }
}

/// Batch mode: `sequential_image_generation` (+ its options), or legacy
/// `n`. `Some(images)` under `auto` (references and outputs together at
/// most the model's `max_total_images`), `None` for one image.
pub(super) fn batch(
    f: &Fields<'_>,
    ref_count: u64,
    model: &ModelSpec,
) -> Result<Option<u64>, GatewayError> {
    let total = u64::from(model.max_total_images);
    let mut sequential = match f
        .get("sequential_image_generation")
        .map(|v| want_str("sequential_image_generation", v))
        .transpose()?
    {
        None => None,
        Some(s @ ("disabled" | "auto")) => Some(s.to_string()),
        Some(other) => {
            return Err(invalid(format!(
                "sequential_image_generation \"{other}\" is not supported; use disabled or auto."
            )))
        }
    };
    let mut max_images = match f.get("sequential_image_generation_options") {
        None => None,
        Some(v) => {
            let opts = want_object("sequential_image_generation_options", v)?;
            opts.get("max_images")
                .filter(|v| !v.is_null())
                .map(|v| {
                    want_int(
                        "sequential_image_generation_options.max_images",
                        v,
                        1,
                        total,
                    )
                })
                .transpose()?
        }
    };
    if let Some(v) = f.get("n") {
        let n = want_int("n", v, 1, total)?;
        // Legacy: n > 1 without an explicit mode means batch mode.
        if n > 1 && sequential.is_none() {
            sequential = Some("auto".into());
            max_images = Some(n);
        }
    }
    let batch = sequential.as_deref() == Some("auto");
    let outputs = if batch {
        match max_images {
            Some(m) if ref_count + m > total => {
                return Err(invalid(format!(
                    "{ref_count} reference image(s) + max_images {m} exceed {total}; reference and output images together must be at most {total}."
                )))
            }
            Some(m) => m,
            // Ark's default of 15, less the references (seed: 3 refs → 12).
            None => total.saturating_sub(ref_count),
        }
    } else {
        1
    };
    if batch && outputs == 0 {
        return Err(invalid(format!(
            "{ref_count} reference images leave no room for output; reference and output images together must be at most {total}."
        )));
    }
    Ok(batch.then_some(outputs))
}

/// `optimize_prompt_options`: `mode` (`standard`, the default, or one of
/// the model's `prompt_modes`) and, where the model takes it, `thinking`.
pub(super) fn optimize_options(
    f: &Fields<'_>,
    model: &ModelSpec,
) -> Result<Map<String, Value>, GatewayError> {
    let mut out = Map::new();
    let opts = match f.get("optimize_prompt_options") {
        None => None,
        Some(v) => Some(want_object("optimize_prompt_options", v)?),
    };
    let get = |k: &str| opts.and_then(|o| o.get(k)).filter(|v| !v.is_null());
    let mode = match get("mode")
        .map(|v| want_str("optimize_prompt_options.mode", v))
        .transpose()?
    {
        None => "standard",
        Some(m) => {
            let allowed: Vec<&str> = model.prompt_modes.iter().map(|p| p.as_str()).collect();
            if !allowed.contains(&m) {
                let known = ["standard", "fast"].contains(&m);
                return Err(invalid(if known {
                    format!(
                        "optimize_prompt_options.mode \"{m}\" is not available on {}; use {}.",
                        model.alias,
                        allowed.join(" or ")
                    )
                } else {
                    format!("optimize_prompt_options.mode \"{m}\" is not supported; use standard or fast.")
                }));
            }
            m
        }
    };
    out.insert("mode".into(), Value::from(mode));
    if let Some(v) = get("thinking") {
        allowed(model, ExtraField::Thinking)?;
        let t = want_str("optimize_prompt_options.thinking", v)?;
        if !["enabled", "disabled", "auto"].contains(&t) {
            return Err(invalid(format!(
                "optimize_prompt_options.thinking \"{t}\" is not supported; use enabled, disabled or auto."
            )));
        }
        out.insert("thinking".into(), Value::from(t));
    }
    Ok(out)
}

/// Refuse a field the model does not take, naming both.
fn allowed(model: &ModelSpec, field: ExtraField) -> Result<(), GatewayError> {
    if model.fields.contains(&field) {
        return Ok(());
    }
    Err(invalid(format!(
        "{} is not supported by {}.",
        field.request_name(),
        model.alias
    )))
}

/// Ark's optional fields (`seed`, `guidance_scale`, `output_format`,
/// `tools`), checked and kept for Ark when the model takes them.
pub(super) fn extras(
    f: &Fields<'_>,
    model: &ModelSpec,
) -> Result<Map<String, Value>, GatewayError> {
    let mut out = Map::new();
    if let Some(v) = f.get("seed") {
        allowed(model, ExtraField::Seed)?;
        match v.as_i64() {
            Some(n) if (-1..=2_147_483_647).contains(&n) => {
                out.insert("seed".into(), Value::from(n))
            }
            _ => return Err(invalid("seed must be an integer from -1 to 2147483647.")),
        };
    }
    if let Some(v) = f.get("guidance_scale") {
        allowed(model, ExtraField::GuidanceScale)?;
        match v.as_f64() {
            Some(g) if (1.0..=10.0).contains(&g) => out.insert("guidance_scale".into(), v.clone()),
            _ => return Err(invalid("guidance_scale must be a number from 1 to 10.")),
        };
    }
    if let Some(v) = f.get("output_format") {
        allowed(model, ExtraField::OutputFormat)?;
        let fmt = want_str("output_format", v)?;
        let formats: Vec<&str> = model.output_formats.iter().map(|o| o.as_str()).collect();
        if !formats.contains(&fmt) {
            return Err(invalid(format!(
                "output_format \"{fmt}\" is not available on {}; use {}.",
                model.alias,
                formats.join(" or ")
            )));
        }
        out.insert("output_format".into(), Value::from(fmt));
    }
    if let Some(v) = f.get("tools") {
        allowed(model, ExtraField::Tools)?;
        let Some(items) = v.as_array() else {
            return Err(invalid(format!(
                "tools must be an array, not {}.",
                type_name(v)
            )));
        };
        for (i, t) in items.iter().enumerate() {
            let ok = t.as_object().is_some_and(|o| {
                o.len() == 1 && o.get("type").and_then(Value::as_str) == Some("web_search")
            });
            if !ok {
                return Err(invalid(format!(
                    "tools[{i}] must be {{\"type\": \"web_search\"}}, the one tool Ark offers."
                )));
            }
        }
        out.insert("tools".into(), v.clone());
    }
    Ok(out)
}

fn check_reference(r: &str) -> Result<(), String> {
    if r.starts_with("data:") {
        return inline::check(r);
    }
    let url = reqwest::Url::parse(r)
        .map_err(|_| "must be an http(s) URL or data:image/<format>;base64,...".to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err("must be an http(s) URL or data:image/<format>;base64,...".into());
    }
    if r.len() > 4096 {
        return Err("is a URL longer than 4096 characters".into());
    }
    Ok(())
}

fn check_size(model: &ModelSpec, size: &str) -> Result<(), GatewayError> {
    let names: Vec<&str> = model.presets.iter().map(|p| p.name()).collect();
    let presets = names.join("/");
    if names.contains(&size) {
        return Ok(());
    }
    if matches!(size, "1K" | "2K" | "3K" | "4K") {
        return Err(invalid(format!(
            "Invalid size \"{size}\" for {}. Use {presets} or WIDTHxHEIGHT.",
            model.alias
        )));
    }
    let Some((w, h)) = parse_dimensions(size) else {
        return Err(invalid(format!(
            "Invalid size \"{size}\". Use {presets} or WIDTHxHEIGHT."
        )));
    };
    let px = u64::from(w) * u64::from(h);
    if px < model.min_pixels || px > model.max_pixels {
        return Err(invalid(format!(
            "Invalid size \"{size}\": {px} pixels; {} needs {} to {} pixels (WIDTH x HEIGHT).",
            model.alias, model.min_pixels, model.max_pixels
        )));
    }
    if !aspect_ok(w, h) {
        return Err(invalid(format!(
            "Invalid size \"{size}\": the aspect ratio must be within [1/16, 16]."
        )));
    }
    Ok(())
}
