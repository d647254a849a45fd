//! What one access-log line costs the request that writes it: building the
//! record, serializing it into the thread's buffer and appending it to the
//! shared one (the writer thread's file writes are not on this path). The
//! line is the image route's, with every field filled in.
//!
//! Run: `cargo bench --bench access_log`

use std::net::IpAddr;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion};
use kikaku_edge::proxy::access_log::{AccessLog, AccessRecord, Timestamp};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let log = AccessLog::open(path.to_str().unwrap()).unwrap();
    let ip: IpAddr = "203.0.113.7".parse().unwrap();
    c.bench_function("access_log_line", |b| {
        b.iter(|| {
            log.write(&AccessRecord {
                ts: Timestamp(SystemTime::now()),
                request_id: Some("0f3c2a9e-7d41-4c55-9a61-1b2c3d4e5f60"),
                client_ip: Some(ip),
                method: "POST",
                path: "/v1/images/generations",
                route: Some("images"),
                upstream: None,
                status: 200,
                key: Some("kikaku_~1a2b3c4d"),
                total_ms: 12.345,
                upstream_ms: None,
                rejected_by: None,
                error: None,
            })
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
