//! `ip_guard`: a cheap, approximate per-IP request ceiling in front of auth,
//! so floods of unauthenticated requests cost almost nothing. Uses
//! pingora-limits (a count-min sketch, per process): right for a flood guard,
//! wrong for per-key limits, which `rate_limit` keeps exact.

use std::time::Duration;

use async_trait::async_trait;
use pingora_http::RequestHeader;
use pingora_limits::rate::Rate;
use serde::Deserialize;

use crate::context::RequestCtx;
use crate::error::{ErrorKind, GatewayError};
use crate::filter::Filter;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IpGuardConfig {
    /// Requests per second one client IP may make before getting 429.
    pub per_second: u32,
}

impl IpGuardConfig {
    pub(crate) fn validate(&self) -> Vec<(&'static str, String)> {
        if self.per_second == 0 {
            vec![("per_second", "must be > 0".to_string())]
        } else {
            vec![]
        }
    }
}

pub struct IpGuard {
    per_second: isize,
    rate: Rate,
}

impl IpGuard {
    pub fn new(cfg: &IpGuardConfig) -> Self {
        IpGuard {
            per_second: cfg.per_second as isize,
            rate: Rate::new(Duration::from_secs(1)),
        }
    }
}

#[async_trait]
impl Filter for IpGuard {
    fn name(&self) -> &'static str {
        "ip_guard"
    }

    async fn on_request(
        &self,
        _req: &RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<(), GatewayError> {
        let Some(ip) = ctx.client_ip else {
            return Ok(()); // Unix-socket clients have no IP to guard.
        };
        if self.rate.observe(&ip, 1) > self.per_second {
            return Err(GatewayError::new(
                ErrorKind::TooManyRequestsFromIp,
                "Too many requests from this address; slow down.",
            )
            .with_retry_after(Duration::from_secs(1)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn floods_from_one_ip_are_cut_others_pass() {
        let g = IpGuard::new(&IpGuardConfig { per_second: 5 });
        let req = RequestHeader::build("GET", b"/", None).unwrap();
        let mut a = RequestCtx::new(Some("10.0.0.1".parse().unwrap()));
        let mut refused = 0;
        for _ in 0..20 {
            if g.on_request(&req, &mut a).await.is_err() {
                refused += 1;
            }
        }
        // The sketch may over-count, never under-count: at least 15 refused.
        assert!(refused >= 15, "refused {refused}");
        let mut b = RequestCtx::new(Some("10.0.0.2".parse().unwrap()));
        assert!(g.on_request(&req, &mut b).await.is_ok());
    }
}
