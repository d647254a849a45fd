//! What the embedded backend holds in memory, the journal records that
//! change it (`apply` at replay and after each append), and compaction.

use std::collections::{HashMap, VecDeque};

use kikaku_filters::keys::parse_hex32;
use kikaku_filters::state::SlidingLog;
use kikaku_filters::ApiKey;
use serde::{Deserialize, Serialize};

use super::{COMPACT_EVERY, COMPACT_RATIO};
use crate::state::journal::Journal;
use crate::state::{
    GalleryRecord, HostedContent, HostedRef, LedgerSlot, OpenUpload, PresignedRecord, RequestLog,
    RequestStats, Reservation, StateError, UploadRecord,
};
use kikaku_filters::clock::now_ms;

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Record {
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
    /// A presigned URL handed out (dropped by compaction once expired).
    Presigned { p: PresignedRecord },
    /// A temporary file recorded (it takes over its path).
    FilePut { f: UploadRecord },
    /// A temporary file forgotten.
    FileDel { id: String },
    /// A file-host content recorded; unreferenced since `t` until held.
    HostPut { c: HostedContent, t: i64 },
    /// A holder holds a content.
    HostHold { r: HostedRef },
    /// A holder let go of content `h`; unreferenced since `t` if it was the last.
    HostDrop { h: String, who: String, t: i64 },
    /// A content nobody holds, forgotten.
    HostForget { h: String },
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
pub(super) struct StoredStats {
    pub(super) total: u64,
    pub(super) ok: u64,
    pub(super) failed: u64,
    pub(super) ms: u64,
}

pub(super) fn one() -> u32 {
    1
}
pub(super) fn is_one(n: &u32) -> bool {
    *n == 1
}

pub(super) struct Bucket {
    pub(super) log: SlidingLog,
    pub(super) window_ms: u64,
}

#[derive(Default)]
pub(super) struct Quota {
    pub(super) used: u64,
    /// Reservation id → amount, for requests in flight.
    pub(super) held: HashMap<u64, u64>,
    /// Storage keys: object → bytes.
    pub(super) objects: HashMap<String, u64>,
    /// Storage keys: upload id → part number → bytes.
    pub(super) parts: HashMap<String, HashMap<u32, u64>>,
    /// Storage keys: multipart uploads in progress.
    pub(super) uploads: Vec<OpenUpload>,
}

impl Quota {
    pub(super) fn reserved(&self) -> u64 {
        self.held.values().sum()
    }

    /// Move usage by `new - old`, never below zero.
    pub(super) fn shift(&mut self, old: u64, new: u64) {
        self.used = (self.used + new).saturating_sub(old);
    }

    pub(super) fn slot_size(&self, slot: &LedgerSlot) -> u64 {
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

    pub(super) fn ledger_total(&self) -> u64 {
        self.objects.values().sum::<u64>()
            + self.parts.values().flat_map(|p| p.values()).sum::<u64>()
    }
}

/// Files by id, their paths, and leases.
#[derive(Default)]
pub(super) struct Files {
    pub(super) by_id: HashMap<String, UploadRecord>,
    /// `tenant/uploadPath/fileName` → file id.
    pub(super) by_path: HashMap<String, String>,
    pub(super) leases: HashMap<String, (String, std::time::Instant)>,
}

impl Files {
    /// A file recorded: it takes over its path.
    pub(super) fn put(&mut self, r: UploadRecord) {
        if let Some(old) = self.by_path.insert(r.path_key(), r.file_id.clone()) {
            if old != r.file_id {
                self.by_id.remove(&old);
            }
        }
        self.by_id.insert(r.file_id.clone(), r);
    }

    pub(super) fn remove(&mut self, file_id: &str) {
        if let Some(r) = self.by_id.remove(file_id) {
            let key = r.path_key();
            if self.by_path.get(&key).is_some_and(|id| id == file_id) {
                self.by_path.remove(&key);
            }
        }
    }
}

/// The file host's contents, their holders, and those nobody holds.
#[derive(Default)]
pub(super) struct Hosted {
    pub(super) contents: HashMap<String, HostedContent>,
    /// hash → holder → hold.
    pub(super) holds: HashMap<String, HashMap<String, HostedRef>>,
    /// holder → hashes held.
    pub(super) by_holder: HashMap<String, std::collections::HashSet<String>>,
    /// hash → since when nobody holds it (unix ms).
    pub(super) unreferenced: HashMap<String, i64>,
}

impl Hosted {
    fn apply(&mut self, r: Record) {
        match r {
            Record::HostPut { c, t } if !self.contents.contains_key(&c.hash) => {
                if !self.holds.contains_key(&c.hash) {
                    self.unreferenced.insert(c.hash.clone(), t);
                }
                self.contents.insert(c.hash.clone(), c);
            }
            Record::HostHold { r } => {
                self.unreferenced.remove(&r.hash);
                self.by_holder
                    .entry(r.holder.clone())
                    .or_default()
                    .insert(r.hash.clone());
                let holds = self.holds.entry(r.hash.clone()).or_default();
                holds.entry(r.holder.clone()).or_insert(r);
            }
            Record::HostDrop { h, who, t } => {
                if let Some(set) = self.by_holder.get_mut(&who) {
                    set.remove(&h);
                    if set.is_empty() {
                        self.by_holder.remove(&who);
                    }
                }
                if let Some(holds) = self.holds.get_mut(&h) {
                    holds.remove(&who);
                    if holds.is_empty() {
                        self.holds.remove(&h);
                        if self.contents.contains_key(&h) {
                            self.unreferenced.insert(h, t);
                        }
                    }
                }
            }
            Record::HostForget { h } if !self.holds.contains_key(&h) => {
                self.contents.remove(&h);
                self.unreferenced.remove(&h);
            }
            _ => {}
        }
    }

    /// The records that rebuild it (compaction).
    fn records(&self) -> Vec<Record> {
        let mut out: Vec<Record> = self
            .contents
            .values()
            .map(|c| Record::HostPut {
                c: c.clone(),
                t: self
                    .unreferenced
                    .get(&c.hash)
                    .copied()
                    .unwrap_or(c.created_ms),
            })
            .collect();
        out.extend(
            self.holds
                .values()
                .flat_map(|h| h.values())
                .map(|r| Record::HostHold { r: r.clone() }),
        );
        out
    }
}

#[derive(Default)]
pub(super) struct Inner {
    pub(super) buckets: HashMap<String, Bucket>,
    pub(super) quotas: HashMap<String, Quota>,
    /// Oldest first, at most `logs_per_key` each.
    pub(super) logs: HashMap<String, VecDeque<RequestLog>>,
    pub(super) logs_per_key: usize,
    pub(super) stats: HashMap<String, RequestStats>,
    /// Oldest first.
    pub(super) galleries: HashMap<String, VecDeque<GalleryRecord>>,
    /// Next gallery id per subject.
    pub(super) gallery_seq: HashMap<String, u64>,
    pub(super) keys: HashMap<[u8; 32], ApiKey>,
    /// Presigned URLs handed out, oldest first (expired ones pruned).
    pub(super) presigned: Vec<PresignedRecord>,
    /// Temporary files of the upload API, and leases.
    pub(super) files: Files,
    /// The file host's contents and holds.
    pub(super) hosted: Hosted,
    pub(super) next_reservation: u64,
    pub(super) journal: Option<Journal>,
    /// Appended records that trigger the next compaction.
    pub(super) compact_at: u64,
}

impl Inner {
    /// Apply one record to memory (at replay and after each append).
    pub(super) fn apply(&mut self, r: Record) {
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
            Record::Presigned { p } => self.presigned.push(p),
            Record::FilePut { f } => self.files.put(f),
            Record::FileDel { id } => self.files.remove(&id),
            r @ (Record::HostPut { .. }
            | Record::HostHold { .. }
            | Record::HostDrop { .. }
            | Record::HostForget { .. }) => self.hosted.apply(r),
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

    pub(super) fn journal(&mut self) -> Result<&mut Journal, StateError> {
        self.journal
            .as_mut()
            .ok_or_else(|| StateError::Unavailable("journal not open".into()))
    }

    /// Journal a record, then apply it. Not durable means not done.
    pub(super) fn commit(&mut self, rec: Record) -> Result<(), StateError> {
        self.journal()?.append_all(std::slice::from_ref(&rec))?;
        self.apply(rec);
        self.compact_if_due()
    }

    /// Journal records with one write, then apply them: all or none.
    pub(super) fn commit_all(&mut self, recs: Vec<Record>) -> Result<(), StateError> {
        self.journal()?.append_all(&recs)?;
        for rec in recs {
            self.apply(rec);
        }
        self.compact_if_due()
    }

    /// Start a compaction in the background once enough was appended.
    pub(super) fn compact_if_due(&mut self) -> Result<(), StateError> {
        let due = self.compact_at;
        let j = self.journal()?;
        if j.appended >= due && !j.compacting() {
            let live = self.live_records(now_ms());
            self.journal()?.compact_in_background(live);
        }
        Ok(())
    }

    /// The `Used` record of a settle (none when nothing is billed), and
    /// what it bills: at most what was reserved, and only once.
    pub(super) fn settle_record(&self, subject: &str, r: Reservation, used: u64) -> Option<Record> {
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
    pub(super) fn release(&mut self, subject: &str, r: Reservation) {
        if let Some(q) = self.quotas.get_mut(subject) {
            q.held.remove(&r.id);
        }
    }

    /// The `Log` record of a request, with the next id of its subject.
    pub(super) fn log_record(&self, subject: &str, mut log: RequestLog) -> (Record, u64) {
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
    /// Rewrite the journal as the live records, now (at open).
    pub(super) fn compact(&mut self, now: u64) -> Result<(), StateError> {
        let live = self.live_records(now);
        self.journal()?.rewrite(&live)
    }

    /// The records that rebuild today's state (expired hits and presigned
    /// URLs dropped); sets when the next compaction is due.
    fn live_records(&mut self, now: u64) -> Vec<Record> {
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
        let now_s = (now / 1000) as i64;
        self.presigned.retain(|p| p.expires_at > now_s);
        live.extend(
            self.presigned
                .iter()
                .map(|p| Record::Presigned { p: p.clone() }),
        );
        live.extend(
            self.files
                .by_id
                .values()
                .map(|f| Record::FilePut { f: f.clone() }),
        );
        live.extend(self.hosted.records());
        self.compact_at = COMPACT_EVERY.max(live.len() as u64 * COMPACT_RATIO);
        live
    }
}
