//! Pass-through routes stream both ways without buffering: 1 GiB up and
//! 1 GiB down through the gateway while its peak RSS stays under 100 MiB.

mod common;

use std::time::Instant;

use bytes::Bytes;
use common::upstream::Upstream;
use common::*;
use futures_util::StreamExt;

const GIB: u64 = 1 << 30;
const RSS_LIMIT_KIB: u64 = 100 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn one_gib_each_way_with_bounded_memory() {
    let up = Upstream::start("store").await;
    let gw = Gateway::with(&format!(
        "upstreams:\n  store:\n    endpoints: [{{address: '{}'}}]\nroutes:\n{}{}",
        up.address(),
        authed_route("storage", "/s3", "storage", "upstream: store"),
        test_keys()
    ));
    let http = client();

    // Upload: 1 GiB in 1 MiB chunks, never held whole by anyone.
    let chunk = Bytes::from(vec![b'u'; 1 << 20]);
    let body =
        futures_util::stream::iter((0..1024).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let t = Instant::now();
    let r = http
        .put(gw.url("/s3/sink"))
        .header("authorization", bearer(STORAGE_KEY))
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["received"], GIB);
    let up_secs = t.elapsed().as_secs_f64();

    // Download: 1 GiB streamed back.
    let t = Instant::now();
    let r = http
        .get(gw.url(&format!("/s3/bytes/{GIB}")))
        .header("authorization", bearer(STORAGE_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut got: u64 = 0;
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        got += chunk.unwrap().len() as u64;
    }
    assert_eq!(got, GIB);
    let down_secs = t.elapsed().as_secs_f64();

    let peak = gw.peak_rss_kib();
    eprintln!(
        "1 GiB up in {up_secs:.1}s ({:.0} MiB/s), down in {down_secs:.1}s ({:.0} MiB/s); gateway peak RSS {:.1} MiB",
        1024.0 / up_secs,
        1024.0 / down_secs,
        peak as f64 / 1024.0
    );
    assert!(peak < RSS_LIMIT_KIB, "gateway peak RSS {peak} KiB");
}
