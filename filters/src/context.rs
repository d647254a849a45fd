//! The typed per-request context every filter reads and writes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::keys::ApiKey;
use crate::state::RateDecision;

/// Per-request state shared by the filters of one chain.
#[derive(Debug)]
pub struct RequestCtx {
    /// When the gateway started handling the request.
    pub started: Instant,
    /// `X-Request-Id`, set by the `request_id` filter (kept from the client when valid).
    pub request_id: Option<String>,
    /// The peer address of the client connection.
    pub client_ip: Option<IpAddr>,
    /// The key the `key_auth` filter authenticated.
    pub key: Option<Arc<ApiKey>>,
    /// The last rate-limit decision, for the `X-RateLimit-*` response headers.
    pub rate_limit: Option<RateDecision>,
    /// The filter that refused the request, if any (for metrics and the access log).
    pub rejected_by: Option<&'static str>,
}

impl RequestCtx {
    pub fn new(client_ip: Option<IpAddr>) -> Self {
        RequestCtx {
            started: Instant::now(),
            request_id: None,
            client_ip,
            key: None,
            rate_limit: None,
            rejected_by: None,
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        RequestCtx::new(None)
    }
}
