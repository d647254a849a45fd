//! The embedded backend: exact state in memory, every change journaled to
//! local disk before it is acknowledged, replayed at start.

use kikaku_filters::clock::now_ms;
use std::path::Path;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::journal::Journal;

mod files;
mod gallery;
mod hosted;
mod keys;
mod ledger;
mod logs;
mod memory;
mod presigned;
mod quotas;
mod rate;
#[cfg(test)]
mod tests;

use memory::{Inner, Record};

use super::{Admission, ImageAdmission, RequestLog, Reservation, StateError, StateStore};

const DEFAULT_LOGS_PER_KEY: u64 = 10_000;

/// Compact the journal after this many appended records at the least...
const COMPACT_EVERY: u64 = 100_000;
/// ...and never before the journal holds this many times the live records,
/// so a busy key whose every hit is still live cannot make compaction quadratic.
const COMPACT_RATIO: u64 = 2;

pub struct EmbeddedState {
    inner: Mutex<Inner>,
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
