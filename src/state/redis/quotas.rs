//! Quotas on Redis: `used` plus reservations in flight that expire, settled
//! once (a `done:<id>` marker), refunded once (`refunded:<id>`).

use std::time::Duration;

use async_trait::async_trait;
use kikaku_filters::state::PendingRateLimit;
use rand::Rng;

use super::{key, RedisState};
use crate::state::{
    Admission, ImageAdmission, QuotaUsage, Quotas, RateDecision, Reservation, StateError,
};

/// What one admission script answers: the key's rate limit, the
/// reservation, and the ceiling (when it was reached).
type Admitted = (u32, u64, i64, u32, u32, u32, u64, i64);

/// The keys and arguments `admit_reserve` takes (and `admit_ceiling`
/// begins with): the key's rate limit and the reservation asked for.
struct Admit {
    rl: String,
    quota: String,
    held: String,
    window_ms: u64,
    rate_limit: u32,
    member: String,
    amount: u64,
    limit: u64,
    id: u64,
    ttl_ms: u64,
}

impl Admit {
    fn new(
        state: &RedisState,
        rate: &PendingRateLimit,
        subject: &str,
        amount: u64,
        limit: u64,
    ) -> Admit {
        let id = rand::thread_rng().gen::<u64>();
        Admit {
            rl: format!("kikaku:{}", rate.bucket),
            quota: key(subject, "quota"),
            held: key(subject, "held"),
            window_ms: rate.window.as_millis() as u64,
            rate_limit: rate.limit,
            member: format!("{id:016x}"),
            amount,
            limit,
            id,
            ttl_ms: state.cfg.reservation_ttl_seconds * 1000,
        }
    }

    fn add_to(&self, inv: &mut redis::ScriptInvocation<'_>) {
        inv.key(&self.rl).key(&self.quota).key(&self.held);
        inv.arg(self.window_ms)
            .arg(self.rate_limit)
            .arg(&self.member)
            .arg(self.amount)
            .arg(self.limit)
            .arg(self.id)
            .arg(self.ttl_ms);
    }
}

/// A sliding window's answer as a decision.
pub(super) fn decision(allowed: u32, limit: u32, held: u64, reset_ms: i64) -> RateDecision {
    RateDecision {
        allowed: allowed == 1,
        limit,
        remaining: u64::from(limit).saturating_sub(held) as u32,
        reset_after: Duration::from_millis(reset_ms.max(0) as u64),
    }
}

impl RedisState {
    /// Rate limit, reservation and the model's ceiling in one script: one
    /// round trip per image admission on one Redis. (On a Cluster the
    /// ceiling's key lives in another slot; the calls go in turn there.)
    pub(super) async fn admit_in_one_call(
        &self,
        rate: &PendingRateLimit,
        asked: &ImageAdmission<'_>,
    ) -> Result<Admission, StateError> {
        let (amount, ceiling, cost) = (asked.amount, asked.ceiling, asked.cost);
        let admit = Admit::new(self, rate, asked.subject, amount, asked.limit);
        let asked = Reservation {
            id: admit.id,
            amount,
        };
        let cl = format!("kikaku:{}", ceiling.bucket);
        let (c_window_ms, c_limit) = (ceiling.window.as_millis() as u64, ceiling.limit);
        let (allowed, held, reset, reserved, checked, c_allowed, c_held, c_reset): Admitted = self
            .run(move |c, s| async move {
                let mut inv = s.admit_ceiling.prepare_invoke();
                admit.add_to(&mut inv);
                inv.key(cl).arg(c_window_ms).arg(c_limit).arg(cost);
                c.invoke(inv).await
            })
            .await?;
        Ok(Admission {
            rate: Some(decision(allowed, rate.limit, held, reset)),
            ceiling: (checked == 1).then(|| decision(c_allowed, ceiling.limit, c_held, c_reset)),
            reservation: (reserved == 1).then_some(asked),
        })
    }
}

#[async_trait]
impl Quotas for RedisState {
    async fn quota_reserve(
        &self,
        subject: &str,
        amount: u64,
        limit: u64,
    ) -> Result<Option<Reservation>, StateError> {
        let id: u64 = rand::thread_rng().gen();
        let (q, h) = (key(subject, "quota"), key(subject, "held"));
        let ttl = self.cfg.reservation_ttl_seconds * 1000;
        let ok: i64 = self
            .run(move |c, s| async move {
                let mut inv = s.reserve.prepare_invoke();
                inv.key(q).key(h).arg(amount).arg(limit).arg(id).arg(ttl);
                c.invoke(inv).await
            })
            .await?;
        Ok((ok == 1).then_some(Reservation { id, amount }))
    }

    async fn quota_settle(
        &self,
        subject: &str,
        reservation: Reservation,
        used: u64,
    ) -> Result<(), StateError> {
        let settle = self.settlement(subject, reservation, used);
        self.run(move |c, s| async move {
            let mut inv = s.settle.prepare_invoke();
            settle.add_to(&mut inv);
            c.invoke::<i64>(inv).await
        })
        .await
        .map(|_| ())
    }

    async fn quota_refund(
        &self,
        subject: &str,
        reservation: Reservation,
        amount: u64,
    ) -> Result<(), StateError> {
        let (q, mark) = (
            key(subject, "quota"),
            key(subject, &format!("refunded:{}", reservation.id)),
        );
        let ttl = self.cfg.reservation_ttl_seconds * 1000;
        self.run(move |c, s| async move {
            let mut inv = s.refund.prepare_invoke();
            inv.key(q).key(mark).arg(amount).arg(ttl);
            c.invoke::<i64>(inv).await
        })
        .await
        .map(|_| ())
    }

    async fn admit_and_reserve(
        &self,
        rate: &PendingRateLimit,
        subject: &str,
        amount: u64,
        limit: u64,
    ) -> Result<(RateDecision, Option<Reservation>), StateError> {
        let admit = Admit::new(self, rate, subject, amount, limit);
        let asked = Reservation {
            id: admit.id,
            amount,
        };
        let (allowed, held, reset, reserved): (u32, u64, i64, u32) = self
            .run(move |c, s| async move {
                let mut inv = s.admit_reserve.prepare_invoke();
                admit.add_to(&mut inv);
                c.invoke(inv).await
            })
            .await?;
        Ok((
            decision(allowed, rate.limit, held, reset),
            (reserved == 1).then_some(asked),
        ))
    }

    async fn quota_usage(&self, subject: &str) -> Result<QuotaUsage, StateError> {
        let (q, h) = (key(subject, "quota"), key(subject, "held"));
        let (used, reserved): (u64, u64) = self
            .run(move |c, s| async move {
                let mut inv = s.usage.prepare_invoke();
                inv.key(q).key(h);
                c.invoke(inv).await
            })
            .await?;
        Ok(QuotaUsage { used, reserved })
    }
}

/// The keys and arguments of the `SETTLE` script for one reservation.
pub(super) struct Settlement {
    keys: [String; 3],
    id: u64,
    used: u64,
    ttl_ms: u64,
}

impl Settlement {
    pub(super) fn add_to(self, inv: &mut redis::ScriptInvocation<'_>) {
        for k in self.keys {
            inv.key(k);
        }
        inv.arg(self.id).arg(self.used).arg(self.ttl_ms);
    }
}

impl RedisState {
    pub(super) fn settlement(&self, subject: &str, r: Reservation, used: u64) -> Settlement {
        Settlement {
            keys: [
                key(subject, "quota"),
                key(subject, "held"),
                key(subject, &format!("done:{}", r.id)),
            ],
            id: r.id,
            used,
            ttl_ms: self.cfg.reservation_ttl_seconds * 1000,
        }
    }
}
