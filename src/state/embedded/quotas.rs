//! Quotas: `used` (journaled) plus holds in memory (a restart drops them:
//! a request in flight when the process dies was never delivered).

use async_trait::async_trait;
use kikaku_filters::state::PendingRateLimit;

use super::memory::{Inner, Record};
use super::EmbeddedState;
use crate::state::{QuotaUsage, Quotas, RateDecision, RateLimits, Reservation, StateError};

impl Inner {
    /// Hold `amount` of `subject`'s quota when `used + reserved + amount`
    /// stays within `limit` (holds live in memory only: a restart drops them).
    pub(super) fn reserve(
        &mut self,
        subject: &str,
        amount: u64,
        limit: u64,
    ) -> Option<Reservation> {
        self.next_reservation += 1;
        let id = self.next_reservation;
        let q = self.quotas.entry(subject.to_string()).or_default();
        if q.used + q.reserved() + amount > limit {
            return None;
        }
        q.held.insert(id, amount);
        Some(Reservation { id, amount })
    }

    pub(super) fn has_room(&self, subject: &str, amount: u64, limit: u64) -> bool {
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
