//! The embedded backend: exact state in memory, every change journaled to
//! local disk before it is acknowledged, replayed at start.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use kikaku_filters::state::SlidingLog;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::journal::Journal;
use super::{RateDecision, StateError, StateStore};

/// Compact the journal after this many appended records at the least...
const COMPACT_EVERY: u64 = 100_000;
/// ...and never before the journal holds this many times the live records,
/// so a busy key whose every hit is still live cannot make compaction quadratic.
const COMPACT_RATIO: u64 = 2;

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Record {
    /// One admitted request: bucket, time (unix ms), window (ms).
    Hit { b: String, t: u64, w: u64 },
}

struct Bucket {
    log: SlidingLog,
    window_ms: u64,
}

struct Inner {
    buckets: HashMap<String, Bucket>,
    journal: Journal,
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
        let (journal, records) = Journal::open::<Record>(path)?;
        let mut buckets: HashMap<String, Bucket> = HashMap::new();
        for Record::Hit { b, t, w } in records {
            let bucket = buckets.entry(b).or_insert_with(|| Bucket {
                log: SlidingLog::default(),
                window_ms: w,
            });
            bucket.window_ms = w;
            bucket.log.record(t);
        }
        let mut inner = Inner {
            buckets,
            journal,
            compact_at: COMPACT_EVERY,
        };
        inner.compact(now_ms())?;
        Ok(EmbeddedState {
            inner: Mutex::new(inner),
        })
    }
}

impl Inner {
    /// Drop idle buckets and rewrite the journal with the live hits only.
    fn compact(&mut self, now: u64) -> Result<(), StateError> {
        self.buckets.retain(|_, b| !b.log.is_idle(now, b.window_ms));
        let floor = |b: &Bucket| now.saturating_sub(b.window_ms);
        let live: Vec<Record> = self
            .buckets
            .iter()
            .flat_map(|(name, b)| {
                let f = floor(b);
                b.log
                    .hits()
                    .filter(move |&t| t > f)
                    .map(move |t| Record::Hit {
                        b: name.clone(),
                        t,
                        w: b.window_ms,
                    })
            })
            .collect();
        self.compact_at = COMPACT_EVERY.max(live.len() as u64 * COMPACT_RATIO);
        self.journal.rewrite(&live)
    }
}

#[async_trait]
impl StateStore for EmbeddedState {
    async fn rate_limit(
        &self,
        bucket: &str,
        limit: u32,
        window: Duration,
    ) -> Result<RateDecision, StateError> {
        let now = now_ms();
        let window_ms = window.as_millis() as u64;
        let mut inner = self.inner.lock();
        let b = match inner.buckets.get_mut(bucket) {
            Some(b) => b,
            None => inner.buckets.entry(bucket.to_string()).or_insert(Bucket {
                log: SlidingLog::default(),
                window_ms,
            }),
        };
        b.window_ms = window_ms;
        let decision = b.log.admit(now, limit, window_ms);
        if decision.allowed {
            let rec = Record::Hit {
                b: bucket.to_string(),
                t: now,
                w: window_ms,
            };
            if let Err(e) = inner.journal.append(&rec) {
                // Not durable means not admitted: undo by refusing.
                log::error!("state journal append failed: {e}");
                return Err(e);
            }
            if inner.journal.appended >= inner.compact_at {
                inner.compact(now)?;
            }
        }
        Ok(decision)
    }

    async fn ready(&self) -> bool {
        true
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
                assert!(s.rate_limit("rl:key:{a}", 3, w).await.unwrap().allowed);
            }
            // Dropped without any shutdown step, as after kill -9.
        }
        let s = EmbeddedState::open(&path).unwrap();
        assert!(!s.rate_limit("rl:key:{a}", 3, w).await.unwrap().allowed);
        assert!(s.rate_limit("rl:key:{b}", 3, w).await.unwrap().allowed);
    }

    #[tokio::test]
    async fn compaction_keeps_live_hits_and_scales_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.journal");
        let w = Duration::from_secs(60);
        let s = EmbeddedState::open(&path).unwrap();
        let n = COMPACT_EVERY + 10;
        for _ in 0..n {
            assert!(s.rate_limit("busy", u32::MAX, w).await.unwrap().allowed);
        }
        {
            let inner = s.inner.lock();
            // One compaction ran (at COMPACT_EVERY) and rewrote every live hit.
            assert_eq!(inner.journal.appended, 10);
            assert_eq!(inner.compact_at, 2 * COMPACT_EVERY);
        }
        drop(s);
        let lines = std::fs::read_to_string(&path).unwrap().lines().count() as u64;
        assert_eq!(lines, n);
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
