//! `conf/kikaku.yaml` as shipped: the seed's eight curl examples work out of
//! the box with the demo key, offline, against the in-process simulator.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// The shipped config on free ports; returns the gateway, the simulator's
/// port, and the data directory (kept alive with the gateway).
fn shipped() -> (Gateway, u16, tempfile::TempDir) {
    start_shipped("conf/kikaku.yaml")
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_images_stay_in_the_gallery_after_the_upstream_forgets_them() {
    let (gw, sim, _data) = shipped();
    let http = client();
    let key = "Bearer kikaku_demo_key";
    for format in ["url", "b64_json"] {
        let r = http
            .post(gw.url("/v1/images/generations"))
            .header("authorization", key)
            .body(
                serde_json::json!({"model": "seedream-4.0", "prompt": format!("a lighthouse ({format})"),
                    "size": "1K", "response_format": format})
                .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Copies are made in the background: wait for both.
    let mut gallery = Value::Null;
    for _ in 0..100 {
        gallery = get_json(&gw.url("/v1/gallery?limit=10"), "kikaku_demo_key").await;
        if gallery["pagination"]["total"] == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let images = gallery["images"].as_array().expect("images");
    assert_eq!(images.len(), 2, "{gallery}");
    // Newest copy first (copies land in any order), with what was asked.
    let mut prompts: Vec<&str> = images
        .iter()
        .map(|i| i["prompt"].as_str().unwrap())
        .collect();
    prompts.sort();
    assert_eq!(prompts, ["a lighthouse (b64_json)", "a lighthouse (url)"]);
    assert!(images
        .iter()
        .all(|i| i["model"] == "seedream-4.0" && i["image_size"] == "1K"));
    assert!(images[0]["id"].as_u64() > images[1]["id"].as_u64());

    // The upstream's URLs stop working; the gallery's do not.
    http.post(format!("http://127.0.0.1:{sim}/_sim/forget-images"))
        .send()
        .await
        .unwrap();
    for img in images {
        let url = img["s3_url"].as_str().unwrap();
        assert!(url.starts_with(&gw.url("/gallery/")), "{url}");
        let r = http.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(r.headers()["content-type"], "image/jpeg");
        assert_eq!(jpeg_dimensions(url).await, (1024, 1024));
    }
    // Unknown or malformed tokens are 404s.
    for bad in [
        "/gallery/00000000000000000000000000000000.jpeg",
        "/gallery/..%2Fx.jpeg",
    ] {
        let r = http.get(gw.url(bad)).send().await.unwrap();
        assert!(
            r.status() == 404 || r.status() == 400,
            "{bad}: {}",
            r.status()
        );
    }
    // Paging rules are the logs' rules.
    let r = http
        .get(gw.url("/v1/gallery?limit=101"))
        .header("authorization", key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_eight_examples_work_on_the_shipped_config() {
    let (gw, _sim, _data) = shipped();
    let examples = seed_examples();
    let http = client();
    for (i, (body, want)) in examples.into_iter().enumerate() {
        let r = http
            .post(gw.url("/v1/images/generations"))
            .header("authorization", "Bearer kikaku_demo_key")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "example {}", i + 1);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["usage"]["generated_images"],
            want as u64,
            "example {}: {v}",
            i + 1
        );
    }
    let usage: Value = http
        .get(gw.url("/v1/usage"))
        .header("authorization", "Bearer kikaku_demo_key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["used_count"], 21);
    assert_eq!(usage["quota_limit"], 1000);
    // The demo key's 10 requests per minute: this was the 9th; the 11th is refused.
    let status = |r: reqwest::Response| r.status().as_u16();
    let next = || {
        http.get(gw.url("/v1/logs"))
            .header("authorization", "Bearer kikaku_demo_key")
            .send()
    };
    assert_eq!(status(next().await.unwrap()), 200);
    assert_eq!(status(next().await.unwrap()), 429);
}

/// The fenced block that follows `marker` in README.md.
fn readme_block(marker: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let at = readme.find(marker).expect("marker in README");
    let rest = &readme[at..];
    let start = rest.find("```").unwrap();
    let body = &rest[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_string()
}

/// README's storage commands (curl, the AWS CLI, boto3) work as written
/// against the shipped config; only the port differs.
#[tokio::test(flavor = "multi_thread")]
async fn readme_storage_commands_work_as_written() {
    let (gw, _sim, _data) = shipped();
    let port = |text: String| {
        text.replace("localhost:8080", &format!("localhost:{}", gw.public))
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{}", gw.public))
    };
    let run = |prog: &str, arg: &str, script: String| {
        let out = std::process::Command::new(prog)
            .arg(arg)
            .arg(&script)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .output()
            .unwrap();
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            out.status.success(),
            "{script}\n--- stdout\n{o}\n--- stderr\n{e}"
        );
        o
    };
    let curl = run(
        "bash",
        "-ec",
        port(readme_block("The simple API, with the key")),
    );
    assert!(curl.contains(r#""key":"docs/hello.txt""#), "{curl}");
    assert!(curl.contains(r#""deleted":"docs/hello.txt""#), "{curl}");
    let cli = run(
        "bash",
        "-ec",
        port(readme_block("The AWS CLI (`pip install awscli`)")),
    );
    assert!(cli.contains("readme.md"), "{cli}");
    let py = run(
        "python3",
        "-c",
        port(readme_block("boto3, built as seed 000 prints it")),
    );
    // Without a Config, boto3 presigns with SigV2 for a custom endpoint.
    let url = py.lines().last().unwrap_or_default().to_string();
    assert!(
        py.contains("b'hello'") && url.contains("AWSAccessKeyId=") && url.contains("Signature="),
        "{py}"
    );
    let got = client().get(&url).send().await.unwrap();
    assert_eq!(got.status(), 200, "{url}");
    assert_eq!(got.text().await.unwrap(), "hello");
}

/// `conf/bench.yaml`: the bench key is not held to 10 requests a minute, and
/// the offline routes still work.
#[tokio::test(flavor = "multi_thread")]
async fn the_bench_config_does_not_limit_the_bench_key() {
    let (gw, _sim, _data) = start_shipped("conf/bench.yaml");
    let http = client();
    for i in 0..25 {
        let r = http
            .post(gw.url("/v1/images/generations"))
            .header("authorization", "Bearer kikaku_bench_key")
            .body(r#"{"model":"seedream-4.0","prompt":"a cat","size":"1K"}"#)
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(status, 200, "request {i}: {}", r.text().await.unwrap());
    }
}
