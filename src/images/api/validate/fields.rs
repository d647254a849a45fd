//! One check per field of the request, each naming the field and the
//! rule in its refusal (a 400).

use kikaku_filters::{ErrorKind, GatewayError};
use serde_json::{Map, Value};

use super::super::inline;
use super::super::models::{aspect_ok, parse_dimensions, ModelSpec};
use super::{ResponseFormat, DEFAULT_SIZE, MAX_PROMPT_CHARS, MAX_REFERENCES, MAX_TOTAL_IMAGES};

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

/// `image`: one reference or 1 to `MAX_REFERENCES` of them, each an
/// http(s) URL or an inline data URL.
pub(super) fn references<'a>(f: &Fields<'a>) -> Result<Vec<&'a str>, GatewayError> {
    let refs: Vec<&str> = match f.get("image") {
        None => vec![],
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => {
            if items.is_empty() || items.len() > MAX_REFERENCES {
                return Err(invalid(format!(
                    "image must hold 1 to {MAX_REFERENCES} references; it has {}.",
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

/// `stream`: only `false`.
pub(super) fn no_stream(f: &Fields<'_>) -> Result<(), GatewayError> {
    match f.get("stream") {
        Some(v) if v != &Value::Bool(false) => Err(invalid(
            "stream is not supported; the answer is always one JSON document.",
        )),
        _ => Ok(()),
    }
}

/// Batch mode: `sequential_image_generation` (+ its options), or legacy
/// `n`. `Some(images)` under `auto` (references and outputs together at
/// most `MAX_TOTAL_IMAGES`), `None` for one image.
pub(super) fn batch(f: &Fields<'_>, ref_count: u64) -> Result<Option<u64>, GatewayError> {
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
                .map(|v| want_int("sequential_image_generation_options.max_images", v, 1, 15))
                .transpose()?
        }
    };
    if let Some(v) = f.get("n") {
        let n = want_int("n", v, 1, 15)?;
        // Legacy: n > 1 without an explicit mode means batch mode.
        if n > 1 && sequential.is_none() {
            sequential = Some("auto".into());
            max_images = Some(n);
        }
    }
    let batch = sequential.as_deref() == Some("auto");
    let outputs = if batch {
        match max_images {
            Some(m) if ref_count + m > MAX_TOTAL_IMAGES => {
                return Err(invalid(format!(
                    "{ref_count} reference image(s) + max_images {m} exceed {MAX_TOTAL_IMAGES}; reference and output images together must be at most {MAX_TOTAL_IMAGES}."
                )))
            }
            Some(m) => m,
            // Ark's default of 15, less the references (seed: 3 refs → 12).
            None => MAX_TOTAL_IMAGES - ref_count,
        }
    } else {
        1
    };
    if batch && outputs == 0 {
        return Err(invalid(format!(
            "{ref_count} reference images leave no room for output; reference and output images together must be at most {MAX_TOTAL_IMAGES}."
        )));
    }
    Ok(batch.then_some(outputs))
}

/// `optimize_prompt_options.mode`: `standard` (default) or, where the
/// model allows it, `fast`.
pub(super) fn optimize_mode(
    f: &Fields<'_>,
    model: &ModelSpec,
) -> Result<&'static str, GatewayError> {
    Ok(match f.get("optimize_prompt_options") {
        None => "standard",
        Some(v) => {
            let opts = want_object("optimize_prompt_options", v)?;
            match opts.get("mode").filter(|v| !v.is_null()).map(|v| want_str("optimize_prompt_options.mode", v)).transpose()? {
                None | Some("standard") => "standard",
                Some("fast") if model.fast_mode => "fast",
                Some("fast") => {
                    return Err(invalid(format!(
                        "optimize_prompt_options.mode \"fast\" is only available on models that support it (seedream-4.0), not {}.",
                        model.alias
                    )))
                }
                Some(other) => {
                    return Err(invalid(format!(
                        "optimize_prompt_options.mode \"{other}\" is not supported; use standard or fast."
                    )))
                }
            }
        }
    })
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
    let presets = model.presets.join("/");
    if model.presets.iter().any(|p| p == size) {
        return Ok(());
    }
    if matches!(size, "1K" | "2K" | "4K") {
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
