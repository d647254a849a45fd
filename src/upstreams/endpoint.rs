//! One endpoint's live state, shared by every thread and kept across
//! reloads while the endpoint stays in its pool: requests in flight, the
//! active checks' verdict, passive ejection, slow start, and the latency
//! estimate of `peak_ewma`. All of it is atomics, read on every pick.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use once_cell::sync::Lazy;

use super::metrics::{self, EndpointMetrics};

static EPOCH: Lazy<Instant> = Lazy::new(Instant::now);

/// Milliseconds on a monotonic clock, never 0 (0 means "unset" below).
pub fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64 + 1
}

/// Why a try failed, for passive health and the error metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be made (refused, unreachable, TLS).
    Connect,
    /// The endpoint did not answer in time.
    Timeout,
    /// The connection broke after the request was sent.
    Broken,
    /// It answered 5xx.
    Status,
}

impl Failure {
    pub fn label(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Broken => "broken",
            Failure::Status => "5xx",
        }
    }
}

pub struct EndpointState {
    pub addr: SocketAddr,
    /// The address as written in the config (`HOST:PORT`).
    pub label: String,
    pub in_flight: AtomicU32,
    /// The active health checks' verdict (true without checks).
    active_healthy: AtomicBool,
    consecutive_failures: AtomicU32,
    /// While now < this, the endpoint is ejected (0: never was).
    ejected_until: AtomicU64,
    /// Ejections in a row, for the growing ejection time.
    ejections_in_row: AtomicU32,
    /// When it last came back (slow start counts from here; 0: never left).
    back_since: AtomicU64,
    /// Peak-EWMA latency in nanoseconds (as f64 bits), and when it was set.
    ewma_ns: AtomicU64,
    ewma_at: AtomicU64,
    pub metrics: EndpointMetrics,
}

impl EndpointState {
    pub fn new(upstream: &str, label: &str, addr: SocketAddr) -> EndpointState {
        EndpointState {
            addr,
            label: label.to_string(),
            in_flight: AtomicU32::new(0),
            active_healthy: AtomicBool::new(true),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections_in_row: AtomicU32::new(0),
            back_since: AtomicU64::new(0),
            ewma_ns: AtomicU64::new(0f64.to_bits()),
            ewma_at: AtomicU64::new(0),
            metrics: metrics::for_endpoint(upstream, label),
        }
    }

    /// Whether requests may go here now: the active checks pass and it is
    /// not ejected.
    pub fn available(&self, now: u64) -> bool {
        self.active_healthy.load(Relaxed) && !self.ejected(now)
    }

    pub fn ejected(&self, now: u64) -> bool {
        now < self.ejected_until.load(Relaxed)
    }

    pub fn active_healthy(&self) -> bool {
        self.active_healthy.load(Relaxed)
    }

    /// The active checks' verdict; a return starts slow start.
    pub fn set_active_healthy(&self, healthy: bool, now: u64) {
        let was = self.active_healthy.swap(healthy, Relaxed);
        if healthy && !was {
            self.came_back(now);
        }
    }

    /// Slow start begins now (a return, or a reload adding the endpoint).
    pub fn came_back(&self, now: u64) {
        self.back_since.store(now, Relaxed);
    }

    /// The share of its weight it gets now: 1 unless it came back less than
    /// `slow_start_ms` ago, then from 0.1 up to 1 in proportion.
    pub fn slow_start_factor(&self, now: u64, slow_start_ms: u64) -> f64 {
        let since = self.back_since.load(Relaxed);
        if slow_start_ms == 0 || since == 0 || now >= since + slow_start_ms {
            return 1.0;
        }
        (now.saturating_sub(since) as f64 / slow_start_ms as f64).max(0.1)
    }

    /// A try answered: the failure streak ends.
    pub fn succeeded(&self) {
        if self.consecutive_failures.load(Relaxed) != 0 {
            self.consecutive_failures.store(0, Relaxed);
        }
    }

    /// A try failed: the streak's length after it.
    pub fn failed(&self, why: Failure) -> u32 {
        self.metrics.errors[why as usize].inc();
        self.consecutive_failures.fetch_add(1, Relaxed) + 1
    }

    /// Eject until `now + base × (ejections in a row)`, at most `max`; an
    /// endpoint that served `max` since its last return starts from 1 again.
    /// Returns how long.
    pub fn eject(&self, now: u64, base_ms: u64, max_ms: u64) -> Duration {
        let back = self.back_since.load(Relaxed);
        let in_row = if back != 0 && now >= back + max_ms {
            1
        } else {
            self.ejections_in_row.load(Relaxed) + 1
        };
        self.ejections_in_row.store(in_row, Relaxed);
        let ms = base_ms.saturating_mul(in_row as u64).min(max_ms);
        self.ejected_until.store(now + ms, Relaxed);
        self.back_since.store(now + ms, Relaxed);
        self.consecutive_failures.store(0, Relaxed);
        self.metrics.ejections.inc();
        Duration::from_millis(ms)
    }

    /// Fold one latency into the peak-EWMA estimate: a slower answer is
    /// taken at once, faster ones pull it down with time constant `tau_ms`.
    pub fn observe_latency(&self, latency: Duration, now: u64, tau_ms: u64) {
        let rtt = latency.as_nanos() as f64;
        let cost = self.ewma(now, tau_ms);
        let next = if rtt > cost {
            rtt
        } else {
            let w = (-((now - self.ewma_at.load(Relaxed).min(now)) as f64) / tau_ms as f64).exp();
            cost * w + rtt * (1.0 - w)
        };
        self.ewma_ns.store(next.to_bits(), Relaxed);
        self.ewma_at.store(now, Relaxed);
    }

    /// The estimate now: it decays while no answer comes, so an endpoint
    /// passed over for being slow is tried again in time.
    pub fn ewma(&self, now: u64, tau_ms: u64) -> f64 {
        let at = self.ewma_at.load(Relaxed);
        let cost = f64::from_bits(self.ewma_ns.load(Relaxed));
        if at == 0 || now <= at {
            return cost;
        }
        cost * (-((now - at) as f64) / tau_ms as f64).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> EndpointState {
        EndpointState::new("t", "127.0.0.1:1", "127.0.0.1:1".parse().unwrap())
    }

    #[test]
    fn ejections_grow_and_are_capped_and_forgotten() {
        let e = ep();
        assert_eq!(e.eject(1_000, 100, 350), Duration::from_millis(100));
        assert!(e.ejected(1_099) && !e.ejected(1_100));
        assert_eq!(e.eject(1_200, 100, 350), Duration::from_millis(200));
        assert_eq!(e.eject(1_500, 100, 350), Duration::from_millis(300));
        assert_eq!(e.eject(1_900, 100, 350), Duration::from_millis(350));
        // Served max_ms since it came back (at 2_250): from 1 again.
        assert_eq!(e.eject(2_700, 100, 350), Duration::from_millis(100));
    }

    #[test]
    fn slow_start_ramps_from_a_tenth() {
        let e = ep();
        assert_eq!(e.slow_start_factor(5, 1_000), 1.0);
        e.came_back(1_000);
        assert_eq!(e.slow_start_factor(1_000, 1_000), 0.1);
        assert!((e.slow_start_factor(1_500, 1_000) - 0.5).abs() < 1e-9);
        assert_eq!(e.slow_start_factor(2_000, 1_000), 1.0);
        assert_eq!(e.slow_start_factor(1_500, 0), 1.0);
    }

    #[test]
    fn peak_ewma_takes_peaks_at_once_and_decays() {
        let e = ep();
        e.observe_latency(Duration::from_millis(10), 1_000, 1_000);
        assert_eq!(e.ewma(1_000, 1_000), 10e6);
        e.observe_latency(Duration::from_millis(100), 1_001, 1_000);
        assert!(e.ewma(1_001, 1_000) >= 99e6);
        // A second later with no answers, it is e⁻¹ of that.
        let later = e.ewma(2_001, 1_000);
        assert!((later / 100e6 - (-1f64).exp()).abs() < 0.01, "{later}");
        // A fast answer pulls it down, not to its own value at once.
        e.observe_latency(Duration::from_millis(1), 1_101, 1_000);
        let now = e.ewma(1_101, 1_000);
        assert!(now < 100e6 && now > 1e6, "{now}");
    }

    #[test]
    fn active_health_return_starts_slow_start() {
        let e = ep();
        e.set_active_healthy(false, 10);
        assert!(!e.available(10));
        e.set_active_healthy(true, 20);
        assert!(e.available(20));
        assert_eq!(e.slow_start_factor(20, 100), 0.1);
    }
}
