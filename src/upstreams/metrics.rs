//! The pools' Prometheus series, per endpoint (`upstream`, `endpoint` as
//! written in the config) and per pool.

use once_cell::sync::Lazy;
use prometheus::{
    register_histogram_vec, register_int_counter_vec, register_int_gauge_vec, Histogram,
    HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
};

/// Latency buckets in seconds, 0.5 ms up to the 120 s image deadline:
/// the gateway's request and upstream histograms use them too.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register_int_counter_vec!(name, help, labels).expect("metric registers once")
}

static REQUESTS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "kikaku_upstream_endpoint_requests_total",
        "Tries sent to an endpoint (retries included)",
        &["upstream", "endpoint"],
    )
});
static ERRORS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "kikaku_upstream_endpoint_errors_total",
        "Failed tries, by kind (connect, timeout, broken, 5xx)",
        &["upstream", "endpoint", "kind"],
    )
});
static LATENCY: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec!(
        "kikaku_upstream_endpoint_latency_seconds",
        "Time from sending a try to its response header",
        &["upstream", "endpoint"],
        LATENCY_BUCKETS.to_vec()
    )
    .expect("metric registers once")
});
static IN_FLIGHT: Lazy<IntGaugeVec> = Lazy::new(|| {
    register_int_gauge_vec!(
        "kikaku_upstream_endpoint_in_flight",
        "Tries in flight on an endpoint (sampled each second)",
        &["upstream", "endpoint"]
    )
    .expect("metric registers once")
});
static EJECTIONS: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "kikaku_upstream_endpoint_ejections_total",
        "Passive ejections of an endpoint",
        &["upstream", "endpoint"],
    )
});
static AVAILABLE: Lazy<IntGaugeVec> = Lazy::new(|| {
    register_int_gauge_vec!(
        "kikaku_upstream_endpoint_available",
        "1 while an endpoint takes requests (active checks pass, not ejected)",
        &["upstream", "endpoint"]
    )
    .expect("metric registers once")
});
static ENDPOINT_RETRIES: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "kikaku_upstream_endpoint_retries_total",
        "Retries sent elsewhere after a try on this endpoint failed",
        &["upstream", "endpoint"],
    )
});
static RETRIES: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "kikaku_upstream_retries_total",
        "Retries sent, by what failed (connect, timeout, broken, 5xx)",
        &["upstream", "reason"],
    )
});
static RETRIES_REFUSED: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "kikaku_upstream_retries_refused_total",
        "Retries not sent, by why (budget, no_endpoint, body_sent)",
        &["upstream", "why"],
    )
});
static OVERFLOW: Lazy<IntCounterVec> = Lazy::new(|| {
    counter(
        "kikaku_upstream_overflow_total",
        "Requests answered 503 by the circuit breaker (limits)",
        &["upstream"],
    )
});

/// Handles on the endpoint's series, looked up once.
pub struct EndpointMetrics {
    pub requests: IntCounter,
    pub errors: [IntCounter; 4],
    pub latency: Histogram,
    pub in_flight: IntGauge,
    pub ejections: IntCounter,
    /// Retries of requests that failed here.
    pub retries: IntCounter,
    pub available: IntGauge,
}

pub fn for_endpoint(upstream: &str, endpoint: &str) -> EndpointMetrics {
    let l = [upstream, endpoint];
    let err = |kind: &str| ERRORS.with_label_values(&[upstream, endpoint, kind]);
    EndpointMetrics {
        requests: REQUESTS.with_label_values(&l),
        errors: [err("connect"), err("timeout"), err("broken"), err("5xx")],
        latency: LATENCY.with_label_values(&l),
        in_flight: IN_FLIGHT.with_label_values(&l),
        ejections: EJECTIONS.with_label_values(&l),
        retries: ENDPOINT_RETRIES.with_label_values(&l),
        available: AVAILABLE.with_label_values(&l),
    }
}

/// A pool's own counters.
pub struct PoolMetrics {
    pub retries: [IntCounter; 4],
    pub refused_budget: IntCounter,
    pub refused_no_endpoint: IntCounter,
    pub refused_body_sent: IntCounter,
    pub overflow: IntCounter,
}

pub fn for_pool(upstream: &str) -> PoolMetrics {
    let retry = |r: &str| RETRIES.with_label_values(&[upstream, r]);
    let refused = |w: &str| RETRIES_REFUSED.with_label_values(&[upstream, w]);
    PoolMetrics {
        retries: [
            retry("connect"),
            retry("timeout"),
            retry("broken"),
            retry("5xx"),
        ],
        refused_budget: refused("budget"),
        refused_no_endpoint: refused("no_endpoint"),
        refused_body_sent: refused("body_sent"),
        overflow: OVERFLOW.with_label_values(&[upstream]),
    }
}
