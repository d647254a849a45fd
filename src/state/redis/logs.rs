//! Request logs on Redis: a capped list per key (newest first) and counters.

use std::collections::HashMap;

use async_trait::async_trait;

use super::{call_id, key, RedisState};
use crate::state::{LogPage, LogQuery, RequestLog, RequestLogs, RequestStats, StateError};

#[async_trait]
impl RequestLogs for RedisState {
    async fn log_request(&self, subject: &str, log: RequestLog) -> Result<u64, StateError> {
        let entry = LogEntry::new(subject, log, self.logs_per_key)?;
        let mark = key(subject, &format!("logged:{}", call_id()));
        self.run(move |c, s| async move {
            let mut inv = s.log.prepare_invoke();
            entry.add_to(&mut inv);
            inv.key(mark);
            c.invoke::<u64>(inv).await
        })
        .await
    }

    async fn logs(&self, subject: &str, q: LogQuery) -> Result<LogPage, StateError> {
        let l = key(subject, "logs");
        let raw: Vec<String> = self
            .run(move |c, _| async move {
                c.query(redis::cmd("LRANGE").arg(l).arg(0).arg(-1).clone())
                    .await
            })
            .await?;
        // LPUSH keeps the list newest first.
        let parsed: Vec<RequestLog> = raw
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect();
        Ok(q.apply(parsed.iter()))
    }

    async fn request_stats(&self, subject: &str) -> Result<RequestStats, StateError> {
        let st = key(subject, "stats");
        let m: HashMap<String, u64> = self
            .run(move |c, _| async move { c.query(redis::cmd("HGETALL").arg(st).clone()).await })
            .await?;
        let get = |k: &str| m.get(k).copied().unwrap_or(0);
        Ok(RequestStats {
            total_requests: get("total"),
            successful_requests: get("ok"),
            failed_requests: get("failed"),
            total_response_time_ms: get("ms"),
        })
    }
}

/// The keys and arguments of the `LOG` script for one request.
pub(super) struct LogEntry {
    keys: [String; 3],
    json: String,
    ok: u8,
    ms: u64,
    keep: u64,
}

impl LogEntry {
    pub(super) fn new(
        subject: &str,
        mut log: RequestLog,
        keep: u64,
    ) -> Result<LogEntry, StateError> {
        log.id = 0;
        let json = serde_json::to_string(&log).map_err(|e| StateError::Corrupt(e.to_string()))?;
        // The script splices the real id over this prefix.
        debug_assert!(json.starts_with("{\"id\":0,"));
        Ok(LogEntry {
            keys: [
                key(subject, "logs"),
                key(subject, "logseq"),
                key(subject, "stats"),
            ],
            json,
            ok: u8::from(log.status == "success"),
            ms: log.response_time_ms,
            keep,
        })
    }

    /// Append to an invocation: keys after any already there, and the
    /// four arguments after any already there.
    pub(super) fn add_to(self, inv: &mut redis::ScriptInvocation<'_>) {
        for k in self.keys {
            inv.key(k);
        }
        inv.arg(self.json).arg(self.ok).arg(self.ms).arg(self.keep);
    }
}
