//! `state.redis`: the Redis backend's settings (DESIGN §8).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port[/db]` of a single server (or the seed node of a cluster).
    pub url: String,
    /// Cluster mode: these seed nodes (`url` is then ignored).
    #[serde(default)]
    pub cluster: Vec<String>,
    /// How long one Redis call may take before it counts as unavailable.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// When Redis cannot be reached, rate limits `fail_closed` (503) or fall
    /// back to a `local` per-instance limiter. Quotas always fail closed.
    #[serde(default)]
    pub rate_limit_when_unavailable: Fallback,
    /// Reservations of an instance that died mid-request expire after this.
    #[serde(default = "default_reservation_ttl")]
    pub reservation_ttl_seconds: u64,
}

fn default_timeout() -> u64 {
    500
}
fn default_reservation_ttl() -> u64 {
    600
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    #[default]
    FailClosed,
    Local,
}
