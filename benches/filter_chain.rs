//! Per-request cost of the filter chain on a prepared request:
//! request_id + key_auth + key_type + rate_limit (embedded state, journaled),
//! with 1,000 keys in the directory. The chain is built the way the gateway
//! builds it: YAML → config → snapshot.
//!
//! Run: `cargo bench --bench filter_chain`

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use kikaku_edge::config::load_str;
use kikaku_edge::proxy::snapshot::Snapshot;
use kikaku_edge::state::{EmbeddedState, StateStore};
use kikaku_filters::{FilterChain, RequestCtx};
use pingora_http::{RequestHeader, ResponseHeader};

const KEY: &str = "kikaku_bench_key_000500";

fn chains(state: Arc<dyn StateStore>) -> (FilterChain, FilterChain) {
    let route = |name: &str, prefix: &str, filters: &str| {
        format!("  - name: {name}\n    match: {{path_prefix: {prefix}}}\n    handler: {{type: not_implemented, message: m}}\n    filters: [{filters}]\n")
    };
    let mut yaml = String::from("listeners:\n  public: {address: '127.0.0.1:1'}\nroutes:\n");
    yaml += &route(
        "full",
        "/v1/images",
        "request_id: {}, key_auth: {}, key_type: {require: image}, rate_limit: {}",
    );
    yaml += &route(
        "auth_only",
        "/auth",
        "request_id: {}, key_auth: {}, key_type: {require: image}",
    );
    yaml += "keys:\n";
    for i in 0..1000 {
        // Limits that never bind, so every iteration takes the admit path.
        yaml.push_str(&format!(
            "  - {{key: kikaku_bench_key_{i:06}, owner: o{i}, rate_limit_per_minute: 4000000000}}\n"
        ));
    }
    let config = load_str(&yaml, &|_| None).expect("bench config is valid");
    let snap = Snapshot::compile(config, state, None, None, 1).expect("bench config compiles");
    let find = |name: &str| {
        snap.router
            .routes()
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.chain.clone())
            .expect("route exists")
    };
    (find("full"), find("auth_only"))
}

fn request() -> RequestHeader {
    let mut req = RequestHeader::build("POST", b"/v1/images/generations", None).unwrap();
    req.insert_header("host", "gateway.example.com").unwrap();
    req.insert_header("authorization", format!("Bearer {KEY}"))
        .unwrap();
    req.insert_header("content-type", "application/json")
        .unwrap();
    req.insert_header("user-agent", "bench/1.0").unwrap();
    req
}

/// What the gateway does with a chain for one proxied request.
async fn run(chain: &FilterChain, req: &RequestHeader) {
    let mut ctx = RequestCtx::new(Some("10.1.2.3".parse().unwrap()));
    chain.on_request(req, &mut ctx).await.expect("admitted");
    let mut upstream = req.clone();
    chain.on_upstream_request(&mut upstream, &ctx);
    let mut resp = ResponseHeader::build(200, Some(4)).unwrap();
    chain.on_response(&mut resp, &ctx);
    std::hint::black_box((upstream, resp));
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state: Arc<dyn StateStore> =
        Arc::new(EmbeddedState::open(&dir.path().join("bench.journal")).unwrap());
    let (full, auth_only) = chains(state.clone());
    let req = request();

    let mut g = c.benchmark_group("filter_chain");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("request_id+key_auth+key_type+rate_limit", |b| {
        b.to_async(&rt).iter(|| run(&full, &req))
    });
    g.bench_function("request_id+key_auth+key_type", |b| {
        b.to_async(&rt).iter(|| run(&auth_only, &req))
    });
    g.bench_function("rate_limit_state_only", |b| {
        b.to_async(&rt).iter(|| async {
            state
                .rate_limit("rl:key:{bench}", 1, u32::MAX, Duration::from_secs(60))
                .await
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
