//! `rate_limit`: exact per-key requests per minute, counted in the state
//! store (shared by every instance on the Redis backend). Over the limit →
//! 429 with `Retry-After`; every answer carries `X-RateLimit-*`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{HeaderName, HeaderValue};
use pingora_http::{RequestHeader, ResponseHeader};
use serde::Deserialize;

use crate::context::RequestCtx;
use crate::error::{ErrorKind, GatewayError};
use crate::filter::Filter;
use crate::state::PendingRateLimit;
use crate::state::RateLimits;

/// DESIGN §2: a key without its own limit gets 10 requests per minute.
pub const DEFAULT_PER_MINUTE: u32 = 10;
/// DESIGN §2: reads of a key's own account, 60 per minute per key.
pub const DEFAULT_ACCOUNT_READS_PER_MINUTE: u32 = 60;
const WINDOW: Duration = Duration::from_secs(60);
const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Limit for keys that have none of their own (default 10).
    pub per_minute: Option<u32>,
    /// Keys' limits are shared across every route with the same scope
    /// (default: the budget's name, `key` or `account_reads`; one budget per
    /// key for the whole gateway).
    pub scope: Option<String>,
    /// Which budget the route spends (default `requests`).
    #[serde(default)]
    pub budget: Budget,
}

/// What a route's requests count against.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Budget {
    /// The key's own `rate_limit_per_minute` (else `per_minute`, else 10):
    /// generation, uploads, downloads, S3 calls.
    #[default]
    Requests,
    /// A customer reading their own account (`/v1/usage`, `/v1/logs`,
    /// `/v1/gallery`, `/s3/usage`, `/s3/files` listings, `/s3/credentials`):
    /// `per_minute` (default 60) for every key, apart from the key's own
    /// limit, so a key that spent its generation budget still sees its usage.
    AccountReads,
}

impl RateLimitConfig {
    pub(crate) fn validate(&self) -> Vec<(&'static str, String)> {
        let mut errs = vec![];
        if self.per_minute == Some(0) {
            errs.push(("per_minute", "must be > 0".to_string()));
        }
        if self
            .scope
            .as_deref()
            .is_some_and(|s| s.is_empty() || s.contains(['{', '}', ' ']))
        {
            errs.push((
                "scope",
                "must be a non-empty word without spaces or braces".into(),
            ));
        }
        errs
    }
}

pub struct RateLimit {
    state: Arc<dyn RateLimits>,
    default_limit: u32,
    scope: String,
    budget: Budget,
}

impl RateLimit {
    pub fn new(cfg: &RateLimitConfig, state: Arc<dyn RateLimits>) -> Self {
        let (default_limit, default_scope) = match cfg.budget {
            Budget::Requests => (DEFAULT_PER_MINUTE, "key"),
            Budget::AccountReads => (DEFAULT_ACCOUNT_READS_PER_MINUTE, "account_reads"),
        };
        RateLimit {
            state,
            default_limit: cfg.per_minute.unwrap_or(default_limit),
            scope: cfg.scope.clone().unwrap_or_else(|| default_scope.into()),
            budget: cfg.budget,
        }
    }
}

/// Whole seconds, rounded up, at least 1 — what `Retry-After` wants.
fn ceil_secs(d: Duration) -> u64 {
    (d.as_millis().div_ceil(1000) as u64).max(1)
}

#[async_trait]
impl Filter for RateLimit {
    fn name(&self) -> &'static str {
        "rate_limit"
    }

    async fn on_request(
        &self,
        _req: &RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<(), GatewayError> {
        let key = ctx.require_key("rate_limit")?;
        let limit = match self.budget {
            Budget::Requests => key.rate_limit_per_minute.unwrap_or(self.default_limit),
            Budget::AccountReads => self.default_limit,
        };
        // The bucket names the key by its subject (half its hash), never the
        // key itself; the braces are a Redis Cluster hash tag that puts it in
        // the slot of the key's quota, so both can change in one script.
        let bucket = format!("rl:{}:{{{}}}", self.scope, key.subject());
        if ctx.defer_rate_limit {
            // The handler counts it together with its quota reservation.
            ctx.pending_rate_limit = Some(PendingRateLimit {
                bucket,
                limit,
                window: WINDOW,
            });
            return Ok(());
        }
        let decision = self
            .state
            .rate_limit(&bucket, 1, limit, WINDOW)
            .await
            .map_err(|e| GatewayError::unavailable("Rate limiting", e))?;
        ctx.rate_limit = Some(decision);
        if decision.allowed {
            Ok(())
        } else {
            Err(refused(&decision))
        }
    }

    fn on_response(&self, resp: &mut ResponseHeader, ctx: &RequestCtx) {
        if let Some(d) = ctx.rate_limit {
            // Pre-parsed names and integer values: no parsing or string
            // formatting on every answer.
            let reset = HeaderValue::from(ceil_secs(d.reset_after));
            let _ = resp.insert_header(LIMIT.clone(), HeaderValue::from(d.limit));
            let _ = resp.insert_header(REMAINING.clone(), HeaderValue::from(d.remaining));
            let _ = resp.insert_header(RESET.clone(), reset.clone());
            if !d.allowed {
                let _ = resp.insert_header(http::header::RETRY_AFTER, reset);
            }
        }
    }
}

/// The 429 for a refused decision.
pub fn refused(decision: &crate::state::RateDecision) -> GatewayError {
    GatewayError::new(
        ErrorKind::RateLimited,
        format!(
            "Rate limit exceeded: {} requests per minute for this API key.",
            decision.limit
        ),
    )
    .with_retry_after(decision.reset_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{test_key, KeyStatus};
    use crate::state::{RateDecision, SlidingLog, StateError};
    use parking_lot::Mutex;
    use std::collections::HashMap;

    /// The sliding log over a map with a frozen clock: the real algorithm,
    /// minus the journal of the embedded backend.
    #[derive(Default)]
    struct FrozenClockState(Mutex<HashMap<String, SlidingLog>>);

    #[async_trait]
    impl RateLimits for FrozenClockState {
        async fn rate_limit(
            &self,
            b: &str,
            cost: u32,
            limit: u32,
            w: Duration,
        ) -> Result<RateDecision, StateError> {
            let mut m = self.0.lock();
            Ok(m.entry(b.to_string())
                .or_default()
                .admit(1_000, cost, limit, w.as_millis() as u64))
        }
    }

    fn ctx_for(key: &str, own_limit: Option<u32>) -> RequestCtx {
        let mut k = test_key(key, KeyStatus::Active, None);
        k.rate_limit_per_minute = own_limit;
        RequestCtx {
            key: Some(Arc::new(k)),
            ..RequestCtx::default()
        }
    }

    #[tokio::test]
    async fn default_limit_is_ten_and_the_eleventh_gets_429() {
        let f = RateLimit::new(
            &RateLimitConfig::default(),
            Arc::new(FrozenClockState::default()),
        );
        let req = RequestHeader::build("GET", b"/", None).unwrap();
        for _ in 0..10 {
            f.on_request(&req, &mut ctx_for("kikaku_a", None))
                .await
                .unwrap();
        }
        let mut ctx = ctx_for("kikaku_a", None);
        let e = f.on_request(&req, &mut ctx).await.unwrap_err();
        assert_eq!(e.status(), 429);
        let mut resp = ResponseHeader::build(429, None).unwrap();
        f.on_response(&mut resp, &ctx);
        assert_eq!(resp.headers.get("x-ratelimit-limit").unwrap(), "10");
        assert_eq!(resp.headers.get("x-ratelimit-remaining").unwrap(), "0");
        assert_eq!(resp.headers.get("retry-after").unwrap(), "60");
    }

    #[tokio::test]
    async fn key_limit_wins_and_keys_are_separate() {
        let f = RateLimit::new(
            &RateLimitConfig {
                per_minute: Some(100),
                ..RateLimitConfig::default()
            },
            Arc::new(FrozenClockState::default()),
        );
        let req = RequestHeader::build("GET", b"/", None).unwrap();
        for _ in 0..2 {
            f.on_request(&req, &mut ctx_for("kikaku_b", Some(2)))
                .await
                .unwrap();
        }
        assert!(f
            .on_request(&req, &mut ctx_for("kikaku_b", Some(2)))
            .await
            .is_err());
        assert!(f
            .on_request(&req, &mut ctx_for("kikaku_c", Some(2)))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn account_reads_have_a_budget_of_their_own() {
        let state = Arc::new(FrozenClockState::default());
        let generate = RateLimit::new(&RateLimitConfig::default(), state.clone());
        let reads = RateLimit::new(
            &RateLimitConfig {
                budget: Budget::AccountReads,
                ..RateLimitConfig::default()
            },
            state,
        );
        let req = RequestHeader::build("GET", b"/", None).unwrap();
        // The key's own 10/min is spent...
        for _ in 0..10 {
            generate
                .on_request(&req, &mut ctx_for("kikaku_d", Some(10)))
                .await
                .unwrap();
        }
        assert!(generate
            .on_request(&req, &mut ctx_for("kikaku_d", Some(10)))
            .await
            .is_err());
        // ...and its reads still have 60, whatever the key's own limit.
        for i in 0..60 {
            let mut ctx = ctx_for("kikaku_d", Some(10));
            reads.on_request(&req, &mut ctx).await.unwrap();
            assert_eq!(ctx.rate_limit.unwrap().remaining, 59 - i);
        }
        let e = reads
            .on_request(&req, &mut ctx_for("kikaku_d", Some(10)))
            .await
            .unwrap_err();
        assert_eq!(e.status(), 429);
    }
}
