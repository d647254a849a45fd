//! Object throughput through the gateway against direct-to-backend, side by
//! side in one run: 64 MiB PUT and GET straight to the embedded S3 backend,
//! through the S3-compatible endpoint (SigV4 verified, quota ledger,
//! re-signed), and GET through `/s3/files`. Plain HTTP on loopback; the
//! client, the gateway and the backend share the machine.
//!
//! Run: `cargo bench --bench storage`

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sigv4::{sign_request, SigningCredential, UNSIGNED_PAYLOAD};

const SIZE: usize = 64 << 20;
const BACKEND: SigningCredential<'static> = SigningCredential {
    access_key_id: "bench-backend",
    secret_access_key: "bench-backend-secret",
    region: "us-east-1",
};
const TENANT: SigningCredential<'static> = SigningCredential {
    access_key_id: "BENCHTENANTACCESS001",
    secret_access_key: "bench-tenant-secret-0000000000000000000000",
    region: "us-east-1",
};
const KEY: &str = "kikaku_s3_bench_key";

mod support;
use support::{free_port, start_gateway, Running};

/// The gateway with the embedded backend; returns it, its port and the backend's.
fn start() -> (Running, u16, u16) {
    let dir = tempfile::tempdir().unwrap();
    let (public, admin, s3) = (free_port(), free_port(), free_port());
    let yaml = format!(
        "listeners:
  public: {{address: '127.0.0.1:{public}'}}
  admin: {{address: '127.0.0.1:{admin}'}}
data_dir: '{data}'
logging: {{access_log: 'off'}}
storage:
  backend: {{upstream: s3, access_key_id: {bid}, secret_access_key: {bsecret}}}
  embedded: {{listen: '127.0.0.1:{s3}'}}
upstreams:
  s3:
    endpoints: [{{address: '127.0.0.1:{s3}'}}]
    timeouts: {{connect_ms: 2000, read_ms: 60000, write_ms: 60000}}
routes:
  - name: s3
    match: {{path_prefix: /, sigv4: true}}
    filters: [{{request_id: {{}}}}, {{s3_auth: {{}}}}, {{key_type: {{require: storage}}}}, {{rate_limit: {{}}}}]
    handler: {{type: s3_endpoint}}
  - name: storage
    match: {{path_prefix: /s3}}
    filters: [{{request_id: {{}}}}, {{key_auth: {{}}}}, {{key_type: {{require: storage}}}}, {{rate_limit: {{}}}}]
    handler: {{type: storage_api}}
keys:
  - {{key: {KEY}, owner: bench, quota: 1TiB, rate_limit_per_minute: 1000000, bucket: bench, s3: {{access_key_id: {tid}, secret_access_key: {tsecret}}}}}
",
        data = dir.path().join("data").display(),
        bid = BACKEND.access_key_id,
        bsecret = BACKEND.secret_access_key,
        tid = TENANT.access_key_id,
        tsecret = TENANT.secret_access_key,
    );
    (start_gateway(dir, &yaml, &[public, s3]), public, s3)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A SigV4-signed request (UNSIGNED-PAYLOAD) to `port`.
fn signed(
    http: &reqwest::Client,
    method: reqwest::Method,
    port: u16,
    path: &str,
    cred: &SigningCredential<'_>,
) -> reqwest::RequestBuilder {
    let host = format!("127.0.0.1:{port}");
    let mut headers = vec![("host".to_string(), host.clone())];
    let auth = sign_request(
        method.as_str(),
        path.as_bytes(),
        &[],
        &mut headers,
        UNSIGNED_PAYLOAD,
        cred,
        now(),
    );
    let mut b = http.request(method, format!("http://{host}{path}"));
    for (n, v) in headers.iter().filter(|(n, _)| n != "host") {
        b = b.header(n.as_str(), v.as_str());
    }
    b.header("authorization", auth)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_gw, gw_port, s3_port) = start();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let body = Bytes::from(vec![0x5au8; SIZE]);
    rt.block_on(async {
        // The direct bucket, and the tenant's default bucket (made on first use).
        let r = signed(
            &http,
            reqwest::Method::PUT,
            s3_port,
            "/bench-direct",
            &BACKEND,
        )
        .send()
        .await
        .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let r = http
            .get(format!("http://127.0.0.1:{gw_port}/s3/usage"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    });

    let mut g = c.benchmark_group("storage_64mib");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(15));
    let targets = [
        ("direct", s3_port, "/bench-direct/obj", BACKEND),
        ("s3_endpoint", gw_port, "/bench/obj", TENANT),
    ];
    for (name, port, path, cred) in targets {
        g.bench_function(format!("put_{name}"), |b| {
            b.to_async(&rt).iter(|| {
                let req = signed(&http, reqwest::Method::PUT, port, path, &cred)
                    .header("content-length", SIZE)
                    .body(body.clone());
                async move {
                    let r = req.send().await.unwrap();
                    assert!(r.status().is_success(), "{}", r.status());
                }
            })
        });
    }
    for (name, port, path, cred) in targets {
        g.bench_function(format!("get_{name}"), |b| {
            b.to_async(&rt).iter(|| {
                let req = signed(&http, reqwest::Method::GET, port, path, &cred);
                async move {
                    let r = req.send().await.unwrap();
                    assert!(r.status().is_success(), "{}", r.status());
                    assert_eq!(r.bytes().await.unwrap().len(), SIZE);
                }
            })
        });
    }
    g.bench_function("get_s3_api", |b| {
        b.to_async(&rt).iter(|| {
            let req = http
                .get(format!("http://127.0.0.1:{gw_port}/s3/files/obj"))
                .bearer_auth(KEY);
            async move {
                let r = req.send().await.unwrap();
                assert!(r.status().is_success(), "{}", r.status());
                assert_eq!(r.bytes().await.unwrap().len(), SIZE);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
