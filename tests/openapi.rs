//! The management API's OpenAPI 3.1 document: served behind the admin
//! token, valid (openapi-spec-validator), and the live API conforms to it
//! (schemathesis: no server error, every status and answer as documented,
//! over its examples, coverage, fuzzing and stateful phases, bounded).

mod common;

use std::time::Instant;

use common::admin::demo_admin;
use common::*;

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
    let out = tool("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let start = Instant::now();
    let out = tool("schemathesis")
        .args(["run", &url])
        .args(["-H", "Authorization: Bearer admin_demo_token"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "25", "--seed", "1", "--no-color"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "schemathesis in {:?}:\n{}",
        start.elapsed(),
        report.lines().rev().take(12).collect::<Vec<_>>().join("\n")
    );
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "{report}");
    assert!(!gw.stderr().contains("panicked"), "the gateway panicked");
}
