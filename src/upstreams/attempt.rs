//! One try on one endpoint: it holds its place in flight (least
//! connections, the circuit breaker, the in-flight gauge) until dropped,
//! and its outcome feeds the latency estimate and passive health.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use pingora::upstreams::peer::HttpPeer;

use super::endpoint::{now_ms, Failure};
use super::{Endpoint, Member, Upstream};
use crate::config::Balance;

pub struct Attempt {
    up: Arc<Upstream>,
    index: usize,
    sent: Instant,
    settled: bool,
}

impl Attempt {
    /// A try on `index`, whose places in flight (the pool's and the
    /// endpoint's) the caller has taken; they are given back on drop.
    pub(super) fn start(up: Arc<Upstream>, index: usize) -> Attempt {
        up.members[index].state.metrics.requests.inc();
        Attempt {
            up,
            index,
            sent: Instant::now(),
            settled: false,
        }
    }

    fn member(&self) -> &Member {
        &self.up.members[self.index]
    }

    /// The endpoint's place in its pool (for the list of tried ones).
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.member().endpoint
    }

    /// How Pingora reaches the endpoint.
    pub fn peer(&self) -> HttpPeer {
        self.up.peer(self.endpoint())
    }

    /// The try is being sent now (the clock of its latency starts).
    pub fn sending(&mut self) {
        self.sent = Instant::now();
    }

    /// Its response header arrived with this status: the latency counts,
    /// and a 5xx is a failure when `outlier.on_5xx` says so.
    pub fn answered(&mut self, status: u16) {
        if self.settled {
            return;
        }
        self.settled = true;
        let now = now_ms();
        let state = &self.member().state;
        let latency = self.sent.elapsed();
        state.metrics.latency.observe(latency.as_secs_f64());
        if self.up.config.balance == Balance::PeakEwma {
            state.observe_latency(latency, now, self.up.config.ewma_decay_ms);
        }
        if status >= 500 && self.up.config.outlier.on_5xx {
            self.count_failure(Failure::Status, now);
        } else {
            state.succeeded();
        }
    }

    /// The try failed without an answer.
    pub fn failed(&mut self, why: Failure) {
        if self.settled {
            return;
        }
        self.settled = true;
        self.count_failure(why, now_ms());
    }

    fn count_failure(&self, why: Failure, now: u64) {
        let up = &self.up;
        let state = &self.member().state;
        let streak = state.failed(why);
        let o = &up.config.outlier;
        if !o.enabled || streak < o.consecutive_failures || state.ejected(now) {
            return;
        }
        let _deciding = up.shared.eject.lock();
        let ejected = up.members.iter().filter(|m| m.state.ejected(now)).count();
        let allowed = up.members.len() * o.max_ejected_percent as usize / 100;
        if ejected >= allowed || state.ejected(now) {
            return;
        }
        let away = state.eject(now, o.base_ejection_ms, o.max_ejection_ms);
        state.metrics.available.set(0);
        log::warn!(
            "upstream {}: endpoint {} ejected for {} ms after {streak} failures in a row (last: {})",
            up.name,
            state.label,
            away.as_millis(),
            why.label()
        );
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let m = &self.up.members[self.index];
        m.state.in_flight.fetch_sub(1, Relaxed);
        if self.up.config.limits.max_in_flight.is_some() {
            self.up.shared.in_flight.fetch_sub(1, Relaxed);
        }
    }
}
