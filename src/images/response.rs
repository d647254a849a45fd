//! The client's answer (DESIGN §3): `data` always an array in request order,
//! per-image errors kept as items, `usage` recomputed from the images that
//! succeeded: Σ ⌈w × h / 256⌉.

use serde_json::{json, Value};

use crate::images::api::models::{output_tokens, parse_dimensions};
use crate::images::api::ARK_SENSITIVE_OUTPUT as SENSITIVE_OUTPUT;

use super::ark_client::ArkFailure;

/// One `data[]` entry and, when it is an image, its size.
pub struct Item {
    pub value: Value,
    pub size: Option<(u32, u32)>,
}

impl Item {
    /// From one entry of Ark's `data[]`, taken by value: a `b64_json`
    /// image (megabytes) moves into the answer instead of being copied.
    pub fn from_ark(v: Value) -> Item {
        let Value::Object(mut v) = v else {
            return Item::without_image();
        };
        if let Some(err) = v.get("error") {
            let code = err["code"].as_str().unwrap_or("UpstreamError");
            let value = if code == SENSITIVE_OUTPUT || code == "ContentFilter" {
                json!({"error": {"code": "ContentFilter", "message": "Image rejected by content filter"}})
            } else {
                json!({"error": {"code": code, "message": err["message"].as_str().unwrap_or("The image failed.")}})
            };
            return Item { value, size: None };
        }
        let size = v
            .get("size")
            .and_then(Value::as_str)
            .and_then(parse_dimensions);
        let mut value = serde_json::Map::new();
        for field in ["url", "b64_json", "size"] {
            if let Some(x) = v.remove(field) {
                value.insert(field.into(), x);
            }
        }
        if size.is_none() || !(value.contains_key("url") || value.contains_key("b64_json")) {
            return Item::without_image();
        }
        Item {
            value: Value::Object(value),
            size,
        }
    }

    fn without_image() -> Item {
        Item {
            value: json!({"error": {"code": "UpstreamError", "message": "The upstream returned an image without a size or content."}}),
            size: None,
        }
    }

    /// A fallback call that failed.
    pub fn failed(f: &ArkFailure) -> Item {
        let (code, message) = match f {
            ArkFailure::Timeout => (
                "Timeout",
                "The image was not generated before the deadline.".to_string(),
            ),
            ArkFailure::Status { code, message, .. } | ArkFailure::MidStream { code, message }
                if !code.is_empty() =>
            {
                (code.as_str(), message.clone())
            }
            other => ("UpstreamError", describe(other)),
        };
        Item {
            value: json!({"error": {"code": code, "message": message}}),
            size: None,
        }
    }
}

pub fn describe(f: &ArkFailure) -> String {
    match f {
        ArkFailure::NoEndpoint => "No healthy image upstream endpoint.".into(),
        ArkFailure::Full(_) => "The image upstream is at its limit of requests in flight.".into(),
        ArkFailure::Transport(m) => format!("The image upstream connection failed: {m}"),
        ArkFailure::Timeout => "The image upstream did not answer in time.".into(),
        ArkFailure::Status {
            status,
            code,
            message,
        } => {
            format!("The image upstream answered {status} {code}: {message}")
        }
        ArkFailure::BadBody(m) => format!("The image upstream sent an unreadable answer: {m}"),
        ArkFailure::MidStream { code, message } => {
            format!("The image upstream's stream failed ({code}): {message}")
        }
    }
}

/// What Ark reports that the gateway passes on as it is: `usage.input_images`
/// (of the first call, which carried the references) and
/// `usage.tool_usage` (added up over every call, fallbacks included), where
/// Ark's own SDK reads them.
#[derive(Debug, Default)]
pub struct Passed {
    pub input_images: Option<Value>,
    pub tool_usage: Option<serde_json::Map<String, Value>>,
}

impl Passed {
    pub fn from_ark(resp: &Value) -> Passed {
        Passed {
            input_images: resp["usage"].get("input_images").cloned(),
            tool_usage: resp["usage"]
                .get("tool_usage")
                .and_then(Value::as_object)
                .cloned(),
        }
    }

    /// Add a fallback call's `tool_usage` (numbers are summed).
    pub fn add_tools(&mut self, more: Option<serde_json::Map<String, Value>>) {
        let Some(more) = more else { return };
        let mine = self.tool_usage.get_or_insert_with(Default::default);
        for (k, v) in more {
            let sum = match (mine.get(&k).and_then(Value::as_u64), v.as_u64()) {
                (Some(a), Some(b)) => Value::from(a + b),
                _ => v,
            };
            mine.insert(k, sum);
        }
    }

    pub fn apply(self, body: &mut Value) {
        if let Some(n) = self.input_images {
            body["usage"]["input_images"] = n;
        }
        if let Some(t) = self.tool_usage {
            body["usage"]["tool_usage"] = Value::Object(t);
        }
    }
}

pub struct Answer {
    pub body: Value,
    pub images: u64,
    pub tokens: u64,
}

pub fn answer(model_id: &str, created: u64, items: Vec<Item>) -> Answer {
    let mut images = 0;
    let mut tokens = 0;
    for (w, h) in items.iter().filter_map(|i| i.size) {
        images += 1;
        tokens += output_tokens(w, h);
    }
    let data: Vec<Value> = items.into_iter().map(|i| i.value).collect();
    Answer {
        body: json!({
            "model": model_id,
            "created": created,
            "data": data,
            "usage": {"generated_images": images, "output_tokens": tokens, "total_tokens": tokens},
        }),
        images,
        tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_only_successful_images() {
        let items = vec![
            Item::from_ark(json!({"url": "https://x/1.jpeg", "size": "1760x2368"})),
            Item::from_ark(json!({"error": {"code": SENSITIVE_OUTPUT, "message": "m"}})),
            Item::from_ark(json!({"b64_json": "AAAA", "size": "2048x2048"})),
            Item::failed(&ArkFailure::Timeout),
        ];
        let a = answer("seedream-4-5-251128", 7, items);
        assert_eq!((a.images, a.tokens), (2, 16_280 + 16_384));
        assert_eq!(a.body["usage"]["total_tokens"], 32_664);
        assert_eq!(a.body["data"][1]["error"]["code"], "ContentFilter");
        assert_eq!(
            a.body["data"][1]["error"]["message"],
            "Image rejected by content filter"
        );
        assert_eq!(a.body["data"][3]["error"]["code"], "Timeout");
        assert!(a.body["data"][0].get("b64_json").is_none());
    }

    #[test]
    fn input_images_and_tool_usage_pass_through() {
        let first = json!({"usage": {"input_images": 2, "tool_usage": {"web_search": 1}}});
        let mut p = Passed::from_ark(&first);
        p.add_tools(
            Passed::from_ark(&json!({"usage": {"tool_usage": {"web_search": 1}}})).tool_usage,
        );
        p.add_tools(None);
        let mut a = answer("m", 0, vec![]);
        p.apply(&mut a.body);
        assert_eq!(a.body["usage"]["input_images"], 2);
        assert_eq!(a.body["usage"]["tool_usage"], json!({"web_search": 2}));
        let mut plain = answer("m", 0, vec![]);
        Passed::from_ark(&json!({"usage": {}})).apply(&mut plain.body);
        assert!(
            plain.body["usage"].get("input_images").is_none()
                && plain.body["usage"].get("tool_usage").is_none()
        );
    }

    #[test]
    fn images_without_size_are_not_billed() {
        let a = answer(
            "m",
            0,
            vec![
                Item::from_ark(json!({"url": "https://x/1.jpeg"})),
                Item::from_ark(json!("not an object")),
            ],
        );
        assert_eq!(a.images, 0);
        assert_eq!(a.body["data"][0]["error"]["code"], "UpstreamError");
        assert_eq!(a.body["data"][1]["error"]["code"], "UpstreamError");
    }
}
