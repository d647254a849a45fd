//! What the filters need from the state store (DESIGN §8): exact rate
//! limits (and the sliding log both backends count them with), stored keys
//! (`KeyStore`, with the keys), and the state's error. The rest of the
//! contract, which only handlers use, is the gateway's (`src/state/contract.rs`).

use std::time::Duration;

use async_trait::async_trait;

pub use crate::error::StateError;
pub use crate::keys::KeyStore;

/// The outcome of one rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    pub limit: u32,
    /// Requests still allowed in the current window after this one.
    pub remaining: u32,
    /// Time until the oldest counted request leaves the window (a slot frees).
    pub reset_after: Duration,
}

/// A rate-limit check handed from the filter to the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRateLimit {
    pub bucket: String,
    pub limit: u32,
    pub window: std::time::Duration,
}

/// Exact sliding-window limits.
#[async_trait]
pub trait RateLimits: Send + Sync {
    /// Admit and count `cost` units when the units admitted for `bucket` in
    /// the last `window` plus `cost` stay within `limit`. Exact: with cost 1
    /// and limit 10, the 11th request inside any window is refused.
    async fn rate_limit(
        &self,
        bucket: &str,
        cost: u32,
        limit: u32,
        window: Duration,
    ) -> Result<RateDecision, StateError>;
}

/// The exact sliding-window log both backends use: the admitted units of
/// one bucket as runs of (time in ms, units admitted at that ms), oldest
/// first. Hits within one millisecond share a run, so a busy key costs one
/// entry per millisecond at most, not one per request (and the journal's
/// compaction writes as many records).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlidingLog {
    runs: std::collections::VecDeque<(u64, u64)>,
    /// Sum of the runs' units.
    held: u64,
}

impl SlidingLog {
    /// Admit `cost` units at `now_ms` if the hits inside
    /// `(now_ms - window_ms, now_ms]` plus `cost` stay within `limit`;
    /// record them when admitted.
    pub fn admit(&mut self, now_ms: u64, cost: u32, limit: u32, window_ms: u64) -> RateDecision {
        let decision = self.peek(now_ms, cost, limit, window_ms);
        if decision.allowed {
            self.push(now_ms, cost);
        }
        decision
    }

    /// The decision `admit` would take, without recording anything (expired
    /// hits are dropped, which changes no decision). The figures describe the
    /// state after an admission. Callers that must persist first call
    /// `peek`, persist, then `push`.
    pub fn peek(&mut self, now_ms: u64, cost: u32, limit: u32, window_ms: u64) -> RateDecision {
        let floor = now_ms.saturating_sub(window_ms);
        while let Some(&(t, n)) = self.runs.front() {
            if t > floor {
                break;
            }
            self.held -= n;
            self.runs.pop_front();
        }
        // A lowered limit leaves extra old hits; they expire on their own.
        let held = self.held;
        let allowed = held + u64::from(cost) <= u64::from(limit);
        let used = if allowed {
            held + u64::from(cost)
        } else {
            held
        };
        let oldest = self
            .runs
            .front()
            .map(|&(t, _)| t)
            .or(allowed.then_some(now_ms));
        RateDecision {
            allowed,
            limit,
            remaining: u64::from(limit).saturating_sub(used) as u32,
            reset_after: Duration::from_millis(
                oldest
                    .map(|t| (t + window_ms).saturating_sub(now_ms))
                    .unwrap_or(0),
            ),
        }
    }

    /// Record `cost` admitted units at `now_ms`. A clock that stepped back
    /// still appends in order (the run keeps the later time), so expiry
    /// from the front stays correct.
    pub fn push(&mut self, now_ms: u64, cost: u32) {
        if cost == 0 {
            return;
        }
        let cost = u64::from(cost);
        self.held += cost;
        match self.runs.back_mut() {
            Some((t, n)) if *t >= now_ms => *n += cost,
            _ => self.runs.push_back((now_ms, cost)),
        }
    }

    /// Whether every hit is older than the window (the bucket can be dropped).
    pub fn is_idle(&self, now_ms: u64, window_ms: u64) -> bool {
        self.runs
            .back()
            .is_none_or(|&(t, _)| t <= now_ms.saturating_sub(window_ms))
    }

    /// The runs: (time in ms, units), oldest first.
    pub fn runs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.runs.iter().copied()
    }

    /// Units held (not yet expired at the last `peek`).
    pub fn held(&self) -> u64 {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eleventh_request_in_a_minute_is_refused() {
        let mut log = SlidingLog::default();
        for i in 0..10 {
            let d = log.admit(1_000 + i * 100, 1, 10, 60_000);
            assert!(d.allowed);
            assert_eq!(d.remaining, 9 - i as u32);
        }
        let d = log.admit(59_000, 1, 10, 60_000);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        // The first hit (t=1000) leaves the window at t=61000.
        assert_eq!(d.reset_after, Duration::from_millis(2_000));
    }

    #[test]
    fn window_slides_rather_than_resets() {
        let mut log = SlidingLog::default();
        for t in [0, 30_000] {
            for _ in 0..5 {
                assert!(log.admit(t, 1, 10, 60_000).allowed);
            }
        }
        // At 60.001 s the first five have left; the five from 30 s remain.
        for _ in 0..5 {
            assert!(log.admit(60_001, 1, 10, 60_000).allowed);
        }
        assert!(!log.admit(60_001, 1, 10, 60_000).allowed);
        assert!(!log.admit(89_999, 1, 10, 60_000).allowed);
        assert!(log.admit(90_001, 1, 10, 60_000).allowed);
    }

    #[test]
    fn costs_count_as_units() {
        let mut log = SlidingLog::default();
        assert!(log.admit(1_000, 4, 10, 60_000).allowed);
        assert!(log.admit(1_000, 6, 10, 60_000).allowed);
        let d = log.admit(1_000, 1, 10, 60_000);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        let mut fresh = SlidingLog::default();
        assert!(
            !fresh.admit(1_000, 11, 10, 60_000).allowed,
            "a cost over the limit never fits"
        );
    }

    #[test]
    fn hits_in_one_millisecond_share_a_run() {
        let mut log = SlidingLog::default();
        for _ in 0..1000 {
            assert!(log.admit(5_000, 1, 1_000_000, 60_000).allowed);
        }
        assert!(log.admit(5_001, 3, 1_000_000, 60_000).allowed);
        assert_eq!(
            log.runs().collect::<Vec<_>>(),
            vec![(5_000, 1000), (5_001, 3)]
        );
        assert_eq!(log.held(), 1003);
        // The whole first run leaves together.
        let d = log.admit(65_000, 1, 1_000_000, 60_000);
        assert_eq!(log.held(), 4);
        assert_eq!(d.remaining, 1_000_000 - 4);
        // A clock step back joins the newest run instead of breaking order.
        log.push(64_000, 2);
        assert_eq!(log.runs().last(), Some((65_000, 3)));
    }

    #[test]
    fn idle_after_window() {
        let mut log = SlidingLog::default();
        log.admit(10, 1, 1, 100);
        assert!(!log.is_idle(50, 100));
        assert!(log.is_idle(110, 100));
    }
}
