//! SeedDream models (DESIGN §3, seed 000): upstream ids, size presets with
//! their aspect-ratio tables, pixel ranges, prompt-optimisation modes.

/// A preset resolution's table: (ratio label, width, height).
pub type PresetTable = &'static [(&'static str, u32, u32)];

pub const RATIOS: [&str; 8] = ["1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9"];

pub const PRESET_1K: PresetTable = &[
    ("1:1", 1024, 1024),
    ("4:3", 1152, 864),
    ("3:4", 864, 1152),
    ("16:9", 1312, 736),
    ("9:16", 736, 1312),
    ("3:2", 1248, 832),
    ("2:3", 832, 1248),
    ("21:9", 1568, 672),
];
pub const PRESET_2K: PresetTable = &[
    ("1:1", 2048, 2048),
    ("4:3", 2304, 1728),
    ("3:4", 1728, 2304),
    ("16:9", 2848, 1600),
    ("9:16", 1600, 2848),
    ("3:2", 2496, 1664),
    ("2:3", 1664, 2496),
    ("21:9", 3136, 1344),
];
pub const PRESET_4K: PresetTable = &[
    ("1:1", 4096, 4096),
    ("4:3", 4704, 3520),
    ("3:4", 3520, 4704),
    ("16:9", 5504, 3040),
    ("9:16", 3040, 5504),
    ("3:2", 4992, 3328),
    ("2:3", 3328, 4992),
    ("21:9", 6240, 2656),
];

pub use crate::config::{ExtraField, ModelSpec, OutputFormat, PresetSpec, PromptMode};

pub fn preset_table(name: &str) -> Option<PresetTable> {
    match name {
        "1K" => Some(PRESET_1K),
        "2K" => Some(PRESET_2K),
        "4K" => Some(PRESET_4K),
        _ => None,
    }
}

/// The two models of DESIGN §3, as shipped defaults.
pub fn default_models() -> Vec<ModelSpec> {
    let built_in = |names: &[&str]| {
        names
            .iter()
            .map(|n| PresetSpec::BuiltIn(n.to_string()))
            .collect()
    };
    vec![
        ModelSpec {
            alias: "seedream-4.5".into(),
            upstream_id: "seedream-4-5-251128".into(),
            presets: built_in(&["2K", "4K"]),
            min_pixels: 3_686_400,
            max_pixels: 16_777_216,
            prompt_modes: vec![PromptMode::Standard],
            fields: vec![],
            max_references: 14,
            max_total_images: 15,
            output_formats: vec![OutputFormat::Jpeg],
        },
        ModelSpec {
            alias: "seedream-4.0".into(),
            upstream_id: "seedream-4-0-250828".into(),
            presets: built_in(&["1K", "2K", "4K"]),
            min_pixels: 921_600,
            max_pixels: 16_777_216,
            prompt_modes: vec![PromptMode::Standard, PromptMode::Fast],
            fields: vec![],
            max_references: 14,
            max_total_images: 15,
            output_formats: vec![OutputFormat::Jpeg],
        },
    ]
}

/// The size a model's preset `name` produces for `prompt`: a built-in
/// table's, or the model's own (`None`: no such preset, or a table entry
/// that is not `WIDTHxHEIGHT`).
pub fn preset_dims(model: &ModelSpec, name: &str, prompt: &str) -> Option<(u32, u32)> {
    match model.presets.iter().find(|p| p.name() == name)? {
        PresetSpec::BuiltIn(n) => preset_table(n).map(|t| preset_size(t, prompt)),
        PresetSpec::Table(t) => {
            let entries: Vec<(&str, (u32, u32))> = t
                .sizes
                .iter()
                .map(|(r, s)| Some((r.as_str(), parse_dimensions(s)?)))
                .collect::<Option<_>>()?;
            let named = named_ratio(
                prompt,
                RATIOS
                    .iter()
                    .copied()
                    .chain(entries.iter().map(|(r, _)| *r)),
            );
            entries
                .iter()
                .find(|(r, _)| *r == named)
                .or_else(|| entries.first())
                .map(|(_, d)| *d)
        }
    }
}

/// The first of `ratios` the prompt names (`"poster portrait 3:4"`), else
/// `1:1`.
fn named_ratio<'a>(prompt: &str, ratios: impl Iterator<Item = &'a str>) -> &'a str {
    ratios
        .filter_map(|r| prompt.find(r).map(|i| (i, r)))
        .min_by_key(|(i, _)| *i)
        .map(|(_, r)| r)
        .unwrap_or("1:1")
}

/// `WIDTHxHEIGHT` → (w, h); `None` when not of that form.
pub fn parse_dimensions(size: &str) -> Option<(u32, u32)> {
    let (w, h) = size.split_once(['x', 'X'])?;
    let (w, h): (u32, u32) = (w.parse().ok()?, h.parse().ok()?);
    (w > 0 && h > 0).then_some((w, h))
}

/// Aspect ratio inside [1/16, 16].
pub fn aspect_ok(w: u32, h: u32) -> bool {
    let (w, h) = (u64::from(w), u64::from(h));
    w <= 16 * h && h <= 16 * w
}

/// The size a preset produces for a prompt: the first ratio the prompt names
/// (`"poster portrait 3:4"`), else 1:1. Ark decides this from the prompt; the
/// simulator and the gateway's quota estimate use this rule.
pub fn preset_size(table: PresetTable, prompt: &str) -> (u32, u32) {
    let named = named_ratio(prompt, RATIOS.iter().copied());
    table
        .iter()
        .find(|(r, _, _)| *r == named)
        .map(|(_, w, h)| (*w, *h))
        .unwrap_or((table[0].1, table[0].2))
}

/// Output tokens of one image: ⌈w × h / 256⌉.
pub fn output_tokens(w: u32, h: u32) -> u64 {
    (u64::from(w) * u64::from(h)).div_ceil(256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_the_seed() {
        assert_eq!(preset_size(PRESET_2K, "a cat"), (2048, 2048));
        assert_eq!(preset_size(PRESET_2K, "poster portrait 3:4"), (1728, 2304));
        assert_eq!(preset_size(PRESET_4K, "cinema 21:9 wide"), (6240, 2656));
        assert_eq!(preset_size(PRESET_1K, "16:9 then 1:1"), (1312, 736));
    }

    #[test]
    fn a_models_own_preset_table() {
        let mut m = default_models().remove(0);
        m.presets
            .push(PresetSpec::Table(crate::config::PresetTable {
                name: "3K".into(),
                sizes: [("1:1", "3072x3072"), ("16:9", "4096x2304")]
                    .iter()
                    .map(|(r, s)| (r.to_string(), s.to_string()))
                    .collect(),
            }));
        assert_eq!(preset_dims(&m, "3K", "a cat"), Some((3072, 3072)));
        assert_eq!(preset_dims(&m, "3K", "wide 16:9 view"), Some((4096, 2304)));
        assert_eq!(preset_dims(&m, "2K", "poster 3:4"), Some((1728, 2304)));
        assert_eq!(preset_dims(&m, "1K", "a cat"), None, "not this model's");
    }

    #[test]
    fn tokens_round_up() {
        assert_eq!(output_tokens(2048, 2048), 16_384);
        assert_eq!(output_tokens(1760, 2368), 16_280);
        assert_eq!(output_tokens(15, 15), 1);
    }

    #[test]
    fn dimensions_and_ratios() {
        assert_eq!(parse_dimensions("2048x1024"), Some((2048, 1024)));
        assert_eq!(parse_dimensions("2K"), None);
        assert_eq!(parse_dimensions("0x10"), None);
        assert!(aspect_ok(1600, 100));
        assert!(!aspect_ok(1700, 100));
    }
}
