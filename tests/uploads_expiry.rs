//! Expiry across instances and restarts (DESIGN §6): two gateways on one
//! Redis and one S3 backend sweep every 100 ms, and each expired file is
//! deleted and refunded exactly once (their counters add up to the number
//! of files, the quota lands on the bytes that do not expire); a file
//! recorded before a kill -9 still expires after the restart.

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::uploads::{self as up, file, KEY};
use common::*;

const BACKEND: [(&str, &str); 2] = [
    ("KIKAKU_S3_BACKEND_ACCESS_KEY_ID", "KKEXPIRYBACKEND00001"),
    (
        "KIKAKU_S3_BACKEND_SECRET_ACCESS_KEY",
        "expiry-test-backend-secret-0123456789",
    ),
];

fn env(extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut e: Vec<(&'static str, String)> = vec![
        ("KIKAKU_UPLOAD_TTL", "1s".into()),
        ("KIKAKU_UPLOAD_SWEEP_INTERVAL", "100ms".into()),
    ];
    e.extend(BACKEND.iter().map(|(k, v)| (*k, v.to_string())));
    e.extend(extra.iter().cloned());
    e
}

async fn until_used(gw: &Gateway, want: u64) {
    let start = Instant::now();
    loop {
        let used = up::used(gw, KEY).await;
        if used == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "used {used}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_on_redis_expire_each_file_exactly_once() {
    let redis = RedisServer::start();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let redis_env = ("KIKAKU_REDIS_URL", redis.url());
    let (a, _, s3) = start_shipped_with(
        "conf/redis.example.yaml",
        da.path(),
        &env(std::slice::from_ref(&redis_env)),
    );
    // B uses A's S3 backend (its own embedded server finds the port taken).
    let (b, _, _) = start_shipped_with(
        "conf/redis.example.yaml",
        db.path(),
        &env(&[
            redis_env,
            ("KIKAKU_S3_EMBEDDED_ADDR", format!("127.0.0.1:{s3}")),
        ]),
    );
    // 1,000 bytes that do not expire (the storage API), then 20 uploads.
    up::keep(&a, KEY, 1000).await;
    let mut urls = Vec::new();
    for i in 0..20 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let data = vec![b'0' + (i % 10) as u8; 100 + i];
        let (st, v) = up::stream(gw, KEY, &[file(&format!("f{i}.txt"), "text/plain", &data)]).await;
        assert_eq!(st, 200, "{v}");
        urls.push(v["data"]["downloadUrl"].as_str().unwrap().to_string());
    }
    until_used(&b, 1000).await;
    // Well past several more sweeps of both: nothing is given back twice.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(up::used(&a, KEY).await, 1000);
    let (na, nb) = (
        a.metric("kikaku_uploads_expired_total"),
        b.metric("kikaku_uploads_expired_total"),
    );
    eprintln!("expired by A: {na}, by B: {nb}");
    assert_eq!(na + nb, 20.0, "each file once");
    let bytes = a.metric("kikaku_uploads_expired_bytes_total")
        + b.metric("kikaku_uploads_expired_bytes_total");
    assert_eq!(bytes, (0..20).map(|i| 100 + i).sum::<usize>() as f64);
    for url in &urls {
        assert_eq!(up::fetch(url, &[]).await.0, 404, "{url}");
    }
    let listed = get_json(&a.url("/s3/files"), KEY).await;
    assert_eq!(listed["files"].as_array().unwrap().len(), 1, "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_recorded_before_a_kill_still_expires_after_the_restart() {
    let data = tempfile::tempdir().unwrap();
    let slow = env(&[
        ("KIKAKU_UPLOAD_TTL", "2s".into()),
        ("KIKAKU_UPLOAD_SWEEP_INTERVAL", "1h".into()),
    ]);
    let (gw, _, _) = start_shipped_with("conf/kikaku.yaml", data.path(), &slow);
    let (st, v) = up::stream(&gw, KEY, &[file("later.txt", "text/plain", &[b'l'; 700])]).await;
    assert_eq!(st, 200, "{v}");
    let url = v["data"]["fileUrl"].as_str().unwrap().to_string();
    let path = url.splitn(4, '/').nth(3).unwrap().to_string();
    assert_eq!(up::used(&gw, KEY).await, 700);
    let _ = std::process::Command::new("kill")
        .args(["-9", &gw.pid().to_string()])
        .status();
    drop(gw);
    let (gw, _, _) = start_shipped_with("conf/kikaku.yaml", data.path(), &env(&[]));
    assert_eq!(up::used(&gw, KEY).await, 700, "the charge survives");
    until_used(&gw, 0).await;
    assert_eq!(up::fetch(&gw.url(&format!("/{path}")), &[]).await.0, 404);
    assert_eq!(gw.metric("kikaku_uploads_expired_total"), 1.0);
}
