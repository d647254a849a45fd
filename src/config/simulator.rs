//! `simulators.ark`: the in-process Ark simulator's settings (DESIGN §9),
//! also the flags of `kikaku-edge sim-ark`.

use serde::Deserialize;

/// Simulator settings; every field has a default, so `{listen: ...}` is enough.
#[derive(Debug, Clone, Deserialize, PartialEq, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// `IP:PORT` to listen on.
    #[arg(long)]
    pub listen: String,
    /// Base of the image URLs it returns (default `http://<listen>`).
    #[serde(default)]
    #[arg(long)]
    pub public_url: Option<String>,
    /// Required bearer token (default: any non-empty token).
    #[serde(default)]
    #[arg(long)]
    pub api_key: Option<String>,
    /// Added to every generation request (streamed: before the first image).
    #[serde(default)]
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// With `stream: true`, the time between two images of a batch
    /// (default: `latency_ms`, which the first image waits too).
    #[serde(default)]
    #[arg(long)]
    pub image_interval_ms: Option<u64>,
    /// A prompt containing this word gets a content-filter error for its first image.
    #[serde(default = "default_trigger")]
    #[arg(long, default_value = "FORBIDDEN")]
    pub content_filter_word: String,
    /// Under `auto`, return at most this many images (default: all asked for).
    #[serde(default)]
    #[arg(long)]
    pub auto_max_images: Option<u32>,
    /// Fault to inject: none, http500, http503, reset, hang.
    #[serde(default)]
    #[arg(long, value_enum, default_value_t = Fault::None)]
    pub fault: Fault,
    /// Inject the fault on every Nth generation request (1 = all).
    #[serde(default = "one")]
    #[arg(long, default_value_t = 1)]
    pub fault_every: u64,
    /// Serve HTTPS with this certificate (PEM chain), offering HTTP/2 and
    /// HTTP/1.1 by ALPN as Ark's endpoint does (with `tls_key_file`).
    #[serde(default)]
    #[arg(long)]
    pub tls_cert_file: Option<String>,
    /// The certificate's key (PEM).
    #[serde(default)]
    #[arg(long)]
    pub tls_key_file: Option<String>,
    /// Generated images are served at their URL for this long.
    #[serde(default = "day")]
    #[arg(long, default_value_t = 86_400)]
    pub image_ttl_seconds: u64,
}

fn default_trigger() -> String {
    "FORBIDDEN".into()
}
fn one() -> u64 {
    1
}
fn day() -> u64 {
    86_400
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    #[default]
    None,
    /// 500 with Ark's internal-error envelope.
    Http500,
    /// 503 with Ark's overload envelope.
    Http503,
    /// Close the connection without an answer.
    Reset,
    /// Never answer.
    Hang,
}
