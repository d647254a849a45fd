//! The simple storage API (`/s3/*`, DESIGN §4) through the real binary, on
//! both backends; and the streaming proof: 1 GiB up and down through `/s3`
//! and through the S3 endpoint with the gateway's RSS under 100 MiB.

mod common;

use bytes::Bytes;
use common::s3::{Backend, StorageGateway, TENANTS};
use futures_util::StreamExt;
use serde_json::Value;

const A_KEY: &str = TENANTS[0].1;
const B_KEY: &str = TENANTS[1].1;
const Q_KEY: &str = TENANTS[2].1;
const MIB: usize = 1 << 20;

/// A multipart/form-data body: an optional `key` field, then `file`.
fn form(key: Option<&str>, filename: &str, data: &[u8]) -> (String, Vec<u8>) {
    let boundary = "kikaku-test-boundary-7f3a";
    let mut body = Vec::new();
    if let Some(k) = key {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\n{k}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload(g: &StorageGateway, key: &str, name: Option<&str>, data: &[u8]) -> (u16, Value) {
    post(g, key, form(name, "upload.bin", data)).await
}

/// POST /s3/upload with a form `(content type, body)`; status and JSON.
async fn post(g: &StorageGateway, key: &str, (ct, body): (String, Vec<u8>)) -> (u16, Value) {
    let r = g
        .client()
        .post(g.url("/s3/upload"))
        .bearer_auth(key)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get_json(g: &StorageGateway, key: &str, path: &str) -> (u16, Value) {
    let r = g
        .client()
        .get(g.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn the_storage_api(backend: Backend) {
    let g = StorageGateway::start(backend);
    let c = g.client();

    // Upload: a small file under a chosen key, and a 20 MiB one (multipart
    // to the backend) under its own filename.
    let (s, v) = upload(&g, A_KEY, Some("docs/hello.txt"), b"hello storage").await;
    assert_eq!((s, v["size"].as_u64()), (201, Some(13)), "{v}");
    let big: Vec<u8> = (0..20 * MIB + 3).map(|i| (i % 251) as u8).collect();
    let (s, v) = upload(&g, A_KEY, Some("big.bin"), &big).await;
    assert_eq!(
        (s, v["size"].as_u64()),
        (201, Some(big.len() as u64)),
        "{v}"
    );

    // Usage counts exactly the stored bytes.
    let (_, u) = get_json(&g, A_KEY, "/s3/usage").await;
    assert_eq!(u["used"].as_u64(), Some(13 + big.len() as u64), "{u}");
    assert_eq!(u["status"], "active");
    // An overwrite costs only the difference (both ways).
    let (s, _) = upload(&g, A_KEY, Some("docs/hello.txt"), &[b'x'; 1013]).await;
    assert_eq!(s, 201);
    let (_, u) = get_json(&g, A_KEY, "/s3/usage").await;
    assert_eq!(u["used"].as_u64(), Some(1013 + big.len() as u64), "{u}");
    let (s, _) = upload(&g, A_KEY, Some("docs/hello.txt"), b"hello storage").await;
    assert_eq!(s, 201);
    let (_, u) = get_json(&g, A_KEY, "/s3/usage").await;
    assert_eq!(u["used"].as_u64(), Some(13 + big.len() as u64), "{u}");

    // List with paging.
    let (_, page) = get_json(&g, A_KEY, "/s3/files?limit=1").await;
    assert_eq!(page["files"].as_array().unwrap().len(), 1, "{page}");
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (_, rest) = get_json(&g, A_KEY, &format!("/s3/files?limit=10&cursor={cursor}")).await;
    let keys: Vec<&str> = page["files"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["files"].as_array().unwrap())
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["big.bin", "docs/hello.txt"]);
    let (_, pre) = get_json(&g, A_KEY, "/s3/files?prefix=docs/").await;
    assert_eq!(pre["files"][0]["size"], 13);

    // Download whole and by range.
    let r = c
        .get(g.url("/s3/files/big.bin"))
        .bearer_auth(A_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &big[..]);
    let r = c
        .get(g.url("/s3/files/big.bin"))
        .bearer_auth(A_KEY)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &big[100..200]);

    // Another tenant sees none of it.
    let (s, _) = get_json(&g, B_KEY, "/s3/files/docs/hello.txt").await;
    assert_eq!(s, 404);
    let (_, other) = get_json(&g, B_KEY, "/s3/files").await;
    assert_eq!(other["files"].as_array().unwrap().len(), 0);

    // Path tricks are refused before anything is mapped.
    for p in ["/s3/files/..%2Fbeta%2Fx", "/s3/files/a%2F..%2F..%2Fx"] {
        let (s, _) = get_json(&g, A_KEY, p).await;
        assert_eq!(s, 400, "{p}");
    }

    // Delete returns the bytes.
    let r = c
        .delete(g.url("/s3/files/big.bin"))
        .bearer_auth(A_KEY)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["freed_bytes"].as_u64(), Some(big.len() as u64));
    let (_, u) = get_json(&g, A_KEY, "/s3/usage").await;
    assert_eq!(u["used"].as_u64(), Some(13));
    let (s, _) = get_json(&g, A_KEY, "/s3/files/big.bin").await;
    assert_eq!(s, 404);

    // Quota: 10 MiB. A 12 MiB upload stops part-way and leaves nothing.
    let (s, v) = upload(&g, Q_KEY, Some("too-big"), &vec![7u8; 12 * MIB]).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "QuotaExceeded");
    let (_, u) = get_json(&g, Q_KEY, "/s3/usage").await;
    assert_eq!(u["used"], 0, "{u}");
    assert_eq!(u["reserved"], 0, "{u}");
    let (_, listed) = get_json(&g, Q_KEY, "/s3/files").await;
    assert_eq!(listed["files"].as_array().unwrap().len(), 0, "{listed}");

    // Bad input gets clear errors.
    let r = c
        .post(g.url("/s3/upload"))
        .bearer_auth(A_KEY)
        .body("not a form")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (s, _) = get_json(&g, common::IMAGE_KEY, "/s3/usage").await;
    assert!(s == 401 || s == 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_api_on_the_embedded_backend() {
    the_storage_api(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_api_on_moto() {
    the_storage_api(Backend::Moto).await;
}

/// A form of these parts in this order: `("key", text)` or `("file", data)`.
fn form_of(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "kikaku-any-order-4b1e";
    let mut body = Vec::new();
    for (name, data) in parts {
        let disposition = if *name == "file" {
            "name=\"file\"; filename=\"upload.bin\"\r\nContent-Type: application/octet-stream"
                .to_string()
        } else {
            format!("name=\"{name}\"")
        };
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post_form(g: &StorageGateway, parts: &[(&str, &[u8])]) -> (u16, Value) {
    post(g, B_KEY, form_of(parts)).await
}

/// Every key the tenant's bucket lists, staging names included.
async fn listed_keys(g: &StorageGateway) -> Vec<String> {
    let (_, v) = get_json(g, B_KEY, "/s3/files?limit=1000").await;
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap().to_string())
        .collect()
}

async fn form_fields_in_any_order(backend: Backend) {
    let g = StorageGateway::start(backend);
    let small: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let large: Vec<u8> = (0..(12 * MIB) as u32).map(|i| (i % 241) as u8).collect();
    // `file` before `key`, as the seed's curl and axios snippets send it:
    // small (held until the form ends) and over one part (staged, then moved).
    for (name, data) in [("after/small.bin", &small), ("after/large.bin", &large)] {
        let (s, v) = post_form(&g, &[("file", data), ("key", name.as_bytes())]).await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["key"], name);
        assert_eq!(v["size"], data.len() as u64);
        let r = g
            .client()
            .get(g.url(&format!("/s3/files/{name}")))
            .bearer_auth(B_KEY)
            .send()
            .await
            .unwrap();
        assert!(r.bytes().await.unwrap() == data[..], "{name}");
    }
    let stored = (small.len() + large.len()) as u64;
    let (_, u) = get_json(&g, B_KEY, "/s3/usage").await;
    assert_eq!(
        (u["used"].as_u64(), u["reserved"].as_u64()),
        (Some(stored), Some(0)),
        "{u}"
    );

    // Refused forms store nothing and leave nothing charged: two files
    // (small and large first), and a bad key after a large file.
    let bad: &[&[(&str, &[u8])]] = &[
        &[("key", b"two/a.bin"), ("file", &small), ("file", &small)],
        &[("file", &large), ("file", &small), ("key", b"two/b.bin")],
        &[("key", b"two/c.bin"), ("file", &large), ("file", &small)],
        &[("file", &large), ("key", b"../escape")],
        &[("file", &small), ("key", b"a"), ("key", b"b")],
    ];
    for (i, parts) in bad.iter().enumerate() {
        let (s, v) = post_form(&g, parts).await;
        assert_eq!(s, 400, "form {i}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 10, "{v}");
    }
    let mut keys = listed_keys(&g).await;
    keys.sort();
    assert_eq!(keys, ["after/large.bin", "after/small.bin"]);
    let (_, u) = get_json(&g, B_KEY, "/s3/usage").await;
    assert_eq!(
        (u["used"].as_u64(), u["reserved"].as_u64()),
        (Some(stored), Some(0)),
        "{u}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn form_fields_in_any_order_on_the_embedded_backend() {
    form_fields_in_any_order(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn form_fields_in_any_order_on_moto() {
    form_fields_in_any_order(Backend::Moto).await;
}

/// curl over HTTP/1.1 sends `Expect: 100-continue` with any form over 1 MiB and holds the
/// body back until `100 Continue` comes (or its timeout passes: one second
/// by default, set here far above the deadline so a missing 100 fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn form_uploads_that_expect_100_continue_get_it() {
    let g = StorageGateway::start(Backend::Embedded);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("three.bin");
    std::fs::write(&file, vec![7u8; 3 * MIB]).unwrap();
    // HTTP/1.1 sends `Expect: 100-continue` for a body this large; over
    // HTTP/2 (which the TLS listener offers, and curl prefers) curl sends the
    // body at once. Both store the file.
    for (version, key) in [
        ("--http1.1", "expect/three.bin"),
        ("--http2", "expect/three-h2.bin"),
    ] {
        let out = tokio::process::Command::new("curl")
            .args([
                "-sS",
                "-v",
                version,
                "--expect100-timeout",
                "120",
                "--max-time",
                "60",
            ])
            .arg("--cacert")
            .arg(&g.ca)
            .args(["-H", &format!("Authorization: Bearer {A_KEY}")])
            .args(["-F", &format!("key={key}")])
            .arg("-F")
            .arg(format!("file=@{}", file.display()))
            .arg(g.url("/s3/upload"))
            .output()
            .await
            .expect("curl runs");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "curl failed: {stderr}");
        if version == "--http1.1" {
            assert!(stderr.contains("Expect: 100-continue"), "{stderr}");
            assert!(stderr.contains("HTTP/1.1 100 Continue"), "{stderr}");
        } else {
            assert!(stderr.contains("using HTTP/2"), "{stderr}");
        }
        let v: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["size"].as_u64(), Some(3 * MIB as u64), "{version}: {v}");
    }
}

/// A stream of `size` bytes that never exists in memory at once.
fn pattern_stream(size: usize) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let block = Bytes::from((0..MIB).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
    futures_util::stream::iter((0..size.div_ceil(MIB)).map(move |i| {
        let n = (size - i * MIB).min(MIB);
        Ok(block.slice(..n))
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_gib_streams_through_both_apis_in_bounded_memory() {
    const GIB: usize = 1 << 30;
    let g = StorageGateway::start(Backend::Embedded);
    let c = g.client();

    // Through /s3: a form whose file part is 1 GiB, sent as a stream.
    let boundary = "kikaku-1gib";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nhuge.bin\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"huge.bin\"\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let total = head.len() + GIB + tail.len();
    let body = futures_util::stream::once(async move { Ok(Bytes::from(head)) })
        .chain(pattern_stream(GIB))
        .chain(futures_util::stream::once(
            async move { Ok(Bytes::from(tail)) },
        ));
    let r = c
        .post(g.url("/s3/upload"))
        .bearer_auth(A_KEY)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header("content-length", total)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = c
        .get(g.url("/s3/files/huge.bin"))
        .bearer_auth(A_KEY)
        .send()
        .await
        .unwrap();
    let mut got = 0usize;
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        got += chunk.unwrap().len();
    }
    assert_eq!(got, GIB);
    c.delete(g.url("/s3/files/huge.bin"))
        .bearer_auth(A_KEY)
        .send()
        .await
        .unwrap();

    // Through the S3 endpoint with boto3: one streamed PutObject, one GetObject.
    g.scenario("stream_1gib");

    let rss_mib = g.gw.peak_rss_kib() / 1024;
    println!("gateway peak RSS after 2 GiB up and 2 GiB down: {rss_mib} MiB");
    assert!(rss_mib < 100, "peak RSS {rss_mib} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconcile_restates_usage_from_the_backend() {
    let mut g = StorageGateway::start(Backend::Embedded);
    let (s, _) = upload(&g, A_KEY, Some("keep.txt"), b"kept bytes").await;
    assert_eq!(s, 201);
    let (s, _) = upload(&g, A_KEY, Some("gone.bin"), &vec![1u8; 300_000]).await;
    assert_eq!(s, 201);
    // An open multipart upload: 5 MiB and 1 MiB parts, counted until it ends.
    let out = g.scenario("open_upload");
    let upload_id = out
        .lines()
        .find_map(|l| l.strip_prefix("upload "))
        .unwrap()
        .to_string();
    let (_, u) = get_json(&g, A_KEY, "/s3/usage").await;
    assert_eq!(u["used"], 300_010 + 6 * MIB as u64);

    // Stop the gateway, and lose an object and a part behind its back.
    let _ = g.gw.child.kill();
    let _ = g.gw.child.wait();
    let files = walk(&g.gw.dir.path().join("data/s3"));
    let lost: Vec<_> = files.iter().filter(|p| p.ends_with("gone%2Ebin")).collect();
    assert_eq!(lost.len(), 1, "the embedded backend keeps objects as files");
    std::fs::remove_file(lost[0]).unwrap();
    let part_two = format!(".upload_id-{upload_id}.part-2");
    let part: Vec<_> = files.iter().filter(|p| p.ends_with(&part_two)).collect();
    assert_eq!(part.len(), 1, "{part_two} among {files:?}");
    std::fs::remove_file(part[0]).unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kikaku-edge"))
        .args(["storage", "-c"])
        .arg(&g.gw.config_path)
        .args(["reconcile", "--key", A_KEY])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The object's bytes and the lost part's leave the ledger; part 1 stays.
    let before = 300_010 + 6 * MIB as u64;
    let after = 10 + 5 * MIB as u64;
    assert!(
        stdout.contains(&format!("used {before} -> {after} bytes (1 objects)")),
        "{stdout}"
    );

    g.gw = g.gw.kill9_and_restart();
    let (_, u) = get_json(&g, A_KEY, "/s3/usage").await;
    assert_eq!(u["used"], after, "{u}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The ETag the listing gives `name` (B's bucket): S3 and both backends
/// give a multipart upload's object `<md5 of part md5s>-<parts>`, a
/// PutObject's the plain MD5.
async fn listed_etag(g: &StorageGateway, name: &str) -> String {
    let (_, v) = get_json(g, B_KEY, &format!("/s3/files?prefix={name}")).await;
    v["files"][0]["etag"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn a_file_of_known_size_goes_as_one_put(backend: Backend) {
    let g = StorageGateway::start(backend);
    let data: Vec<u8> = (0..(20 * MIB + 7) as u32)
        .map(|i| (i % 239) as u8)
        .collect();
    let md5: String = {
        use md5::Digest as _;
        md5::Md5::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };

    // `key` first, a Content-Length, the file last (the portal, requests):
    // one PutObject of the predicted length, streamed.
    let (s, v) = post_form(&g, &[("key", b"known/one.bin"), ("file", &data)]).await;
    assert_eq!(
        (s, v["size"].as_u64()),
        (201, Some(data.len() as u64)),
        "{v}"
    );
    assert_eq!(listed_etag(&g, "known/one.bin").await, md5);
    let r = g
        .client()
        .get(g.url("/s3/files/known/one.bin"))
        .bearer_auth(B_KEY)
        .send()
        .await
        .unwrap();
    assert!(r.bytes().await.unwrap() == data[..]);

    // The same file with its size unknown (a chunked body, or `file` before
    // `key`) still goes up as a multipart upload, whole.
    let (ct, body) = form_of(&[("key", b"unknown/chunked.bin"), ("file", &data)]);
    let chunked = futures_util::stream::iter(
        body.chunks(MIB)
            .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let r = g
        .client()
        .post(g.url("/s3/upload"))
        .bearer_auth(B_KEY)
        .header("content-type", ct)
        .body(reqwest::Body::wrap_stream(chunked))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (s, _) = post_form(&g, &[("file", &data), ("key", b"unknown/after.bin")]).await;
    assert_eq!(s, 201);
    // (The latter is moved from a staging name by CopyObject, which leaves
    // backends free to give the copy a new ETag: only the former is read.)
    let etag = listed_etag(&g, "unknown/chunked.bin").await;
    assert!(etag.ends_with("-3"), "{etag}");

    // A field after the file: the predicted length is wrong, the PUT is
    // broken off before its last byte, and nothing is stored or charged.
    let (s, v) = post_form(
        &g,
        &[
            ("key", b"known/late.bin"),
            ("file", &data),
            ("note", b"late"),
        ],
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("last field"),
        "{v}"
    );
    let mut keys = listed_keys(&g).await;
    keys.sort();
    assert_eq!(
        keys,
        ["known/one.bin", "unknown/after.bin", "unknown/chunked.bin"]
    );
    let (_, u) = get_json(&g, B_KEY, "/s3/usage").await;
    assert_eq!(
        (u["used"].as_u64(), u["reserved"].as_u64()),
        (Some(3 * data.len() as u64), Some(0)),
        "{u}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_of_known_size_goes_as_one_put_on_the_embedded_backend() {
    a_file_of_known_size_goes_as_one_put(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_of_known_size_goes_as_one_put_on_moto() {
    a_file_of_known_size_goes_as_one_put(Backend::Moto).await;
}
