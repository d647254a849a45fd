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

/// One model (DESIGN §3): everything the gateway checks a request against.
/// A new Seedream version is one more entry; the shipped defaults are
/// seedream-4.5 and seedream-4.0 (`images::api::models::default_models`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// What clients send (`seedream-4.5`).
    pub alias: String,
    /// What Ark expects (`seedream-4-5-251128`).
    pub upstream_id: String,
    /// Size presets: a built-in name (`1K`, `2K`, `4K`, with Ark's aspect
    /// tables) or `{name: 3K, sizes: {"1:1": 3072x3072, "16:9": ...}}`.
    pub presets: Vec<PresetSpec>,
    /// Pixel range of a `WIDTHxHEIGHT` size.
    pub min_pixels: u64,
    pub max_pixels: u64,
    /// `optimize_prompt_options.mode` values it takes (default `[standard]`).
    #[serde(default = "standard_mode")]
    pub prompt_modes: Vec<PromptMode>,
    /// Ark's optional fields it takes besides the common ones; any other
    /// is refused with `InvalidParameter` naming the field and the model.
    #[serde(default)]
    pub fields: Vec<ExtraField>,
    /// Most reference images (`image`), default 14.
    #[serde(default = "default_max_references")]
    pub max_references: u32,
    /// Most reference and output images together, default 15.
    #[serde(default = "default_max_total_images")]
    pub max_total_images: u32,
    /// `output_format` values (with `fields: [output_format]`); default `[jpeg]`.
    #[serde(default = "jpeg_only")]
    pub output_formats: Vec<OutputFormat>,
}

/// A size preset: a built-in name, or a name with its own aspect table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum PresetSpec {
    BuiltIn(String),
    Table(PresetTable),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetTable {
    pub name: String,
    /// Ratio (`16:9`) → `WIDTHxHEIGHT`; the prompt's first named ratio
    /// picks one, else `1:1` (or the first).
    pub sizes: std::collections::BTreeMap<String, String>,
}

impl PresetSpec {
    pub fn name(&self) -> &str {
        match self {
            PresetSpec::BuiltIn(n) => n,
            PresetSpec::Table(t) => &t.name,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptMode {
    Standard,
    Fast,
}

impl PromptMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PromptMode::Standard => "standard",
            PromptMode::Fast => "fast",
        }
    }
}

/// Ark's request fields that only some models take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtraField {
    /// `seed`: an integer from -1 to 2147483647.
    Seed,
    /// `guidance_scale`: a number from 1 to 10.
    GuidanceScale,
    /// `optimize_prompt_options.thinking`: `enabled`, `disabled` or `auto`.
    Thinking,
    /// `output_format`: one of the model's `output_formats`.
    OutputFormat,
    /// `tools`: `[{"type": "web_search"}]`.
    Tools,
}

impl ExtraField {
    /// The field's name in a request.
    pub fn request_name(self) -> &'static str {
        match self {
            ExtraField::Seed => "seed",
            ExtraField::GuidanceScale => "guidance_scale",
            ExtraField::Thinking => "optimize_prompt_options.thinking",
            ExtraField::OutputFormat => "output_format",
            ExtraField::Tools => "tools",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    Jpeg,
    Png,
}

impl OutputFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpeg",
            OutputFormat::Png => "png",
        }
    }
}

fn standard_mode() -> Vec<PromptMode> {
    vec![PromptMode::Standard]
}
fn default_max_references() -> u32 {
    14
}
fn default_max_total_images() -> u32 {
    15
}
fn jpeg_only() -> Vec<OutputFormat> {
    vec![OutputFormat::Jpeg]
}

/// The built-in presets (Ark's aspect tables for them are in the runtime).
pub const BUILT_IN_PRESETS: [&str; 3] = ["1K", "2K", "4K"];

/// `WIDTHxHEIGHT` → pixels, if it is that.
fn pixels(s: &str) -> Option<u64> {
    let (w, h) = s.split_once(['x', 'X'])?;
    let (w, h): (u64, u64) = (w.parse().ok()?, h.parse().ok()?);
    (w > 0 && h > 0).then_some(w * h)
}

/// What is wrong with a route's models, each with its path under
/// `models` (`[1].presets[0]`) and a message.
pub fn model_problems(models: &[ModelSpec]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, m) in models.iter().enumerate() {
        let mut bad = |path: &str, msg: String| out.push((format!("[{i}]{path}"), msg));
        if m.alias.is_empty() || m.upstream_id.is_empty() {
            bad("", "alias and upstream_id must not be empty".into());
        }
        for name in [&m.alias, &m.upstream_id] {
            if !names.insert(name.clone()) && m.alias != m.upstream_id {
                bad(".alias", format!("{name:?} names two models"));
            }
        }
        if m.min_pixels == 0 || m.min_pixels > m.max_pixels {
            bad(".min_pixels", "must be > 0 and at most max_pixels".into());
        }
        if m.presets.is_empty() {
            bad(".presets", "must list at least one size preset".into());
        }
        let mut preset_names = std::collections::HashSet::new();
        for (j, p) in m.presets.iter().enumerate() {
            let path = format!(".presets[{j}]");
            if !preset_names.insert(p.name().to_string()) {
                bad(&path, format!("preset {:?} is listed twice", p.name()));
            }
            match p {
                PresetSpec::BuiltIn(n) if !BUILT_IN_PRESETS.contains(&n.as_str()) => bad(
                    &path,
                    format!("unknown preset {n:?}: use 1K, 2K, 4K or {{name, sizes: {{\"1:1\": WIDTHxHEIGHT}}}}"),
                ),
                PresetSpec::BuiltIn(_) => {}
                PresetSpec::Table(t) => {
                    if t.name.is_empty() || t.sizes.is_empty() {
                        bad(&path, "needs a name and at least one size".into());
                    }
                    for (ratio, size) in &t.sizes {
                        let ratio_ok = ratio.split_once(':').is_some_and(|(a, b)| {
                            a.parse::<u32>().is_ok_and(|a| a > 0) && b.parse::<u32>().is_ok_and(|b| b > 0)
                        });
                        if !ratio_ok {
                            bad(&format!("{path}.sizes"), format!("{ratio:?} is not a ratio like 16:9"));
                        }
                        match pixels(size) {
                            Some(px) if (m.min_pixels..=m.max_pixels).contains(&px) => {}
                            Some(_) => bad(
                                &format!("{path}.sizes.{ratio}"),
                                format!("{size} is outside the model's pixel range"),
                            ),
                            None => bad(
                                &format!("{path}.sizes.{ratio}"),
                                format!("{size:?} is not WIDTHxHEIGHT"),
                            ),
                        }
                    }
                }
            }
        }
        if !m.prompt_modes.contains(&PromptMode::Standard) {
            bad(
                ".prompt_modes",
                "must include standard (the default mode)".into(),
            );
        }
        if m.output_formats.is_empty() {
            bad(".output_formats", "must list at least one format".into());
        }
        if !(1..=15).contains(&m.max_total_images) {
            bad(".max_total_images", "must be from 1 to 15".into());
        }
        if m.max_references >= m.max_total_images {
            bad(".max_references", "must be below max_total_images".into());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models(yaml: &str) -> Vec<ModelSpec> {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn models_are_checked_with_their_paths() {
        let good = models(
            "- {alias: s5, upstream_id: s-5, presets: [2K, {name: 3K, sizes: {'1:1': 3072x3072}}], \
               min_pixels: 3686400, max_pixels: 16777216, fields: [output_format, tools], \
               output_formats: [jpeg, png]}",
        );
        assert_eq!(model_problems(&good), vec![]);
        assert_eq!(good[0].prompt_modes, vec![PromptMode::Standard]);
        assert_eq!((good[0].max_references, good[0].max_total_images), (14, 15));
        let bad = models(
            "- {alias: a, upstream_id: a-1, presets: [5K, {name: 3K, sizes: {'1:1': 100x100, wide: 4096x2304}}], \
               min_pixels: 3686400, max_pixels: 16777216, prompt_modes: [fast]}\n\
             - {alias: a, upstream_id: a-2, presets: [2K, 2K], min_pixels: 9, max_pixels: 1, max_total_images: 20}",
        );
        let problems: Vec<String> = model_problems(&bad)
            .into_iter()
            .map(|(p, m)| format!("{p}: {m}"))
            .collect();
        let has = |s: &str| problems.iter().any(|p| p.contains(s));
        assert!(has("[0].presets[0]: unknown preset \"5K\""), "{problems:?}");
        assert!(
            has("[0].presets[1].sizes.1:1: 100x100 is outside"),
            "{problems:?}"
        );
        assert!(
            has("[0].presets[1].sizes: \"wide\" is not a ratio"),
            "{problems:?}"
        );
        assert!(
            has("[0].prompt_modes: must include standard"),
            "{problems:?}"
        );
        assert!(has("[1].alias: \"a\" names two models"), "{problems:?}");
        assert!(
            has("[1].presets[1]: preset \"2K\" is listed twice"),
            "{problems:?}"
        );
        assert!(has("[1].min_pixels"), "{problems:?}");
        assert!(has("[1].max_total_images"), "{problems:?}");
        let unknown = serde_yaml::from_str::<Vec<ModelSpec>>(
            "- {alias: a, upstream_id: b, presets: [2K], min_pixels: 1, max_pixels: 2, fields: [steps]}",
        );
        assert!(unknown.is_err(), "an unknown field name is refused");
    }
}
