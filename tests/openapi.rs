//! The two OpenAPI 3.1 documents, the management API's (behind the admin
//! token) and the public API's (`GET /openapi.json`, open): each served as
//! written, valid (openapi-spec-validator), and the live API conforms to it
//! (schemathesis: no server error, every status and answer as documented,
//! over its examples, coverage, fuzzing and stateful phases, bounded).

mod common;

use std::time::Instant;

use common::admin::demo_admin;
use common::*;

/// Validate the document at `file` with openapi-spec-validator.
fn validate(file: &std::path::Path) {
    let out = tool("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// schemathesis against the live API described at `url`, as `bearer`.
fn schemathesis(url: &str, bearer: &str) {
    let start = Instant::now();
    // Run outside the checkout: schemathesis keeps a cache where it runs.
    let out = tool("schemathesis")
        .current_dir(std::env::temp_dir())
        .args(["run", url])
        .args(["-H", &format!("Authorization: Bearer {bearer}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "20", "--seed", "1", "--no-color"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let tail: Vec<&str> = report.lines().rev().take(8).collect();
    eprintln!(
        "schemathesis {url} in {:?}: {}",
        start.elapsed(),
        tail.join(" | ")
    );
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_management_api_matches_its_openapi_document() {
    let (gw, _sim, data) = start_shipped("conf/kikaku.yaml");
    let url = gw.admin_url("/admin/v1/openapi.json");
    let open = client().get(&url).send().await.unwrap().status();
    assert_eq!(open, 401, "the document is behind the admin token too");
    let (s, doc) = demo_admin(&gw, "GET", "/openapi.json", None).await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let shipped: serde_json::Value =
        serde_json::from_str(include_str!("../src/admin_api/openapi.json")).unwrap();
    assert_eq!(doc, shipped, "served as written");

    let file = data.path().join("admin-openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    validate(&file);
    schemathesis(&url, "admin_demo_token");
    assert!(!gw.stderr().contains("panicked"), "the gateway panicked");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_public_api_matches_its_openapi_document() {
    let (gw, _sim, data) = start_shipped("conf/kikaku.yaml");
    let url = gw.url("/openapi.json");
    let resp = client().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "open, no key needed");
    let doc: serde_json::Value = resp.json().await.unwrap();
    let shipped: serde_json::Value =
        serde_json::from_str(include_str!("../src/openapi/public.json")).unwrap();
    assert_eq!(doc, shipped, "served as written");
    let file = data.path().join("public-openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    validate(&file);
    // As an image key and as a storage key: each type's routes answer,
    // the other type's refuse (403), all as documented.
    schemathesis(&url, "kikaku_demo_key");
    schemathesis(&url, "kikaku_s3_demo_key");
    assert!(!gw.stderr().contains("panicked"), "the gateway panicked");
}
