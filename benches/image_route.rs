//! The image route's costs:
//! - `validate_14_refs`: validation + rewriting of a request carrying 14
//!   inline reference images (1024x1024 JPEGs), the pure function the
//!   handler runs before any upstream work;
//! - `route_throughput_*`: whole requests through the real binary (every
//!   filter, quota, ceiling, accounting) against the in-process simulator
//!   at zero latency, 32 at a time — once on the embedded state backend and
//!   once on Redis (a private `redis-server`), side by side in one run.
//!
//! Run: `cargo bench --bench image_route`

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod support;
use kikaku_edge::images::api::models::default_models;
use kikaku_edge::images::api::validate::validate;
use serde_json::json;
use support::{free_port, Running};

fn fourteen_refs_body() -> Vec<u8> {
    let jpeg = kikaku_edge::standins::ark_sim::jpeg::encode(1024, 1024);
    let url = format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&jpeg)
    );
    json!({
        "model": "seedream-4.5",
        "prompt": "Blend the fourteen references into one poster, 3:4",
        "image": vec![url; 14],
        "size": "2K",
        "sequential_image_generation": "disabled",
        "watermark": false,
    })
    .to_string()
    .into_bytes()
}

/// A private redis-server for the Redis run.
fn start_redis() -> (Child, u16) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed (scripts/prereqs.sh)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port)
}

fn start_gateway(state: &str) -> (Running, String) {
    let dir = tempfile::tempdir().unwrap();
    let (public, admin, sim) = (free_port(), free_port(), free_port());
    let chain =
        "[{request_id: {}}, {key_auth: {}}, {key_type: {require: image}}, {rate_limit: {}}]";
    // Continuation lines start at column 0: `\` strips leading spaces.
    let yaml = format!(
        "listeners:\n  public: {{address: '127.0.0.1:{public}'}}\n  admin: {{address: '127.0.0.1:{admin}'}}\n\
data_dir: '{data}'\nlogging: {{access_log: 'off'}}\n{state}\
simulators:\n  ark: {{listen: '127.0.0.1:{sim}'}}\n\
upstreams:\n  ark:\n    endpoints: [{{address: '127.0.0.1:{sim}'}}]\n\
routes:\n  - name: images\n    match: {{path_prefix: /v1/images/generations}}\n    filters: {chain}\n    handler: {{type: image_generation, upstream: ark, api_key: bench, model_images_per_minute: 4000000000}}\n\
keys:\n  - {{key: kikaku_bench_key, owner: bench, quota: 1000000000000, rate_limit_per_minute: 4000000000}}\n",
        data = dir.path().join("data").display()
    );
    (
        support::start_gateway(dir, &yaml, &[public, sim]),
        format!("http://127.0.0.1:{public}/v1/images/generations"),
    )
}

fn bench(c: &mut Criterion) {
    let models = default_models();
    let body = fourteen_refs_body();
    let mut g = c.benchmark_group("image_route");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("validate_14_refs", |b| {
        b.iter(|| validate(std::hint::black_box(&body), &models).unwrap())
    });
    g.finish();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut redis, redis_port) = start_redis();
    let backends = [
        ("embedded", "state: {backend: embedded}\n".to_string()),
        (
            "redis",
            format!(
                "state: {{backend: redis, redis: {{url: 'redis://127.0.0.1:{redis_port}'}}}}\n"
            ),
        ),
    ];
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let request = json!({"model": "seedream-4.0", "prompt": "a cat", "size": "1K"}).to_string();
    const CONCURRENT: u64 = 32;
    let mut g = c.benchmark_group("image_route");
    g.throughput(Throughput::Elements(CONCURRENT));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(10));
    for (name, state) in backends {
        let (_gw, url) = start_gateway(&state);
        g.bench_function(format!("route_throughput_32_concurrent_{name}"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (http, url, request) = (http.clone(), url.clone(), request.clone());
                async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let calls = (0..CONCURRENT).map(|_| {
                            http.post(&url)
                                .header("authorization", "Bearer kikaku_bench_key")
                                .body(request.clone())
                                .send()
                        });
                        for r in futures_util::future::join_all(calls).await {
                            let r = r.unwrap();
                            if r.status() != 200 {
                                let status = r.status();
                                panic!("{status}: {}", r.text().await.unwrap_or_default());
                            }
                        }
                    }
                    start.elapsed()
                }
            })
        });
    }
    g.finish();
    let _ = redis.kill();
    let _ = redis.wait();
}

criterion_group!(benches, bench);
criterion_main!(benches);
