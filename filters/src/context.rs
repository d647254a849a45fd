//! The typed per-request context every filter reads and writes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::error::{ErrorKind, GatewayError};
use crate::keys::ApiKey;
use crate::state::{PendingRateLimit, RateDecision};

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
    /// How errors are written: JSON, or S3 XML on the S3 endpoint.
    pub error_format: ErrorFormat,
    /// The SigV4 the `s3_auth` filter verified, for the handler to check
    /// the payload against.
    pub s3: Option<sigv4::VerifiedSignature>,
    /// Set by the gateway when the route's handler counts the rate limit
    /// itself, together with its quota reservation (one state round trip).
    pub defer_rate_limit: bool,
    /// What `rate_limit` left for such a handler to count.
    pub pending_rate_limit: Option<PendingRateLimit>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ErrorFormat {
    #[default]
    Json,
    S3Xml,
    /// Seed 003's envelope: `{"success": false, "code": <status>, "msg"}`.
    Upload,
    /// Seed 001's `api=1` answers: `ERROR <message>` as plain text.
    PlainText,
    /// Seed 001's JSON answers: `{"status": false, "error": <message>,
    /// "code": <code>}`, mirroring its `{"status": true, ...}`.
    FileHost,
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
            error_format: ErrorFormat::Json,
            s3: None,
            defer_rate_limit: false,
            pending_rate_limit: None,
        }
    }
}

impl RequestCtx {
    /// The key `key_auth` authenticated. `user` names the filter or handler
    /// asking: config validation puts `key_auth` before it, so a missing key
    /// is a bug, answered as 500.
    pub fn require_key(&self, user: &str) -> Result<Arc<ApiKey>, GatewayError> {
        self.key.clone().ok_or_else(|| {
            GatewayError::new(
                ErrorKind::Internal,
                format!("{user} ran without key_auth before it"),
            )
        })
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        RequestCtx::new(None)
    }
}
