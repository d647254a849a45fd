//! The state contract the gateway's handlers use (DESIGN §8): quotas and
//! their reservations, request logs, the storage byte ledger, galleries,
//! and [`StateStore`], a whole backend. Both backends (`embedded`, `redis`)
//! implement it, and one suite tests both. What the filters need (rate
//! limits, stored keys) is the filters crate's.

use async_trait::async_trait;
use kikaku_filters::state::{KeyStore, PendingRateLimit, RateDecision, RateLimits, StateError};

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

/// What an image request asks of the state when it is admitted
/// ([`StateStore::admit_within_ceiling`]).
#[derive(Debug, Clone, Copy)]
pub struct ImageAdmission<'a> {
    /// The key's rate limit, when the route has one.
    pub rate: Option<&'a PendingRateLimit>,
    pub subject: &'a str,
    /// Images to reserve of the key's quota, `limit`.
    pub amount: u64,
    pub limit: u64,
    /// The model's gateway-wide ceiling, charged `cost`.
    pub ceiling: &'a PendingRateLimit,
    pub cost: u32,
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

/// A presigned URL the management API handed out, kept until it expires
/// so that operators can list the live ones.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PresignedRecord {
    /// The owning storage key's id.
    pub owner_id: String,
    pub bucket_name: String,
    pub object_key: String,
    /// `GET`, `PUT` or `DELETE`.
    pub method: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Presigned URLs handed out, while they live.
#[async_trait]
pub trait PresignedUrls: Send + Sync {
    async fn presigned_add(&self, record: PresignedRecord) -> Result<(), StateError>;
    /// Those whose `expires_at` is after `now` (unix seconds), newest first
    /// (records of the same second in no set order).
    async fn presigned_list(&self, now: i64) -> Result<Vec<PresignedRecord>, StateError>;
}

/// A whole state backend.
#[async_trait]
pub trait StateStore:
    RateLimits
    + Quotas
    + RequestLogs
    + KeyStore
    + StorageLedger
    + Galleries
    + PresignedUrls
    + super::TempFiles
    + super::Leases
    + super::HostedFiles
    + 'static
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
    /// The default makes the calls in turn ([`admit_in_turns`]: the
    /// ceiling's key is gateway-wide, so on a Redis Cluster it cannot join
    /// the key's script); one Redis runs it all as one script, and the
    /// embedded backend under one lock, in one journal write.
    async fn admit_within_ceiling(
        &self,
        asked: &ImageAdmission<'_>,
    ) -> Result<Admission, StateError> {
        admit_in_turns(self, asked).await
    }

    /// `embedded` or `redis`, for logs and metrics.
    fn backend_name(&self) -> &'static str;
}

/// [`StateStore::admit_within_ceiling`] as calls in turn: rate limit and
/// reservation, then the ceiling, releasing the reservation it refuses.
pub async fn admit_in_turns<S: StateStore + ?Sized>(
    store: &S,
    asked: &ImageAdmission<'_>,
) -> Result<Admission, StateError> {
    let ImageAdmission {
        rate,
        subject,
        amount,
        limit,
        ceiling,
        cost,
    } = *asked;
    let (rate, reservation) = match rate {
        Some(r) => {
            let (d, res) = store.admit_and_reserve(r, subject, amount, limit).await?;
            (Some(d), res)
        }
        None => (None, store.quota_reserve(subject, amount, limit).await?),
    };
    let Some(reservation) = reservation else {
        return Ok(Admission {
            rate,
            ceiling: None,
            reservation: None,
        });
    };
    let checked = store
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
    let _ = store.quota_settle(subject, reservation, 0).await;
    checked.map(|c| Admission {
        rate,
        ceiling: Some(c),
        reservation: None,
    })
}
