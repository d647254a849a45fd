//! The state contract (DESIGN §8): what filters and handlers need from the
//! state store. The gateway implements it twice — embedded (single node,
//! durable on disk) and Redis (many nodes, exact) — and runs the same tests on
//! both.

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

/// How an image request was admitted ([`StateStore::admit_within_ceiling`]):
/// its key's rate-limit decision (when the route counts one), the
/// gateway-wide ceiling's (checked only once the quota had room), and the
/// reservation, held only when every check let the request through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub rate: Option<RateDecision>,
    pub ceiling: Option<RateDecision>,
    pub reservation: Option<Reservation>,
}

/// A quota reservation: units held for one request until it settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub id: u64,
    pub amount: u64,
}

impl LogQuery {
    /// Keep the logs inside `[from_ms, to_ms)` (given newest first) and cut
    /// out the requested page; `total` counts every match.
    pub fn apply<'a>(&self, newest_first: impl Iterator<Item = &'a RequestLog>) -> LogPage {
        let matching: Vec<&RequestLog> = newest_first
            .filter(|l| l.timestamp_ms >= self.from_ms && l.timestamp_ms < self.to_ms)
            .collect();
        let skip = (self.page.saturating_sub(1) * self.limit) as usize;
        LogPage {
            total: matching.len() as u64,
            logs: matching
                .into_iter()
                .skip(skip)
                .take(self.limit as usize)
                .cloned()
                .collect(),
        }
    }
}

/// Quota counters of one subject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QuotaUsage {
    /// Settled (billed) units.
    pub used: u64,
    /// Units reserved by requests in flight.
    pub reserved: u64,
}

/// One request as the account endpoints show it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RequestLog {
    /// Assigned by the store, increasing per subject.
    #[serde(default)]
    pub id: u64,
    /// Model alias the client asked for.
    pub model: String,
    /// Unix milliseconds.
    pub timestamp_ms: i64,
    /// `success` or `failed`.
    pub status: String,
    pub http_status: u16,
    pub response_time_ms: u64,
    /// Images billed.
    pub images: u64,
    pub tokens: u64,
    pub error_message: Option<String>,
}

/// Per-subject request statistics (kept as counters, not recomputed).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct RequestStats {
    pub total_requests: u64,
    pub successful_requests: u64,
    pub failed_requests: u64,
    pub total_response_time_ms: u64,
}

/// A page of logs: the entries and how many matched in all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogPage {
    pub logs: Vec<RequestLog>,
    pub total: u64,
}

/// Which logs to return: `[from_ms, to_ms)`, newest first, 1-based pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    pub page: u64,
    pub limit: u64,
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

/// Quota ledgers: reserve before the work, settle to what was delivered.
#[async_trait]
pub trait Quotas: Send + Sync {
    /// Reserve `amount` units of `subject`'s quota when `used + reserved +
    /// amount <= limit`. `Ok(None)`: not enough left. Atomic: concurrent
    /// reservations never overshoot.
    async fn quota_reserve(
        &self,
        subject: &str,
        amount: u64,
        limit: u64,
    ) -> Result<Option<Reservation>, StateError>;

    /// Bill `used` (at most the reserved amount) and release the rest.
    /// Durable before it returns. Idempotent: repeating a settle whose reply
    /// was lost bills nothing more, so callers may retry until it succeeds.
    async fn quota_settle(
        &self,
        subject: &str,
        reservation: Reservation,
        used: u64,
    ) -> Result<(), StateError>;

    /// Give back `amount` settled units of `reservation` (an answer that
    /// could not be delivered after it was billed), once however often it
    /// is asked. Durable before it returns.
    async fn quota_refund(
        &self,
        subject: &str,
        reservation: Reservation,
        amount: u64,
    ) -> Result<(), StateError>;

    async fn quota_usage(&self, subject: &str) -> Result<QuotaUsage, StateError>;

    /// Count one request against a rate-limit bucket and, only when it is
    /// admitted, reserve `amount` of `subject`'s quota: what an image
    /// request needs before it calls upstream. Backends with a network hop
    /// do both in one round trip (the bucket is tagged with the subject).
    async fn admit_and_reserve(
        &self,
        rate: &PendingRateLimit,
        subject: &str,
        amount: u64,
        limit: u64,
    ) -> Result<(RateDecision, Option<Reservation>), StateError>;
}

/// Request records behind the account endpoints.
#[async_trait]
pub trait RequestLogs: Send + Sync {
    /// Record one request; returns its id.
    async fn log_request(&self, subject: &str, log: RequestLog) -> Result<u64, StateError>;

    async fn logs(&self, subject: &str, query: LogQuery) -> Result<LogPage, StateError>;

    async fn request_stats(&self, subject: &str) -> Result<RequestStats, StateError>;
}

/// Where bytes of a storage key are counted: a whole object, or one part
/// of a multipart upload not yet completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerSlot {
    /// `<bucket>/<key>`.
    Object(String),
    Part {
        upload_id: String,
        part: u32,
    },
}

/// A multipart upload in progress, as ListMultipartUploads shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpenUpload {
    pub upload_id: String,
    /// The tenant's bucket.
    pub bucket: String,
    pub key: String,
    /// Unix milliseconds.
    pub initiated_ms: i64,
}

/// The byte ledger behind storage quotas (DESIGN §4). Usage is the sum of
/// the sizes recorded here; the `used`/`reserved` counters are the same as
/// [`Quotas`]'s for the subject, so `quota_usage` reports them.
#[async_trait]
pub trait StorageLedger: Send + Sync {
    /// Hold room for `amount` bytes about to be written to `slot`. What the
    /// slot holds now counts as credit: an overwrite needs only the
    /// difference. `Ok(None)`: the quota cannot cover it. Atomic.
    async fn storage_reserve(
        &self,
        subject: &str,
        slot: &LedgerSlot,
        amount: u64,
        limit: u64,
    ) -> Result<Option<Reservation>, StateError>;

    /// The write landed with `size` bytes: release the reservation and set
    /// the slot to `size` (usage moves by the difference). Durable;
    /// repeating it changes nothing.
    async fn storage_commit(
        &self,
        subject: &str,
        reservation: Reservation,
        slot: &LedgerSlot,
        size: u64,
    ) -> Result<(), StateError>;

    /// The write failed: release the reservation.
    async fn storage_release(
        &self,
        subject: &str,
        reservation: Reservation,
    ) -> Result<(), StateError>;

    /// The object is gone; returns the bytes given back.
    async fn storage_remove(&self, subject: &str, object: &str) -> Result<u64, StateError>;

    /// A multipart upload completed into `object` of `size` bytes: its parts
    /// leave the ledger and the object takes their place.
    async fn storage_complete(
        &self,
        subject: &str,
        upload_id: &str,
        object: &str,
        size: u64,
    ) -> Result<(), StateError>;

    /// A multipart upload was aborted; returns the bytes its parts held.
    async fn storage_abort(&self, subject: &str, upload_id: &str) -> Result<u64, StateError>;

    /// A multipart upload began (listed until it completes or aborts).
    async fn storage_upload_begin(
        &self,
        subject: &str,
        upload: OpenUpload,
    ) -> Result<(), StateError>;

    /// The subject's open multipart uploads, oldest first.
    async fn storage_uploads(&self, subject: &str) -> Result<Vec<OpenUpload>, StateError>;

    /// Replace the subject's objects with what the backend holds (parts of
    /// open uploads stay). Returns the new usage.
    async fn storage_reconcile(
        &self,
        subject: &str,
        objects: Vec<(String, u64)>,
    ) -> Result<u64, StateError>;
}

/// One image of a key's gallery (DESIGN §3).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GalleryRecord {
    /// Assigned by the store, increasing per subject.
    #[serde(default)]
    pub id: u64,
    /// Unguessable; names the stored copy (`/gallery/<token>.jpeg`).
    pub token: String,
    pub prompt: String,
    /// Model alias the client asked for.
    pub model: String,
    /// The size the client asked for (`2K`, `2048x2048`).
    pub image_size: String,
    /// Unix milliseconds.
    pub created_at_ms: i64,
}

/// Gallery records, newest first, at most `keep` per subject.
#[async_trait]
pub trait Galleries: Send + Sync {
    /// Add a record; returns its id and the records pushed out by `keep`
    /// (whose stored copies the caller deletes).
    async fn gallery_add(
        &self,
        subject: &str,
        record: GalleryRecord,
        keep: u64,
    ) -> Result<(u64, Vec<GalleryRecord>), StateError>;

    /// A 1-based page, newest first, and how many there are in all.
    async fn gallery_page(
        &self,
        subject: &str,
        page: u64,
        limit: u64,
    ) -> Result<(Vec<GalleryRecord>, u64), StateError>;
}

/// A whole state backend.
#[async_trait]
pub trait StateStore:
    RateLimits + Quotas + RequestLogs + KeyStore + StorageLedger + Galleries + 'static
{
    /// Whether the backend can serve requests now (for `/readyz`).
    async fn ready(&self) -> bool;

    /// Settle a reservation (as [`Quotas::quota_settle`]) and record the
    /// request (as [`RequestLogs::log_request`]) in one step: what an image
    /// request does once its answer is ready. The embedded backend journals
    /// both with one write, Redis runs one script. On an error the settle
    /// may or may not be done; it is idempotent, so the caller settles
    /// again. Returns the log's id.
    async fn settle_and_log(
        &self,
        subject: &str,
        reservation: Reservation,
        used: u64,
        log: RequestLog,
    ) -> Result<u64, StateError> {
        self.quota_settle(subject, reservation, used).await?;
        self.log_request(subject, log).await
    }

    /// Admit an image request: count it against `rate` (when the route has
    /// one), reserve `amount` of `subject`'s quota (at most `limit`), then
    /// charge `cost` to the gateway-wide `ceiling`. Each refusal ends it and
    /// takes nothing further: a reservation the ceiling refuses is released.
    /// The default makes the calls in turn (the ceiling's key is
    /// gateway-wide, so on a Redis Cluster it cannot join the key's script);
    /// the embedded backend does it all under one lock, in one journal write.
    async fn admit_within_ceiling(
        &self,
        rate: Option<&PendingRateLimit>,
        subject: &str,
        amount: u64,
        limit: u64,
        ceiling: &PendingRateLimit,
        cost: u32,
    ) -> Result<Admission, StateError> {
        let (rate, reservation) = match rate {
            Some(r) => {
                let (d, res) = self.admit_and_reserve(r, subject, amount, limit).await?;
                (Some(d), res)
            }
            None => (None, self.quota_reserve(subject, amount, limit).await?),
        };
        let Some(reservation) = reservation else {
            return Ok(Admission {
                rate,
                ceiling: None,
                reservation: None,
            });
        };
        let checked = self
            .rate_limit(&ceiling.bucket, cost, ceiling.limit, ceiling.window)
            .await;
        if let Ok(c) = checked {
            if c.allowed {
                return Ok(Admission {
                    rate,
                    ceiling: Some(c),
                    reservation: Some(reservation),
                });
            }
        }
        // Nothing was billed. Should the release fail too, the hold lapses
        // with the reservation's lifetime.
        let _ = self.quota_settle(subject, reservation, 0).await;
        checked.map(|c| Admission {
            rate,
            ceiling: Some(c),
            reservation: None,
        })
    }

    /// `embedded` or `redis`, for logs and metrics.
    fn backend_name(&self) -> &'static str;
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
