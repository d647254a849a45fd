//! Rate limits on Redis: a sliding window per bucket in a sorted set.
//! While Redis is away, `fail_closed` refuses (503) and `local` counts on
//! this instance alone.

use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;

use super::quotas::decision;
use super::{Fallback, RedisState};
use crate::state::{RateDecision, RateLimits, StateError};
use kikaku_filters::clock::now_ms;

#[async_trait]
impl RateLimits for RedisState {
    async fn rate_limit(
        &self,
        bucket: &str,
        cost: u32,
        limit: u32,
        window: Duration,
    ) -> Result<RateDecision, StateError> {
        let (k, window_ms) = (format!("kikaku:{bucket}"), window.as_millis() as u64);
        let member = format!("{:016x}", rand::thread_rng().gen::<u64>());
        let result = self
            .run(move |c, s| async move {
                let mut inv = s.rate.prepare_invoke();
                inv.key(k).arg(window_ms).arg(limit).arg(cost).arg(member);
                c.invoke::<(u32, u64, i64)>(inv).await
            })
            .await;
        match result {
            Ok((allowed, held, reset)) => Ok(decision(allowed, limit, held, reset)),
            Err(e) if self.cfg.rate_limit_when_unavailable == Fallback::Local => {
                log::warn!("{e}; rate limiting locally on this instance");
                let mut local = self.local.lock();
                Ok(local.entry(bucket.to_string()).or_default().admit(
                    now_ms(),
                    cost,
                    limit,
                    window_ms,
                ))
            }
            Err(e) => Err(e),
        }
    }
}
