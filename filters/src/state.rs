//! The state contract (DESIGN §8): what filters and handlers need from the
//! state store. The gateway implements it twice — embedded (single node,
//! durable on disk) and Redis (many nodes, exact) — and runs the same tests on
//! both.

use std::time::Duration;

use async_trait::async_trait;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The backend cannot be reached; callers decide whether to fail open or closed.
    Unavailable(String),
    /// Stored data is not what the gateway wrote.
    Corrupt(String),
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::Unavailable(m) => write!(f, "state store unavailable: {m}"),
            StateError::Corrupt(m) => write!(f, "state store corrupt: {m}"),
        }
    }
}

impl std::error::Error for StateError {}

#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// Sliding-window limiter: admit and count this request when fewer than
    /// `limit` requests were admitted for `bucket` in the last `window`.
    /// Exact: the `limit + 1`-th request inside any window is refused.
    async fn rate_limit(
        &self,
        bucket: &str,
        limit: u32,
        window: Duration,
    ) -> Result<RateDecision, StateError>;

    /// Whether the backend can serve requests now (for `/readyz`).
    async fn ready(&self) -> bool;

    /// `embedded` or `redis`, for logs and metrics.
    fn backend_name(&self) -> &'static str;
}

/// The exact sliding-window log both backends use: the admitted timestamps
/// (milliseconds) of one bucket, oldest first. At most `limit` are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlidingLog {
    hits: std::collections::VecDeque<u64>,
}

impl SlidingLog {
    /// Admit a request at `now_ms` if fewer than `limit` hits fall inside
    /// `(now_ms - window_ms, now_ms]`; record it when admitted.
    pub fn admit(&mut self, now_ms: u64, limit: u32, window_ms: u64) -> RateDecision {
        let floor = now_ms.saturating_sub(window_ms);
        while self.hits.front().is_some_and(|&t| t <= floor) {
            self.hits.pop_front();
        }
        // A lowered limit leaves extra old hits; they expire on their own.
        let allowed = (self.hits.len() as u64) < u64::from(limit);
        if allowed {
            self.hits.push_back(now_ms);
        }
        let used = self.hits.len() as u64;
        let reset_ms = self
            .hits
            .front()
            .map(|&t| (t + window_ms).saturating_sub(now_ms))
            .unwrap_or(0);
        RateDecision {
            allowed,
            limit,
            remaining: u64::from(limit).saturating_sub(used) as u32,
            reset_after: Duration::from_millis(reset_ms),
        }
    }

    /// Record a hit without checking (journal replay).
    pub fn record(&mut self, at_ms: u64) {
        self.hits.push_back(at_ms);
    }

    /// Whether every hit is older than the window (the bucket can be dropped).
    pub fn is_idle(&self, now_ms: u64, window_ms: u64) -> bool {
        self.hits
            .back()
            .is_none_or(|&t| t <= now_ms.saturating_sub(window_ms))
    }

    pub fn hits(&self) -> impl Iterator<Item = u64> + '_ {
        self.hits.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eleventh_request_in_a_minute_is_refused() {
        let mut log = SlidingLog::default();
        for i in 0..10 {
            let d = log.admit(1_000 + i * 100, 10, 60_000);
            assert!(d.allowed);
            assert_eq!(d.remaining, 9 - i as u32);
        }
        let d = log.admit(59_000, 10, 60_000);
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
                assert!(log.admit(t, 10, 60_000).allowed);
            }
        }
        // At 60.001 s the first five have left; the five from 30 s remain.
        for _ in 0..5 {
            assert!(log.admit(60_001, 10, 60_000).allowed);
        }
        assert!(!log.admit(60_001, 10, 60_000).allowed);
        assert!(!log.admit(89_999, 10, 60_000).allowed);
        assert!(log.admit(90_001, 10, 60_000).allowed);
    }

    #[test]
    fn idle_after_window() {
        let mut log = SlidingLog::default();
        log.admit(10, 1, 100);
        assert!(!log.is_idle(50, 100));
        assert!(log.is_idle(110, 100));
    }
}
