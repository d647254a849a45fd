//! Request logs (capped per key) and their counters.

use async_trait::async_trait;

use super::EmbeddedState;
use crate::state::{LogPage, LogQuery, RequestLog, RequestLogs, RequestStats, StateError};

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
