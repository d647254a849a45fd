//! The embedded backend: exact state in memory, every change journaled to
//! local disk before it is acknowledged, replayed at start.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use kikaku_filters::context::PendingRateLimit;
use kikaku_filters::state::SlidingLog;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::journal::Journal;
use kikaku_filters::keys::{hex, parse_hex32};
use kikaku_filters::ApiKey;

use super::{
    Admission, Galleries, GalleryRecord, KeyStore, LedgerSlot, LogPage, LogQuery, OpenUpload,
    QuotaUsage, Quotas, RateDecision, RateLimits, RequestLog, RequestLogs, RequestStats,
    Reservation, StateError, StateStore, StorageLedger,
};

const DEFAULT_LOGS_PER_KEY: u64 = 10_000;

/// Compact the journal after this many appended records at the least...
const COMPACT_EVERY: u64 = 100_000;
/// ...and never before the journal holds this many times the live records,
/// so a busy key whose every hit is still live cannot make compaction quadratic.
const COMPACT_RATIO: u64 = 2;

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Record {
    /// `n` admitted units: bucket, time (unix ms), window (ms).
    Hit {
        b: String,
        t: u64,
        w: u64,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        n: u32,
    },
    /// Settled quota units added to a subject's usage. Reservations are not
    /// journaled: one in flight when the process dies was never delivered,
    /// so it is released by not being replayed.
    Used { s: String, n: u64 },
    /// Settled units given back.
    Refund { s: String, n: u64 },
    /// One request record.
    Log { s: String, l: RequestLog },
    /// A stored key, created or replaced.
    KeyPut { k: ApiKey },
    /// A stored key removed (hash in hex).
    KeyDel { h: String },
    /// A subject's request counters, written by compaction after its
    /// retained logs: it sets the counters (logs past the cap are gone, their
    /// counts are not).
    Stats { s: String, st: StoredStats },
    /// A storage object set to `n` bytes (usage moves by the difference).
    Obj { s: String, o: String, n: u64 },
    /// A storage object removed.
    ObjDel { s: String, o: String },
    /// Part `p` of multipart upload `u` set to `n` bytes.
    Part {
        s: String,
        u: String,
        p: u32,
        n: u64,
    },
    /// Upload `u` completed into object `o` of `n` bytes.
    Done {
        s: String,
        u: String,
        o: String,
        n: u64,
    },
    /// Upload `u` aborted.
    Abort { s: String, u: String },
    /// The subject's objects are about to be restated (reconcile).
    ObjReset { s: String },
    /// A multipart upload began.
    UpBegin { s: String, up: OpenUpload },
    /// A gallery record (with its id), and how many the subject keeps.
    Gal {
        s: String,
        g: GalleryRecord,
        #[serde(default)]
        k: u64,
    },
}

/// `RequestStats` as the journal stores it.
#[derive(Serialize, Deserialize)]
struct StoredStats {
    total: u64,
    ok: u64,
    failed: u64,
    ms: u64,
}

fn one() -> u32 {
    1
}
fn is_one(n: &u32) -> bool {
    *n == 1
}

struct Bucket {
    log: SlidingLog,
    window_ms: u64,
}

#[derive(Default)]
struct Quota {
    used: u64,
    /// Reservation id → amount, for requests in flight.
    held: HashMap<u64, u64>,
    /// Storage keys: object → bytes.
    objects: HashMap<String, u64>,
    /// Storage keys: upload id → part number → bytes.
    parts: HashMap<String, HashMap<u32, u64>>,
    /// Storage keys: multipart uploads in progress.
    uploads: Vec<OpenUpload>,
}

impl Quota {
    fn reserved(&self) -> u64 {
        self.held.values().sum()
    }

    /// Move usage by `new - old`, never below zero.
    fn shift(&mut self, old: u64, new: u64) {
        self.used = (self.used + new).saturating_sub(old);
    }

    fn slot_size(&self, slot: &LedgerSlot) -> u64 {
        match slot {
            LedgerSlot::Object(o) => self.objects.get(o).copied().unwrap_or(0),
            LedgerSlot::Part { upload_id, part } => self
                .parts
                .get(upload_id)
                .and_then(|p| p.get(part))
                .copied()
                .unwrap_or(0),
        }
    }

    fn ledger_total(&self) -> u64 {
        self.objects.values().sum::<u64>()
            + self.parts.values().flat_map(|p| p.values()).sum::<u64>()
    }
}

#[derive(Default)]
struct Inner {
    buckets: HashMap<String, Bucket>,
    quotas: HashMap<String, Quota>,
    /// Oldest first, at most `logs_per_key` each.
    logs: HashMap<String, VecDeque<RequestLog>>,
    logs_per_key: usize,
    stats: HashMap<String, RequestStats>,
    /// Oldest first.
    galleries: HashMap<String, VecDeque<GalleryRecord>>,
    /// Next gallery id per subject.
    gallery_seq: HashMap<String, u64>,
    keys: HashMap<[u8; 32], ApiKey>,
    next_reservation: u64,
    journal: Option<Journal>,
    /// Appended records that trigger the next compaction.
    compact_at: u64,
}

pub struct EmbeddedState {
    inner: Mutex<Inner>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl EmbeddedState {
    pub fn open(path: &Path) -> Result<EmbeddedState, StateError> {
        Self::open_with(path, DEFAULT_LOGS_PER_KEY)
    }

    /// Open keeping at most `logs_per_key` request logs per key.
    pub fn open_with(path: &Path, logs_per_key: u64) -> Result<EmbeddedState, StateError> {
        let (journal, records) = Journal::open::<Record>(path)?;
        let mut inner = Inner {
            compact_at: COMPACT_EVERY,
            logs_per_key: logs_per_key.max(1) as usize,
            ..Inner::default()
        };
        for r in records {
            inner.apply(r);
        }
        inner.journal = Some(journal);
        inner.compact(now_ms())?;
        Ok(EmbeddedState {
            inner: Mutex::new(inner),
        })
    }
}

impl Inner {
    /// Apply one record to memory (at replay and after each append).
    fn apply(&mut self, r: Record) {
        match r {
            Record::Hit { b, t, w, n } => {
                let bucket = self.buckets.entry(b).or_insert_with(|| Bucket {
                    log: SlidingLog::default(),
                    window_ms: w,
                });
                bucket.window_ms = w;
                bucket.log.push(t, n);
            }
            Record::Used { s, n } => self.quotas.entry(s).or_default().used += n,
            Record::Refund { s, n } => {
                let q = self.quotas.entry(s).or_default();
                q.used = q.used.saturating_sub(n);
            }
            Record::Log { s, l } => {
                let st = self.stats.entry(s.clone()).or_default();
                st.total_requests += 1;
                if l.status == "success" {
                    st.successful_requests += 1;
                } else {
                    st.failed_requests += 1;
                }
                st.total_response_time_ms += l.response_time_ms;
                let logs = self.logs.entry(s).or_default();
                logs.push_back(l);
                while logs.len() > self.logs_per_key {
                    logs.pop_front();
                }
            }
            Record::KeyPut { k } => {
                self.keys.insert(k.hash, k);
            }
            Record::Stats { s, st } => {
                self.stats.insert(
                    s,
                    RequestStats {
                        total_requests: st.total,
                        successful_requests: st.ok,
                        failed_requests: st.failed,
                        total_response_time_ms: st.ms,
                    },
                );
            }
            Record::Obj { s, o, n } => {
                let q = self.quotas.entry(s).or_default();
                let old = q.objects.insert(o, n).unwrap_or(0);
                q.shift(old, n);
            }
            Record::ObjDel { s, o } => {
                let q = self.quotas.entry(s).or_default();
                let old = q.objects.remove(&o).unwrap_or(0);
                q.shift(old, 0);
            }
            Record::Part { s, u, p, n } => {
                let q = self.quotas.entry(s).or_default();
                let old = q.parts.entry(u).or_default().insert(p, n).unwrap_or(0);
                q.shift(old, n);
            }
            Record::Gal { s, g, k } => {
                let seq = self.gallery_seq.entry(s.clone()).or_insert(0);
                *seq = (*seq).max(g.id);
                let keep = if k == 0 { usize::MAX } else { k as usize };
                let list = self.galleries.entry(s).or_default();
                list.push_back(g);
                while list.len() > keep {
                    list.pop_front();
                }
            }
            Record::UpBegin { s, up } => {
                let q = self.quotas.entry(s).or_default();
                q.uploads.retain(|x| x.upload_id != up.upload_id);
                q.uploads.push(up);
            }
            Record::Done { s, u, o, n } => {
                let q = self.quotas.entry(s).or_default();
                q.uploads.retain(|x| x.upload_id != u);
                let parts: u64 = q.parts.remove(&u).map(|p| p.values().sum()).unwrap_or(0);
                let old = q.objects.insert(o, n).unwrap_or(0);
                q.shift(parts + old, n);
            }
            Record::Abort { s, u } => {
                let q = self.quotas.entry(s).or_default();
                q.uploads.retain(|x| x.upload_id != u);
                let parts: u64 = q.parts.remove(&u).map(|p| p.values().sum()).unwrap_or(0);
                q.shift(parts, 0);
            }
            Record::ObjReset { s } => {
                let q = self.quotas.entry(s).or_default();
                let objects: u64 = q.objects.drain().map(|(_, n)| n).sum();
                q.shift(objects, 0);
            }
            Record::KeyDel { h } => {
                if let Some(hash) = parse_hex32(&h) {
                    self.keys.remove(&hash);
                }
            }
        }
    }

    fn journal(&mut self) -> Result<&mut Journal, StateError> {
        self.journal
            .as_mut()
            .ok_or_else(|| StateError::Unavailable("journal not open".into()))
    }

    /// Journal a record, then apply it. Not durable means not done.
    fn commit(&mut self, rec: Record) -> Result<(), StateError> {
        self.journal()?.append_all(std::slice::from_ref(&rec))?;
        self.apply(rec);
        self.compact_if_due()
    }

    /// Journal records with one write, then apply them: all or none.
    fn commit_all(&mut self, recs: Vec<Record>) -> Result<(), StateError> {
        self.journal()?.append_all(&recs)?;
        for rec in recs {
            self.apply(rec);
        }
        self.compact_if_due()
    }

    fn compact_if_due(&mut self) -> Result<(), StateError> {
        if self.journal()?.appended >= self.compact_at {
            self.compact(now_ms())?;
        }
        Ok(())
    }

    /// The `Used` record of a settle (none when nothing is billed), and
    /// what it bills: at most what was reserved, and only once.
    fn settle_record(&self, subject: &str, r: Reservation, used: u64) -> Option<Record> {
        let held = self
            .quotas
            .get(subject)
            .and_then(|q| q.held.get(&r.id).copied())
            .unwrap_or(0);
        let billed = used.min(held);
        (billed > 0).then(|| Record::Used {
            s: subject.to_string(),
            n: billed,
        })
    }

    /// Forget a reservation once its settle is durable.
    fn release(&mut self, subject: &str, r: Reservation) {
        if let Some(q) = self.quotas.get_mut(subject) {
            q.held.remove(&r.id);
        }
    }

    /// The `Log` record of a request, with the next id of its subject.
    fn log_record(&self, subject: &str, mut log: RequestLog) -> (Record, u64) {
        log.id = self
            .logs
            .get(subject)
            .and_then(|l| l.back())
            .map(|l| l.id)
            .unwrap_or(0)
            + 1;
        let id = log.id;
        (
            Record::Log {
                s: subject.to_string(),
                l: log,
            },
            id,
        )
    }

    /// Drop idle buckets and rewrite the journal with the live state only.
    fn compact(&mut self, now: u64) -> Result<(), StateError> {
        self.buckets.retain(|_, b| !b.log.is_idle(now, b.window_ms));
        let mut live: Vec<Record> = Vec::new();
        for (name, b) in &self.buckets {
            let floor = now.saturating_sub(b.window_ms);
            live.extend(
                b.log
                    .runs()
                    .filter(|&(t, _)| t > floor)
                    .map(|(t, n)| Record::Hit {
                        b: name.clone(),
                        t,
                        w: b.window_ms,
                        n: n.min(u64::from(u32::MAX)) as u32,
                    }),
            );
        }
        for (s, q) in &self.quotas {
            // Ledger entries replay into usage; `Used` carries the rest
            // (image quotas, or settled units outside the ledger).
            for (o, &n) in &q.objects {
                live.push(Record::Obj {
                    s: s.clone(),
                    o: o.clone(),
                    n,
                });
            }
            for (u, parts) in &q.parts {
                for (&p, &n) in parts {
                    live.push(Record::Part {
                        s: s.clone(),
                        u: u.clone(),
                        p,
                        n,
                    });
                }
            }
            live.extend(q.uploads.iter().map(|up| Record::UpBegin {
                s: s.clone(),
                up: up.clone(),
            }));
            let rest = q.used.saturating_sub(q.ledger_total());
            if rest > 0 {
                live.push(Record::Used {
                    s: s.clone(),
                    n: rest,
                });
            }
        }
        for (s, logs) in &self.logs {
            live.extend(logs.iter().map(|l| Record::Log {
                s: s.clone(),
                l: l.clone(),
            }));
        }
        // After the logs: replaying them counts again, this sets the truth.
        live.extend(self.stats.iter().map(|(s, st)| Record::Stats {
            s: s.clone(),
            st: StoredStats {
                total: st.total_requests,
                ok: st.successful_requests,
                failed: st.failed_requests,
                ms: st.total_response_time_ms,
            },
        }));
        for (s, list) in &self.galleries {
            live.extend(list.iter().map(|g| Record::Gal {
                s: s.clone(),
                g: g.clone(),
                k: 0,
            }));
        }
        live.extend(self.keys.values().map(|k| Record::KeyPut { k: k.clone() }));
        self.compact_at = COMPACT_EVERY.max(live.len() as u64 * COMPACT_RATIO);
        self.journal()?.rewrite(&live)
    }
}

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
    fn peek_hit(
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

    /// Hold `amount` of `subject`'s quota when `used + reserved + amount`
    /// stays within `limit` (holds live in memory only: a restart drops them).
    fn reserve(&mut self, subject: &str, amount: u64, limit: u64) -> Option<Reservation> {
        self.next_reservation += 1;
        let id = self.next_reservation;
        let q = self.quotas.entry(subject.to_string()).or_default();
        if q.used + q.reserved() + amount > limit {
            return None;
        }
        q.held.insert(id, amount);
        Some(Reservation { id, amount })
    }

    fn has_room(&self, subject: &str, amount: u64, limit: u64) -> bool {
        let (used, reserved) = self
            .quotas
            .get(subject)
            .map(|q| (q.used, q.reserved()))
            .unwrap_or_default();
        used + reserved + amount <= limit
    }
}

#[async_trait]
impl Quotas for EmbeddedState {
    async fn quota_reserve(
        &self,
        subject: &str,
        amount: u64,
        limit: u64,
    ) -> Result<Option<Reservation>, StateError> {
        Ok(self.inner.lock().reserve(subject, amount, limit))
    }

    async fn quota_settle(
        &self,
        subject: &str,
        reservation: Reservation,
        used: u64,
    ) -> Result<(), StateError> {
        let mut inner = self.inner.lock();
        // Never bill more than was reserved, nor settle twice. The hold is
        // dropped only once the bill is journaled: a failed write leaves
        // it for the caller's retry, not billed as zero.
        if let Some(rec) = inner.settle_record(subject, reservation, used) {
            inner.commit(rec)?;
        }
        inner.release(subject, reservation);
        Ok(())
    }

    /// In-process, called once per answer (no retry can repeat it).
    async fn quota_refund(
        &self,
        subject: &str,
        _reservation: Reservation,
        amount: u64,
    ) -> Result<(), StateError> {
        if amount == 0 {
            return Ok(());
        }
        self.inner.lock().commit(Record::Refund {
            s: subject.to_string(),
            n: amount,
        })
    }

    async fn admit_and_reserve(
        &self,
        rate: &PendingRateLimit,
        subject: &str,
        amount: u64,
        limit: u64,
    ) -> Result<(RateDecision, Option<Reservation>), StateError> {
        // In process: two calls cost nothing extra.
        let decision = self
            .rate_limit(&rate.bucket, 1, rate.limit, rate.window)
            .await?;
        if !decision.allowed {
            return Ok((decision, None));
        }
        Ok((decision, self.quota_reserve(subject, amount, limit).await?))
    }

    async fn quota_usage(&self, subject: &str) -> Result<QuotaUsage, StateError> {
        let inner = self.inner.lock();
        Ok(inner
            .quotas
            .get(subject)
            .map(|q| QuotaUsage {
                used: q.used,
                reserved: q.reserved(),
            })
            .unwrap_or_default())
    }
}

#[async_trait]
impl StorageLedger for EmbeddedState {
    async fn storage_reserve(
        &self,
        subject: &str,
        slot: &LedgerSlot,
        amount: u64,
        limit: u64,
    ) -> Result<Option<Reservation>, StateError> {
        let mut inner = self.inner.lock();
        inner.next_reservation += 1;
        let id = inner.next_reservation;
        let q = inner.quotas.entry(subject.to_string()).or_default();
        let need = amount.saturating_sub(q.slot_size(slot));
        if q.used + q.reserved() + need > limit {
            return Ok(None);
        }
        q.held.insert(id, need);
        Ok(Some(Reservation { id, amount: need }))
    }

    async fn storage_commit(
        &self,
        subject: &str,
        reservation: Reservation,
        slot: &LedgerSlot,
        size: u64,
    ) -> Result<(), StateError> {
        let mut inner = self.inner.lock();
        if let Some(q) = inner.quotas.get_mut(subject) {
            q.held.remove(&reservation.id);
        }
        let s = subject.to_string();
        inner.commit(match slot {
            LedgerSlot::Object(o) => Record::Obj {
                s,
                o: o.clone(),
                n: size,
            },
            LedgerSlot::Part { upload_id, part } => Record::Part {
                s,
                u: upload_id.clone(),
                p: *part,
                n: size,
            },
        })
    }

    async fn storage_release(
        &self,
        subject: &str,
        reservation: Reservation,
    ) -> Result<(), StateError> {
        if let Some(q) = self.inner.lock().quotas.get_mut(subject) {
            q.held.remove(&reservation.id);
        }
        Ok(())
    }

    async fn storage_remove(&self, subject: &str, object: &str) -> Result<u64, StateError> {
        let mut inner = self.inner.lock();
        let size = match inner
            .quotas
            .get(subject)
            .and_then(|q| q.objects.get(object))
        {
            Some(&n) => n,
            None => return Ok(0),
        };
        inner.commit(Record::ObjDel {
            s: subject.to_string(),
            o: object.to_string(),
        })?;
        Ok(size)
    }

    async fn storage_complete(
        &self,
        subject: &str,
        upload_id: &str,
        object: &str,
        size: u64,
    ) -> Result<(), StateError> {
        self.inner.lock().commit(Record::Done {
            s: subject.to_string(),
            u: upload_id.to_string(),
            o: object.to_string(),
            n: size,
        })
    }

    async fn storage_upload_begin(
        &self,
        subject: &str,
        upload: OpenUpload,
    ) -> Result<(), StateError> {
        self.inner.lock().commit(Record::UpBegin {
            s: subject.to_string(),
            up: upload,
        })
    }

    async fn storage_uploads(&self, subject: &str) -> Result<Vec<OpenUpload>, StateError> {
        Ok(self
            .inner
            .lock()
            .quotas
            .get(subject)
            .map(|q| q.uploads.clone())
            .unwrap_or_default())
    }

    async fn storage_abort(&self, subject: &str, upload_id: &str) -> Result<u64, StateError> {
        let mut inner = self.inner.lock();
        let held: u64 = inner
            .quotas
            .get(subject)
            .and_then(|q| q.parts.get(upload_id))
            .map(|p| p.values().sum())
            .unwrap_or(0);
        inner.commit(Record::Abort {
            s: subject.to_string(),
            u: upload_id.to_string(),
        })?;
        Ok(held)
    }

    async fn storage_reconcile(
        &self,
        subject: &str,
        objects: Vec<(String, u64)>,
    ) -> Result<u64, StateError> {
        let mut inner = self.inner.lock();
        let s = subject.to_string();
        inner.commit(Record::ObjReset { s: s.clone() })?;
        for (o, n) in objects {
            inner.commit(Record::Obj { s: s.clone(), o, n })?;
        }
        Ok(inner.quotas.get(subject).map(|q| q.used).unwrap_or(0))
    }
}

#[async_trait]
impl Galleries for EmbeddedState {
    async fn gallery_add(
        &self,
        subject: &str,
        mut record: GalleryRecord,
        keep: u64,
    ) -> Result<(u64, Vec<GalleryRecord>), StateError> {
        let mut inner = self.inner.lock();
        record.id = inner.gallery_seq.get(subject).copied().unwrap_or(0) + 1;
        let id = record.id;
        let keep = keep.max(1) as usize;
        let before: Vec<GalleryRecord> = inner
            .galleries
            .get(subject)
            .map(|l| {
                let over = (l.len() + 1).saturating_sub(keep);
                l.iter().take(over).cloned().collect()
            })
            .unwrap_or_default();
        inner.commit(Record::Gal {
            s: subject.to_string(),
            g: record,
            k: keep as u64,
        })?;
        Ok((id, before))
    }

    async fn gallery_page(
        &self,
        subject: &str,
        page: u64,
        limit: u64,
    ) -> Result<(Vec<GalleryRecord>, u64), StateError> {
        let inner = self.inner.lock();
        let Some(list) = inner.galleries.get(subject) else {
            return Ok((Vec::new(), 0));
        };
        let skip = (page.saturating_sub(1) * limit) as usize;
        let records = list
            .iter()
            .rev()
            .skip(skip)
            .take(limit as usize)
            .cloned()
            .collect();
        Ok((records, list.len() as u64))
    }
}

#[async_trait]
impl RequestLogs for EmbeddedState {
    async fn log_request(&self, subject: &str, log: RequestLog) -> Result<u64, StateError> {
        let mut inner = self.inner.lock();
        let (rec, id) = inner.log_record(subject, log);
        inner.commit(rec)?;
        Ok(id)
    }

    async fn logs(&self, subject: &str, q: LogQuery) -> Result<LogPage, StateError> {
        let inner = self.inner.lock();
        let Some(all) = inner.logs.get(subject) else {
            return Ok(LogPage::default());
        };
        Ok(q.apply(all.iter().rev()))
    }

    async fn request_stats(&self, subject: &str) -> Result<RequestStats, StateError> {
        Ok(self
            .inner
            .lock()
            .stats
            .get(subject)
            .copied()
            .unwrap_or_default())
    }
}

#[async_trait]
impl KeyStore for EmbeddedState {
    async fn key_get(&self, hash: &[u8; 32]) -> Result<Option<ApiKey>, StateError> {
        Ok(self.inner.lock().keys.get(hash).cloned())
    }

    async fn key_put(&self, key: &ApiKey) -> Result<(), StateError> {
        self.inner.lock().commit(Record::KeyPut { k: key.clone() })
    }

    async fn key_delete(&self, hash: &[u8; 32]) -> Result<bool, StateError> {
        let mut inner = self.inner.lock();
        if !inner.keys.contains_key(hash) {
            return Ok(false);
        }
        inner.commit(Record::KeyDel { h: hex(hash) })?;
        Ok(true)
    }

    async fn key_get_by_access_key(&self, id: &str) -> Result<Option<ApiKey>, StateError> {
        let inner = self.inner.lock();
        Ok(inner
            .keys
            .values()
            .find(|k| k.s3.as_ref().is_some_and(|c| c.access_key_id == id))
            .cloned())
    }

    async fn key_list(&self) -> Result<Vec<ApiKey>, StateError> {
        let mut keys: Vec<ApiKey> = self.inner.lock().keys.values().cloned().collect();
        keys.sort_by_key(|k| k.created_at);
        Ok(keys)
    }
}

#[async_trait]
impl StateStore for EmbeddedState {
    async fn ready(&self) -> bool {
        true
    }

    async fn settle_and_log(
        &self,
        subject: &str,
        reservation: Reservation,
        used: u64,
        log: RequestLog,
    ) -> Result<u64, StateError> {
        let mut inner = self.inner.lock();
        let (log_rec, id) = inner.log_record(subject, log);
        let mut recs: Vec<Record> = inner
            .settle_record(subject, reservation, used)
            .into_iter()
            .collect();
        recs.push(log_rec);
        inner.commit_all(recs)?;
        inner.release(subject, reservation);
        Ok(id)
    }

    async fn admit_within_ceiling(
        &self,
        rate: Option<&PendingRateLimit>,
        subject: &str,
        amount: u64,
        limit: u64,
        ceiling: &PendingRateLimit,
        cost: u32,
    ) -> Result<Admission, StateError> {
        let now = now_ms();
        let mut inner = self.inner.lock();
        let mut hits = Vec::with_capacity(2);
        let mut admission = Admission {
            rate: None,
            ceiling: None,
            reservation: None,
        };
        if let Some(r) = rate {
            let (d, hit) = inner.peek_hit(&r.bucket, 1, r.limit, r.window, now);
            admission.rate = Some(d);
            hits.extend(hit);
        }
        let admitted = admission.rate.is_none_or(|d| d.allowed);
        if admitted && inner.has_room(subject, amount, limit) {
            let (c, hit) =
                inner.peek_hit(&ceiling.bucket, cost, ceiling.limit, ceiling.window, now);
            admission.ceiling = Some(c);
            hits.extend(hit);
        }
        // Both hits in one journal write; the hold only once they are in.
        if !hits.is_empty() {
            inner.commit_all(hits)?;
        }
        if admission.ceiling.is_some_and(|c| c.allowed) {
            admission.reservation = inner.reserve(subject, amount, limit);
        }
        Ok(admission)
    }

    fn backend_name(&self) -> &'static str {
        "embedded"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hits_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.journal");
        let w = Duration::from_secs(60);
        {
            let s = EmbeddedState::open(&path).unwrap();
            for _ in 0..3 {
                assert!(s.rate_limit("rl:key:{a}", 1, 3, w).await.unwrap().allowed);
            }
            // Dropped without any shutdown step, as after kill -9.
        }
        let s = EmbeddedState::open(&path).unwrap();
        assert!(!s.rate_limit("rl:key:{a}", 1, 3, w).await.unwrap().allowed);
        assert!(s.rate_limit("rl:key:{b}", 1, 3, w).await.unwrap().allowed);
    }

    #[tokio::test]
    async fn compaction_keeps_live_hits_as_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.journal");
        let w = Duration::from_secs(60);
        let s = EmbeddedState::open(&path).unwrap();
        let n = COMPACT_EVERY + 10;
        for _ in 0..n {
            assert!(s.rate_limit("busy", 1, u32::MAX, w).await.unwrap().allowed);
        }
        {
            let inner = s.inner.lock();
            // One compaction ran (at COMPACT_EVERY); 10 hits came after it.
            assert_eq!(inner.journal.as_ref().unwrap().appended, 10);
        }
        drop(s);
        // Compaction wrote one record per millisecond run, not per hit, and
        // the runs still hold every unit.
        let text = std::fs::read_to_string(&path).unwrap();
        let units: u64 = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["n"].as_u64().unwrap_or(1)
            })
            .sum();
        assert_eq!(units, n);
        assert!(
            (text.lines().count() as u64) < n / 10,
            "{} lines",
            text.lines().count()
        );
        let s = EmbeddedState::open(&path).unwrap();
        assert!(!s.rate_limit("busy", 1, n as u32, w).await.unwrap().allowed);
        assert!(
            s.rate_limit("busy", 1, n as u32 + 1, w)
                .await
                .unwrap()
                .allowed
        );
    }

    #[tokio::test]
    async fn admission_charges_ceiling_and_reserves_only_when_everything_allows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.journal");
        let w = Duration::from_secs(60);
        let rate = PendingRateLimit {
            bucket: "rl:key:{a}".into(),
            limit: 3,
            window: w,
        };
        let ceiling = PendingRateLimit {
            bucket: "model:{m}".into(),
            limit: 5,
            window: w,
        };
        let s = EmbeddedState::open(&path).unwrap();
        let admit = |amount: u64, quota: u64| {
            s.admit_within_ceiling(Some(&rate), "a", amount, quota, &ceiling, amount as u32)
        };
        // Admitted: both hits in the journal, 4 units held.
        let a = admit(4, 10).await.unwrap();
        assert!(a.rate.unwrap().allowed && a.ceiling.unwrap().allowed);
        let r = a.reservation.expect("held");
        assert_eq!(s.quota_usage("a").await.unwrap().reserved, 4);
        assert_eq!(s.inner.lock().journal.as_ref().unwrap().appended, 2);
        // The ceiling refuses 4 more (4 + 4 > 5): nothing held, the key's hit counted.
        let a = admit(4, 10).await.unwrap();
        assert!(a.rate.unwrap().allowed);
        assert!(!a.ceiling.unwrap().allowed);
        assert_eq!(a.reservation, None);
        assert_eq!(s.quota_usage("a").await.unwrap().reserved, 4);
        // No quota room (4 held + 7 > 10): the ceiling is not charged.
        let a = admit(7, 10).await.unwrap();
        assert_eq!((a.ceiling, a.reservation), (None, None));
        assert!(
            s.rate_limit("model:{m}", 1, 5, w).await.unwrap().allowed,
            "4 charged + 1 fits"
        );
        // The key's limit (3) is spent: refused before anything else.
        let a = admit(1, 10).await.unwrap();
        assert!(!a.rate.unwrap().allowed);
        assert_eq!((a.ceiling, a.reservation), (None, None));
        s.quota_settle("a", r, 4).await.unwrap();
        drop(s);
        // What was journaled survives: 3 key hits, 5 ceiling units, 4 used.
        let s = EmbeddedState::open(&path).unwrap();
        assert!(!s.rate_limit("rl:key:{a}", 1, 3, w).await.unwrap().allowed);
        assert!(!s.rate_limit("model:{m}", 1, 5, w).await.unwrap().allowed);
        assert_eq!(s.quota_usage("a").await.unwrap().used, 4);
    }

    fn log(status: &str, ts: i64) -> RequestLog {
        RequestLog {
            id: 0,
            model: "seedream-4.5".into(),
            timestamp_ms: ts,
            status: status.into(),
            http_status: 200,
            response_time_ms: 100,
            images: 1,
            tokens: 16_384,
            error_message: None,
        }
    }

    #[tokio::test]
    async fn quota_reserves_exactly_and_only_settled_usage_survives_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.journal");
        {
            let s = EmbeddedState::open(&path).unwrap();
            let a = s.quota_reserve("k", 4, 5).await.unwrap().unwrap();
            assert!(
                s.quota_reserve("k", 2, 5).await.unwrap().is_none(),
                "4 held + 2 > 5"
            );
            let b = s.quota_reserve("k", 1, 5).await.unwrap().unwrap();
            s.quota_settle("k", a, 3).await.unwrap();
            s.quota_settle("k", a, 3).await.unwrap(); // a second settle bills nothing
            assert_eq!(
                s.quota_usage("k").await.unwrap(),
                QuotaUsage {
                    used: 3,
                    reserved: 1
                }
            );
            let _ = b; // in flight when the process dies
        }
        let s = EmbeddedState::open(&path).unwrap();
        assert_eq!(
            s.quota_usage("k").await.unwrap(),
            QuotaUsage {
                used: 3,
                reserved: 0
            }
        );
        let c = s.quota_reserve("k", 2, 5).await.unwrap().unwrap();
        s.quota_settle("k", c, 9).await.unwrap();
        assert_eq!(
            s.quota_usage("k").await.unwrap().used,
            5,
            "never more than reserved"
        );
    }

    #[tokio::test]
    async fn logs_page_newest_first_and_stats_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.journal");
        {
            let s = EmbeddedState::open(&path).unwrap();
            for i in 0..5 {
                let id = s
                    .log_request(
                        "k",
                        log(if i == 2 { "failed" } else { "success" }, 1_000 + i),
                    )
                    .await
                    .unwrap();
                assert_eq!(id, i as u64 + 1);
            }
        }
        let s = EmbeddedState::open(&path).unwrap();
        let q = LogQuery {
            from_ms: 0,
            to_ms: i64::MAX,
            page: 1,
            limit: 2,
        };
        let p = s.logs("k", q).await.unwrap();
        assert_eq!(p.total, 5);
        assert_eq!(p.logs.iter().map(|l| l.id).collect::<Vec<_>>(), [5, 4]);
        let p = s.logs("k", LogQuery { page: 3, ..q }).await.unwrap();
        assert_eq!(p.logs.iter().map(|l| l.id).collect::<Vec<_>>(), [1]);
        let p = s
            .logs(
                "k",
                LogQuery {
                    from_ms: 1_001,
                    to_ms: 1_003,
                    ..q
                },
            )
            .await
            .unwrap();
        assert_eq!((p.total, p.logs[0].id), (2, 3));
        let st = s.request_stats("k").await.unwrap();
        assert_eq!(
            (
                st.total_requests,
                st.successful_requests,
                st.failed_requests
            ),
            (5, 4, 1)
        );
        assert_eq!(st.total_response_time_ms, 500);
        assert_eq!(s.log_request("k", log("success", 2_000)).await.unwrap(), 6);
    }

    #[tokio::test]
    async fn stored_keys_survive_any_number_of_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.journal");
        let hash = kikaku_filters::keys::hash_key("kikaku_stored");
        let key = ApiKey {
            hash,
            key_ref: kikaku_filters::keys::key_ref(kikaku_filters::KeyType::Image, &hash),
            key_type: kikaku_filters::KeyType::Image,
            owner: "o".into(),
            email: String::new(),
            status: kikaku_filters::KeyStatus::Active,
            created_at: 1,
            expires_at: None,
            quota: 5,
            rate_limit_per_minute: Some(3),
            bucket: None,
            s3: None,
        };
        EmbeddedState::open(&path)
            .unwrap()
            .key_put(&key)
            .await
            .unwrap();
        // Every open compacts: the key must be rewritten each time.
        for _ in 0..3 {
            let s = EmbeddedState::open(&path).unwrap();
            assert_eq!(s.key_get(&hash).await.unwrap().as_ref(), Some(&key));
        }
        let s = EmbeddedState::open(&path).unwrap();
        assert!(s.key_delete(&hash).await.unwrap());
        assert!(!s.key_delete(&hash).await.unwrap());
        drop(s);
        assert!(EmbeddedState::open(&path)
            .unwrap()
            .key_get(&hash)
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn logs_are_capped_per_key_but_stats_keep_counting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.journal");
        {
            let s = EmbeddedState::open_with(&path, 3).unwrap();
            for i in 0..5 {
                s.log_request("k", log("success", 1_000 + i)).await.unwrap();
            }
        }
        let s = EmbeddedState::open_with(&path, 3).unwrap();
        let q = LogQuery {
            from_ms: 0,
            to_ms: i64::MAX,
            page: 1,
            limit: 10,
        };
        let p = s.logs("k", q).await.unwrap();
        assert_eq!(p.logs.iter().map(|l| l.id).collect::<Vec<_>>(), [5, 4, 3]);
        assert_eq!(s.request_stats("k").await.unwrap().total_requests, 5);
        assert_eq!(
            s.log_request("k", log("success", 2_000)).await.unwrap(),
            6,
            "ids keep counting"
        );
        drop(s);
        // Opens compact: the dropped logs must not take their counts along.
        for _ in 0..2 {
            let s = EmbeddedState::open_with(&path, 3).unwrap();
            let st = s.request_stats("k").await.unwrap();
            assert_eq!((st.total_requests, st.total_response_time_ms), (6, 600));
        }
    }

    #[tokio::test]
    async fn torn_tail_is_dropped_and_expired_hits_are_compacted_away() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.journal");
        std::fs::write(
            &path,
            "{\"op\":\"hit\",\"b\":\"old\",\"t\":1,\"w\":1000}\n{\"op\":\"hit\",\"b\":\"x\",\"t\"",
        )
        .unwrap();
        let _s = EmbeddedState::open(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }

    #[tokio::test]
    async fn corruption_in_the_middle_is_an_error_not_a_silent_reset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.journal");
        std::fs::write(
            &path,
            "garbage\n{\"op\":\"hit\",\"b\":\"x\",\"t\":1,\"w\":1}\n",
        )
        .unwrap();
        assert!(matches!(
            EmbeddedState::open(&path),
            Err(StateError::Corrupt(_))
        ));
    }
}
