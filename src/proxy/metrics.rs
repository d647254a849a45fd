//! Prometheus metrics, served on the admin listener's `/metrics`.

use once_cell::sync::Lazy;
use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge,
    HistogramVec, IntCounter, IntCounterVec, IntGauge,
};

/// Latency buckets: 0.5 ms up to the 120 s image deadline, as the
/// upstream endpoints' histograms have them.
use crate::upstreams::LATENCY_BUCKETS as BUCKETS;

pub static REQUESTS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "kikaku_requests_total",
        "Requests answered, by route and status",
        &["route", "status"]
    )
    .expect("metric registers once")
});

pub static REQUEST_DURATION: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec!(
        "kikaku_request_duration_seconds",
        "Total time from request to last response byte, by route",
        &["route"],
        BUCKETS.to_vec()
    )
    .expect("metric registers once")
});

pub static UPSTREAM_LATENCY: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec!(
        "kikaku_upstream_latency_seconds",
        "Time from sending the request upstream to its response header, by route and upstream",
        &["route", "upstream"],
        BUCKETS.to_vec()
    )
    .expect("metric registers once")
});

pub static REJECTIONS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "kikaku_rejections_total",
        "Requests refused by a filter or the router, by filter and reason",
        &["filter", "reason"]
    )
    .expect("metric registers once")
});

pub static RELOADS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "kikaku_config_reloads_total",
        "Config reload attempts, by result (ok, error)",
        &["result"]
    )
    .expect("metric registers once")
});

pub static CONFIG_GENERATION: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "kikaku_config_generation",
        "Generation of the serving config snapshot"
    )
    .expect("metric registers once")
});

pub static ACCESS_LOG_DROPPED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "kikaku_access_log_dropped_total",
        "Access-log lines dropped because the writer fell behind"
    )
    .expect("metric registers once")
});

pub static UPLOADS_EXPIRED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "kikaku_uploads_expired_total",
        "Uploaded files this instance deleted when they expired"
    )
    .expect("metric registers once")
});

pub static UPLOADS_EXPIRED_BYTES: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "kikaku_uploads_expired_bytes_total",
        "Bytes of expired uploads this instance gave back to quotas"
    )
    .expect("metric registers once")
});

pub static HOSTED_COLLECTED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "kikaku_file_host_collected_total",
        "Hosted contents this instance deleted when nobody held them any more"
    )
    .expect("metric registers once")
});

pub static HOSTED_COLLECTED_BYTES: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "kikaku_file_host_collected_bytes_total",
        "Bytes of hosted content this instance deleted from the backend"
    )
    .expect("metric registers once")
});

/// Touch every metric so `/metrics` lists them from the start.
pub fn init() {
    Lazy::force(&REQUESTS);
    Lazy::force(&REQUEST_DURATION);
    Lazy::force(&UPSTREAM_LATENCY);
    Lazy::force(&REJECTIONS);
    for result in ["ok", "error"] {
        RELOADS.with_label_values(&[result]);
    }
    Lazy::force(&CONFIG_GENERATION);
    Lazy::force(&ACCESS_LOG_DROPPED);
    Lazy::force(&UPLOADS_EXPIRED);
    Lazy::force(&UPLOADS_EXPIRED_BYTES);
    Lazy::force(&HOSTED_COLLECTED);
    Lazy::force(&HOSTED_COLLECTED_BYTES);
}

/// The text exposition of every registered metric.
pub fn render() -> Vec<u8> {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode(&prometheus::gather(), &mut buf) {
        log::error!("metrics encoding failed: {e}");
    }
    buf
}
