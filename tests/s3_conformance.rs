//! S3 behaviours as AWS documents them (`tests/s3/conformance.py`, one
//! check per behaviour, each named after it), through the gateway against
//! both backends: the embedded one every new user meets, and moto. On the
//! embedded backend the ledger must then equal the bytes really on disk,
//! part files included.

mod common;

use std::path::Path;

use common::s3::{Backend, StorageGateway, TENANTS};

fn all_checks_pass(g: &StorageGateway) {
    let out = g.conformance(&[]);
    println!("{out}");
    assert!(
        out.lines().filter(|l| l.starts_with("ok: ")).count() >= 14,
        "{out}"
    );
}

/// Bytes of object and part files under the embedded backend's root (its
/// side files of metadata and checksums are not objects).
fn bytes_on_disk(dir: &Path, top: bool) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let meta = e.metadata().unwrap();
        if meta.is_dir() {
            if !(top && name.starts_with('.')) {
                total += bytes_on_disk(&e.path(), false);
            }
        } else if !top || name.starts_with(".upload_id-") {
            total += meta.len();
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_backend_behaves_like_s3() {
    let g = StorageGateway::start(Backend::Embedded);
    all_checks_pass(&g);
    let mut used = 0;
    for (_, key, ..) in TENANTS {
        let u: serde_json::Value = g
            .client()
            .get(g.url("/s3/usage"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(u["reserved"], 0, "{u}");
        used += u["used"].as_u64().unwrap();
    }
    let on_disk = bytes_on_disk(&g.gw.dir.path().join("data/s3"), true);
    println!("ledger {used} bytes, disk {on_disk} bytes");
    assert!(used > 0, "the checks leave objects behind to count");
    assert_eq!(
        used, on_disk,
        "the ledger holds {used} bytes, the disk {on_disk}"
    );
}

#[test]
fn moto_behind_the_gateway_behaves_like_s3() {
    all_checks_pass(&StorageGateway::start(Backend::Moto));
}
