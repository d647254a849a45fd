//! Rate limits: a sliding log per bucket; a hit is journaled before it counts.

use std::time::Duration;

use async_trait::async_trait;
use kikaku_filters::state::SlidingLog;

use super::memory::{Bucket, Inner, Record};
use super::EmbeddedState;
use crate::state::{RateDecision, RateLimits, StateError};
use kikaku_filters::clock::now_ms;

#[async_trait]
impl RateLimits for EmbeddedState {
    async fn rate_limit(
        &self,
        bucket: &str,
        cost: u32,
        limit: u32,
        window: Duration,
    ) -> Result<RateDecision, StateError> {
        let mut inner = self.inner.lock();
        let (decision, hit) = inner.peek_hit(bucket, cost, limit, window, now_ms());
        if let Some(hit) = hit {
            inner.commit(hit)?;
        }
        Ok(decision)
    }
}

impl Inner {
    /// Decide a rate-limit check, and the hit to journal when it is
    /// allowed. The hit is recorded (by `commit` → `apply`) only once the
    /// journal has it, so a failed write leaves no trace.
    pub(super) fn peek_hit(
        &mut self,
        bucket: &str,
        cost: u32,
        limit: u32,
        window: Duration,
        now: u64,
    ) -> (RateDecision, Option<Record>) {
        let window_ms = window.as_millis() as u64;
        let b = match self.buckets.get_mut(bucket) {
            Some(b) => b,
            None => self.buckets.entry(bucket.to_string()).or_insert(Bucket {
                log: SlidingLog::default(),
                window_ms,
            }),
        };
        b.window_ms = window_ms;
        let decision = b.log.peek(now, cost, limit, window_ms);
        let hit = decision.allowed.then(|| Record::Hit {
            b: bucket.to_string(),
            t: now,
            w: window_ms,
            n: cost,
        });
        (decision, hit)
    }
}
