//! The filter chain of kikaku-edge.
//!
//! A filter is a typed unit with its own config struct, a constructor that
//! validates it, and hooks for the phases it needs ([`Filter`]). The
//! [`registry`] maps a YAML name (`key_auth`, `rate_limit`, ...) to its config
//! type and constructor. Filters talk through the typed [`RequestCtx`].
//!
//! One file a filter, with its unit tests beside it.

pub mod clock;
pub mod context;
pub mod error;
pub mod filter;
pub mod keys;
pub mod registry;
pub mod state;

pub mod ip_guard;
pub mod key_auth;
pub mod key_type;
pub mod rate_limit;
pub mod request_id;
pub mod s3_auth;

pub use context::{ErrorFormat, RequestCtx};
pub use error::{ErrorKind, GatewayError, StateError};
pub use filter::{BuildEnv, Filter, FilterChain};
pub use keys::{ApiKey, KeyDirectory, KeyStatus, KeyStore, KeyType, StoredKeys};
pub use registry::FilterConfig;
pub use state::{PendingRateLimit, RateDecision, RateLimits};
