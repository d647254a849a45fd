//! `admin`: the management API on the admin listener (DESIGN §5).

use serde::Deserialize;

#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// The bearer token of `/admin/v1/*` (`Authorization: Bearer <token>`),
    /// at least 16 characters. Without an `admin` section every management
    /// call is refused (401); `/healthz`, `/readyz` and `/metrics` stay open.
    pub token: String,
}

/// Never print the token.
impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The shortest token accepted.
pub const MIN_TOKEN_CHARS: usize = 16;
