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
    // The demo key's 10 generations a minute: 8 made, 2 left, the 11th is
    // refused (reading the usage spent none of them).
    let status = |r: reqwest::Response| r.status().as_u16();
    let next = || {
        http.post(gw.url("/v1/images/generations"))
            .header("authorization", "Bearer kikaku_demo_key")
            .body(r#"{"model":"seedream-4.0","prompt":"a cat","size":"1K"}"#)
            .send()
    };
    assert_eq!(status(next().await.unwrap()), 200);
    assert_eq!(status(next().await.unwrap()), 200);
    assert_eq!(status(next().await.unwrap()), 429);
}

/// GET `path` with `key`: status, the JSON body (or Null), and the
/// rate-limit headers (limit, remaining).
async fn read(gw: &Gateway, path: &str, key: &str) -> (u16, Value, (String, String)) {
    let r = client()
        .get(gw.url(path))
        .header("authorization", bearer(key))
        .send()
        .await
        .unwrap();
    let h = |n: &str| {
        r.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let limits = (h("x-ratelimit-limit"), h("x-ratelimit-remaining"));
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, body, limits)
}

/// DESIGN §2: a customer's reads of their own account have a budget of
/// their own (60/min per key). The demo key spends its 10 generations;
/// its usage, logs and gallery still answer, with the right counts, and
/// the 11th generation is still refused.
#[tokio::test(flavor = "multi_thread")]
async fn account_reads_do_not_spend_the_generation_budget() {
    let (gw, _sim, _data) = shipped();
    let key = "kikaku_demo_key";
    let generate = || async {
        client()
            .post(gw.url("/v1/images/generations"))
            .header("authorization", bearer(key))
            .body(r#"{"model":"seedream-4.0","prompt":"a cat","size":"1K"}"#)
            .send()
            .await
            .unwrap()
    };
    for i in 0..10 {
        assert_eq!(generate().await.status(), 200, "generation {}", i + 1);
        // The portal polls the usage between generations.
        let (status, usage, _) = read(&gw, "/v1/usage", key).await;
        assert_eq!(status, 200, "usage after generation {}", i + 1);
        assert_eq!(usage["used_count"], i + 1);
    }
    let refused = generate().await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["x-ratelimit-limit"], "10");

    let (status, usage, (limit, remaining)) = read(&gw, "/v1/usage", key).await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!((limit.as_str(), remaining.as_str()), ("60", "49"));
    assert_eq!(usage["used_count"], 10);
    assert_eq!(usage["remaining"], 990);
    assert_eq!(usage["stats"]["total_requests"], 11, "{usage}");
    assert_eq!(usage["stats"]["successful_requests"], 10, "{usage}");
    assert_eq!(usage["stats"]["failed_requests"], 1, "{usage}");
    let (status, logs, _) = read(&gw, "/v1/logs?limit=100", key).await;
    assert_eq!(status, 200, "{logs}");
    assert_eq!(
        logs["pagination"]["total"], 11,
        "every generation, the refused one too"
    );
    let statuses: Vec<&str> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == "success").count(), 10);
    assert_eq!(read(&gw, "/v1/gallery", key).await.0, 200);
    assert_eq!(
        generate().await.status(),
        429,
        "still refused after the reads"
    );
}

/// The same for a storage key: `/s3/usage`, the `/s3/files` listing and
/// `/s3/credentials` spend the reads budget (60), downloads and uploads the
/// key's own (600 for the demo key).
#[tokio::test(flavor = "multi_thread")]
async fn storage_account_reads_have_their_own_budget() {
    let (gw, _sim, _data) = shipped();
    let key = "kikaku_s3_demo_key";
    let (status, _, (limit, before)) = read(&gw, "/s3/files/missing.txt", key).await;
    assert_eq!((status, limit.as_str()), (404, "600"));
    let mut left = 60;
    for path in [
        "/s3/usage",
        "/s3/files",
        "/s3/files/?limit=5",
        "/s3/credentials",
    ] {
        let (status, body, (limit, remaining)) = read(&gw, path, key).await;
        left -= 1;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(
            (limit.as_str(), remaining),
            ("60", left.to_string()),
            "{path}"
        );
    }
    let (_, _, (limit, after)) = read(&gw, "/s3/files/missing.txt", key).await;
    assert_eq!(limit, "600");
    assert_eq!(
        after.parse::<u32>().unwrap(),
        before.parse::<u32>().unwrap() - 1,
        "the reads spent nothing of the key's own budget"
    );
}

/// The embedded S3 backend is not an open door on the host: with no backend
/// credential configured it accepts only the one the gateway made at first
/// start (in the data dir, mode 0600), not the one conf/kikaku.yaml used to
/// print. The credential survives a restart, and a clean shutdown removes
/// the pid file.
#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_backend_accepts_only_its_own_credential() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    let (mut gw, _sim, s3) = start_shipped_on("conf/kikaku.yaml", data.path());
    let file = data.path().join("embedded-s3-credential.env");
    let text = std::fs::read_to_string(&file).unwrap();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let var = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_string()
    };
    let (id, secret) = (
        var("KIKAKU_S3_BACKEND_ACCESS_KEY_ID"),
        var("KIKAKU_S3_BACKEND_SECRET_ACCESS_KEY"),
    );
    assert!(!text.contains("kikaku-embedded-backend"), "{text}");
    assert!(!gw.stderr().contains(&secret), "the secret is never logged");

    let backend = format!("http://127.0.0.1:{s3}");
    let demo = aws(
        &backend,
        "kikaku-embedded-backend",
        "kikaku-embedded-backend-secret",
        &["s3api", "list-buckets"],
    );
    assert!(!demo.status.success(), "the old demo credential is refused");
    let err = String::from_utf8_lossy(&demo.stderr);
    assert!(
        err.contains("NotSignedUp") || err.contains("InvalidAccessKeyId"),
        "refused as an unknown access key: {err}"
    );
    let own = aws(&backend, &id, &secret, &["s3api", "list-buckets"]);
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );

    // An object stored through the gateway, to find again after a restart.
    let body = data.path().join("kept.txt");
    std::fs::write(&body, "kept across restarts").unwrap();
    let put = aws(
        &gw.url(""),
        "KIKAKUDEMOACCESSKEY0",
        "kikaku-demo-secret-key-for-local-use-only",
        &[
            "s3api",
            "put-object",
            "--bucket",
            "demo",
            "--key",
            "kept.txt",
            "--body",
            body.to_str().unwrap(),
        ],
    );
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );

    // A clean shutdown (SIGTERM) removes the pid file.
    let pid_file = data.path().join("kikaku-edge.pid");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        gw.pid().to_string()
    );
    gw.signal("TERM");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = gw.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(!pid_file.exists(), "pid file left after a clean shutdown");

    // Started again on the same data: the same credential, the same object.
    let (gw, _sim, s3) = start_shipped_on("conf/kikaku.yaml", data.path());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    let backend = format!("http://127.0.0.1:{s3}");
    let own = aws(&backend, &id, &secret, &["s3api", "list-buckets"]);
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    let r = client()
        .get(gw.url("/s3/files/kept.txt"))
        .header("authorization", bearer("kikaku_s3_demo_key"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "kept across restarts");
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
        let out = tool(prog)
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
        port(readme_block("The AWS CLI (`pip install awscli`")),
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
