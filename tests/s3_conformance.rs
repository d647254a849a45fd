//! S3 behaviours as AWS documents them (`tests/s3/conformance.py`, one
//! check per behaviour, each named after it), through the gateway against
//! both backends: the embedded one every new user meets, and moto.

mod common;

use common::s3::{Backend, StorageGateway};

fn all_checks_pass(backend: Backend) {
    let out = StorageGateway::start(backend).conformance(&[]);
    println!("{out}");
    assert!(
        out.lines().filter(|l| l.starts_with("ok: ")).count() >= 9,
        "{out}"
    );
}

#[test]
fn embedded_backend_behaves_like_s3() {
    all_checks_pass(Backend::Embedded);
}

#[test]
fn moto_behind_the_gateway_behaves_like_s3() {
    all_checks_pass(Backend::Moto);
}
