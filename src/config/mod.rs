//! The YAML front-end: typed structs exactly as operators write them
//! (`deny_unknown_fields` everywhere), `${VAR}` expansion, and validation that
//! names the path of every error. The runtime model built from it is the
//! proxy's snapshot (`src/proxy/snapshot.rs`).
//!
//! A leaf: nothing here imports the runtime (the filters' own config types
//! come from the filters crate). Rules both sides need, such as tenant
//! bucket names, live here (`names`) and the runtime imports them.

mod admin;
mod env;
mod images;
mod load;
pub mod names;
mod simulator;
mod state;
mod tls;
mod types;
mod uploads;
mod upstream;
mod validate;

pub use admin::{AdminConfig, MIN_TOKEN_CHARS as MIN_ADMIN_TOKEN_CHARS};
pub use images::{
    ExtraField, ImageGenerationConfig, ModelSpec, OutputFormat, PresetSpec, PresetTable, PromptMode,
};
pub use load::{load_file, load_str};
pub use simulator::{Fault, SimConfig};
pub use state::{Fallback, RedisConfig};
pub use tls::{ListenerTls, SniCertificate};
pub use types::*;
pub use uploads::{
    parse_allow_entry, parse_span, AllowEntry, AnonymousUploads, ByteSize, FileHostConfig, Span,
    UploadsConfig, UrlFetchConfig,
};
pub use upstream::{
    split_host_port, Balance, EndpointConfig, HashOn, HealthCheckConfig, HealthCheckKind,
    Keepalive, LimitsConfig, OutlierConfig, RetryBudgetConfig, RetryConfig, Timeouts, TlsConfig,
    UpstreamConfig,
};
pub use validate::{parse_sha256, parse_size, parse_time, quota_amount};

/// One problem in a config file, with the YAML path it belongs to
/// (`routes[2].filters[1].rate_limit.per_minute: must be > 0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// All the errors of one load, printed one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
