//! Validation and rewriting of `POST /v1/images/generations` (DESIGN §3,
//! seed 000). Every refusal is a 400 whose message names the field and the
//! rule. What passes becomes the body Ark gets: the model alias mapped to its
//! upstream id, legacy `n` turned into batch mode, defaults filled in, and
//! only Ark's fields kept.

use kikaku_filters::{ErrorKind, GatewayError};
use serde_json::{json, Map, Value};

use super::inline;
use super::models::{aspect_ok, parse_dimensions, ModelSpec};

pub const MAX_PROMPT_CHARS: usize = 10_000;
pub const MAX_REFERENCES: usize = 14;
/// Reference images + output images.
pub const MAX_TOTAL_IMAGES: u64 = 15;
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
    pub response_format: ResponseFormat,
    pub prompt: String,
    /// As the client sent it, or the default (for the gallery's `image_size`).
    pub size: String,
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

fn parse_body(body: &[u8]) -> Result<Map<String, Value>, GatewayError> {
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

pub fn validate(body: &[u8], models: &[ModelSpec]) -> Result<Validated, GatewayError> {
    let req = parse_body(body)?;
    let field = |name: &str| req.get(name).filter(|v| !v.is_null());

    // model
    let model_name = want_str("model", field("model").ok_or_else(|| missing("model"))?)?;
    let model = models
        .iter()
        .find(|m| m.alias == model_name || m.upstream_id == model_name)
        .cloned()
        .ok_or_else(|| {
            let names: Vec<&str> = models.iter().map(|m| m.alias.as_str()).collect();
            invalid(format!(
                "Unknown model \"{model_name}\". Use {}.",
                names.join(" or ")
            ))
        })?;

    // prompt
    let prompt = want_str("prompt", field("prompt").ok_or_else(|| missing("prompt"))?)?;
    if prompt.trim().is_empty() {
        return Err(invalid("prompt must not be empty."));
    }
    let chars = prompt.chars().count();
    if chars > MAX_PROMPT_CHARS {
        return Err(invalid(format!(
            "prompt has {chars} characters; at most {MAX_PROMPT_CHARS} are allowed."
        )));
    }

    // image
    let refs: Vec<&str> = match field("image") {
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
        let name = if field("image").is_some_and(Value::is_array) {
            format!("image[{i}]")
        } else {
            "image".to_string()
        };
        check_reference(r).map_err(|m| invalid(format!("{name} {m}.")))?;
    }

    // size
    let size = match field("size") {
        Some(v) => want_str("size", v)?.to_string(),
        None => DEFAULT_SIZE.to_string(),
    };
    check_size(&model, &size)?;

    // response_format, watermark
    let response_format = match field("response_format")
        .map(|v| want_str("response_format", v))
        .transpose()?
    {
        None | Some("url") => ResponseFormat::Url,
        Some("b64_json") => ResponseFormat::B64Json,
        Some(other) => {
            return Err(invalid(format!(
                "response_format \"{other}\" is not supported; use url or b64_json."
            )))
        }
    };
    let watermark = match field("watermark") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(invalid(format!(
                "watermark must be a boolean, not {}.",
                type_name(v)
            )))
        }
    };
    if let Some(v) = field("stream") {
        if v != &Value::Bool(false) {
            return Err(invalid(
                "stream is not supported; the answer is always one JSON document.",
            ));
        }
    }

    // batch mode: sequential_image_generation (+ options), or legacy n
    let mut sequential = match field("sequential_image_generation")
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
    let mut max_images = match field("sequential_image_generation_options") {
        None => None,
        Some(v) => {
            let opts = want_object("sequential_image_generation_options", v)?;
            opts.get("max_images")
                .filter(|v| !v.is_null())
                .map(|v| want_int("sequential_image_generation_options.max_images", v, 1, 15))
                .transpose()?
        }
    };
    if let Some(v) = field("n") {
        let n = want_int("n", v, 1, 15)?;
        // Legacy: n > 1 without an explicit mode means batch mode.
        if n > 1 && sequential.is_none() {
            sequential = Some("auto".into());
            max_images = Some(n);
        }
    }
    let batch = sequential.as_deref() == Some("auto");
    let ref_count = refs.len() as u64;
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

    // optimize_prompt_options.mode
    let mode = match field("optimize_prompt_options") {
        None => "standard".to_string(),
        Some(v) => {
            let opts = want_object("optimize_prompt_options", v)?;
            match opts.get("mode").filter(|v| !v.is_null()).map(|v| want_str("optimize_prompt_options.mode", v)).transpose()? {
                None | Some("standard") => "standard".to_string(),
                Some("fast") if model.fast_mode => "fast".to_string(),
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
    };

    // The body Ark gets: its fields only, defaults filled in.
    let mut ark = Map::new();
    ark.insert("model".into(), json!(model.upstream_id));
    ark.insert("prompt".into(), json!(prompt));
    if let Some(img) = field("image") {
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
        json!(if batch { "auto" } else { "disabled" }),
    );
    if batch {
        ark.insert(
            "sequential_image_generation_options".into(),
            json!({ "max_images": outputs }),
        );
    }
    ark.insert("optimize_prompt_options".into(), json!({ "mode": mode }));
    ark.insert("stream".into(), json!(false));

    Ok(Validated {
        expected_images: outputs as u32,
        batch,
        response_format,
        prompt: prompt.to_string(),
        size,
        model,
        ark_body: Value::Object(ark),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_api::inline::tests::jpeg_url;
    use crate::image_api::models::default_models;

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
        let v = ok(
            json!({"model": "seedream-4.5", "prompt": "cats", "n": 3, "user": "x", "size": "2K"}),
        );
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
            let mut v = json!({"model": "seedream-4.5", "prompt": "x", "sequential_image_generation": "auto"});
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
        assert!(err(on45).message.contains("not seedream-4.5"));
        assert!(
            err(f(json!({"optimize_prompt_options": {"mode": "turbo"}})))
                .message
                .contains("use standard or fast")
        );
        assert!(err(f(json!({"stream": true})))
            .message
            .contains("stream is not supported"));
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
}
