//! The customer portal and the operator console (DESIGN §7) in a real
//! headless Chromium (Debian's package), driven by playwright-core
//! (`tests/node/browser/pages.mjs`), against the real binary on the shipped
//! config: log in with each demo key, generate an image and see it and its
//! gallery copy, filter logs by date, upload / list / download / delete a
//! file, reveal and copy the S3 credentials, the wrong-type sentences, a
//! key made in the console working on the public API, suspended and
//! resumed there, a bucket browsed, a URL presigned, and that key rotated
//! in the portal and logged in with anew. No console or page errors.
//! Screenshots go to `KIKAKU_SCREENSHOTS` (the README's come from there).

mod common;

use std::path::PathBuf;

use common::uploads::{file, post_form, text, KEY};
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_portal_and_the_console_work_in_a_real_browser() {
    let (gw, _sim, data) = start_shipped("conf/kikaku.yaml");
    // An object for the console to browse and presign.
    let parts = [
        text("key", "console/seen.txt"),
        file("seen.txt", "text/plain", b"seen by the console\n"),
    ];
    let resp = post_form(&gw, "/s3/upload", Some(KEY), &parts).await;
    assert_eq!(resp.status(), 201);

    let shots = std::env::var("KIKAKU_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| data.path().join("screenshots"));
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tool("node")
        .arg(root.join("tests/node/browser/pages.mjs"))
        .env("PUBLIC", gw.url(""))
        .env("ADMIN", gw.admin_url(""))
        .env("CHROMIUM", "/usr/bin/chromium")
        .env("SCREENSHOTS", &shots)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "the browser run failed:\n{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .rfind(|l| !l.is_empty())
            .unwrap(),
    )
    .unwrap();
    // The key rotated in the portal is dead, its successor alive.
    let old = summary["old_key"].as_str().unwrap();
    let new = summary["new_key"].as_str().unwrap();
    let usage = |k: &str| {
        client()
            .get(gw.url("/v1/usage"))
            .header("authorization", bearer(k))
            .send()
    };
    assert_eq!(usage(old).await.unwrap().status(), 401);
    assert_eq!(usage(new).await.unwrap().status(), 200);
    for name in [
        "console-stats",
        "console-keys",
        "portal-image",
        "portal-storage",
    ] {
        for width in ["desktop", "phone"] {
            let png = shots.join(format!("{name}-{width}.png"));
            let bytes = std::fs::read(&png).unwrap();
            assert!(bytes.starts_with(b"\x89PNG"), "{}", png.display());
        }
    }
    // The pages' own answers: types, caching and a strict policy.
    for (url, ty) in [
        (gw.url("/portal"), "text/html; charset=utf-8"),
        (
            gw.url("/portal/portal.js"),
            "text/javascript; charset=utf-8",
        ),
        (gw.url("/portal/style.css"), "text/css; charset=utf-8"),
        (gw.admin_url("/console"), "text/html; charset=utf-8"),
        (
            gw.admin_url("/console/keys.js"),
            "text/javascript; charset=utf-8",
        ),
    ] {
        let resp = client().get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{url}");
        let h = resp.headers();
        assert_eq!(h["content-type"], ty, "{url}");
        assert_eq!(h["cache-control"], "no-cache");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        let etag = h["etag"].to_str().unwrap().to_string();
        let again = client()
            .get(&url)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{url}");
    }
    let missing = client()
        .get(gw.url("/portal/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}
