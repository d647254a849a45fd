//! `handler: {type: image_generation}`: the image route's settings and the
//! models it serves (DESIGN §3).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageGenerationConfig {
    /// The upstream (Ark endpoints) in `upstreams`.
    pub upstream: String,
    /// Ark's API key, normally `${ARK_API_KEY}`. Never the client's key.
    pub api_key: String,
    /// Overall deadline including fallback calls; past it the answer is 504.
    #[serde(default = "default_deadline")]
    pub deadline_seconds: u64,
    /// Larger request bodies get 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Gateway-wide images per minute per model (Ark's limit), fallback included.
    #[serde(default = "default_model_ceiling")]
    pub model_images_per_minute: u32,
    /// Model aliases; default: seedream-4.5 and seedream-4.0 (DESIGN §3).
    #[serde(default)]
    pub models: Option<Vec<ModelSpec>>,
}

fn default_deadline() -> u64 {
    120
}
fn default_max_body() -> usize {
    // 14 references of 10 MB, base64-encoded, and room for the rest.
    200 << 20
}
fn default_model_ceiling() -> u32 {
    500
}

/// One model: its alias, Ark id, size presets and pixel range.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// What clients send (`seedream-4.5`).
    pub alias: String,
    /// What Ark expects (`seedream-4-5-251128`).
    pub upstream_id: String,
    /// Preset names this model accepts (`2K`, `4K`, ...).
    pub presets: Vec<String>,
    pub min_pixels: u64,
    pub max_pixels: u64,
    /// Whether `optimize_prompt_options.mode: fast` is allowed.
    pub fast_mode: bool,
}
