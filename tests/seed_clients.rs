//! Seed 000's client snippets, each run as printed (`tests/seed_clients/`)
//! against the shipped config: curl, the AWS CLI, boto3, Python requests,
//! the JS SDK v3 and axios + form-data. Only the placeholders are filled in,
//! with the values the portal shows (`GET /s3/credentials`).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const KEY: &str = "kikaku_s3_demo_key";

struct Seed {
    gw: Gateway,
    _data: tempfile::TempDir,
    /// Where the snippets run (their files land here).
    work: tempfile::TempDir,
    creds: Value,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

impl Seed {
    async fn start() -> Seed {
        let (gw, _sim, data) = start_shipped("conf/kikaku.yaml");
        let creds = get_json(&gw.url("/s3/credentials"), KEY).await;
        Seed {
            gw,
            _data: data,
            work: tempfile::tempdir().unwrap(),
            creds,
        }
    }

    /// The snippet with its placeholders filled in.
    fn snippet(&self, name: &str) -> String {
        let text = std::fs::read_to_string(root().join("tests/seed_clients").join(name)).unwrap();
        let c = |k: &str| self.creds[k].as_str().unwrap().to_string();
        text.replace("YOUR_BASE_URL", &self.gw.url(""))
            .replace("YOUR_S3_KEY", KEY)
            .replace("YOUR_ENDPOINT", &c("endpoint"))
            .replace("YOUR_ACCESS_KEY", &c("access_key_id"))
            .replace("YOUR_SECRET_KEY", &c("secret_access_key"))
            .replace("YOUR_REGION", &c("region"))
            .replace("YOUR_BUCKET", &c("bucket"))
    }

    fn file(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// Run `prog` on the filled-in snippet in the work directory; its stdout.
    fn run(&self, prog: &str, args: &[&str], script: &str) -> String {
        let aws = self.work.path().join(".aws");
        let out = common::tool(prog)
            .args(args)
            .arg(script)
            .current_dir(self.work.path())
            // `aws configure set` writes here, not to the machine's ~/.aws.
            .env("AWS_CONFIG_FILE", aws.join("config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", aws.join("credentials"))
            .env("NODE_PATH", root().join("tests/node/node_modules"))
            .output()
            .unwrap_or_else(|e| panic!("{prog}: {e}"));
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            out.status.success(),
            "{script}\n--- stdout\n{o}\n--- stderr\n{e}\n--- gateway\n{}",
            self.gw.stderr()
        );
        o
    }

    fn node(&self, name: &str) -> String {
        // Top-level await is not allowed in a CommonJS script: wrapped, as a
        // customer pasting it into one would.
        let body = format!(
            "(async () => {{\n{}\n}})().catch(e => {{ console.error(e); process.exit(1); }});",
            self.snippet(name)
        );
        self.run("node", &["-e"], &body)
    }

    /// The object's bytes as the gateway serves them.
    async fn download(&self, key: &str) -> (u16, Vec<u8>) {
        let r = client()
            .get(self.gw.url(&format!("/s3/files/{key}")))
            .header("authorization", bearer(KEY))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
    }
}

/// Content that is not all one byte, so a truncated or shifted copy shows.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_what_the_snippets_need() {
    let s = Seed::start().await;
    assert_eq!(s.creds["endpoint"], s.gw.url(""), "{}", s.creds);
    assert_eq!(s.creds["region"], "us-east-1");
    assert_eq!(s.creds["bucket"], "demo");
    assert_eq!(s.creds["access_key_id"], "KIKAKUDEMOACCESSKEY0");
    assert_eq!(
        s.creds["secret_access_key"],
        "kikaku-demo-secret-key-for-local-use-only"
    );
    // An image key has no storage credentials: the portal's sentence.
    let r = client()
        .get(s.gw.url("/s3/credentials"))
        .header("authorization", bearer("kikaku_demo_key"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// curl: upload with `file` before `key`, list, download, usage, delete.
#[tokio::test(flavor = "multi_thread")]
async fn curl_snippets() {
    let s = Seed::start().await;
    let body = content(3000, 7);
    std::fs::write(s.file("myfile.txt"), &body).unwrap();
    // `&limit=50` is unquoted as printed: bash runs that curl in the
    // background, so wait for it before the script ends.
    let out = s.run("bash", &["-ec"], &format!("{}\nwait", s.snippet("curl.sh")));
    // Three JSON answers (upload, listing, usage); the download went to a file.
    let answers: Vec<Value> = serde_json::Deserializer::from_str(&out)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(answers.len(), 3, "{out}");
    assert_eq!(answers[0]["key"], "folder/myfile.txt", "{out}");
    assert_eq!(answers[0]["size"], 3000, "{out}");
    // The listing ran in the background: it may print after the usage.
    let with = |field: &str| answers.iter().find(|a| a.get(field).is_some()).unwrap();
    assert_eq!(
        with("files")["files"][0]["key"],
        "folder/myfile.txt",
        "{out}"
    );
    assert_eq!(with("files")["files"][0]["size"], 3000, "{out}");
    assert_eq!(with("used")["used"], 3000, "{out}");
    assert_eq!(std::fs::read(s.file("myfile.txt")).unwrap(), body);
    assert_eq!(s.download("folder/myfile.txt").await, (200, body));

    let out = s.run("bash", &["-ec"], &s.snippet("curl_delete.sh"));
    assert!(out.contains(r#""deleted":"folder/myfile.txt""#), "{out}");
    assert_eq!(s.download("folder/myfile.txt").await.0, 404);
    let usage = get_json(&s.gw.url("/s3/usage"), KEY).await;
    assert_eq!(usage["used"], 0, "{usage}");
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_cli_snippet() {
    let s = Seed::start().await;
    let body = content(20_000, 3);
    std::fs::write(s.file("myfile.txt"), &body).unwrap();
    let out = s.run("bash", &["-ec"], &s.snippet("aws_cli.sh"));
    assert!(
        out.contains("upload: ./myfile.txt to s3://demo/myfile.txt"),
        "{out}"
    );
    assert!(
        out.contains("download: s3://demo/myfile.txt to ./myfile.txt"),
        "{out}"
    );
    assert_eq!(s.download("myfile.txt").await, (200, body));
}

#[tokio::test(flavor = "multi_thread")]
async fn boto3_snippet() {
    let s = Seed::start().await;
    let body = content(12_345, 11);
    std::fs::write(s.file("myfile.txt"), &body).unwrap();
    let out = s.run("python3", &["-c"], &s.snippet("boto3_client.py"));
    assert!(out.lines().any(|l| l == "myfile.txt 12345"), "{out}");
    assert_eq!(std::fs::read(s.file("myfile.txt")).unwrap(), body);
}

/// The client as the seed builds it (no `Config`) presigns with Signature
/// V2 for a custom endpoint; its GET and PUT URLs work with no other
/// credential, and only for what was signed.
#[tokio::test(flavor = "multi_thread")]
async fn boto3_presigned_urls_as_the_seed_builds_the_client() {
    let s = Seed::start().await;
    let client_setup: String = s
        .snippet("boto3_client.py")
        .lines()
        .take_while(|l| !l.starts_with("# Upload"))
        .map(|l| format!("{l}\n"))
        .collect();
    let script = format!(
        "{client_setup}
import requests
put = s3.generate_presigned_url('put_object', Params={{'Bucket': 'demo', 'Key': 'pre/signed.bin'}}, ExpiresIn=300)
assert 'Signature=' in put and 'X-Amz-Signature' not in put, put
r = requests.put(put, data=b'presigned body')
print('PUT', r.status_code, r.text)
get = s3.generate_presigned_url('get_object', Params={{'Bucket': 'demo', 'Key': 'pre/signed.bin'}}, ExpiresIn=300)
r = requests.get(get)
print('GET', r.status_code, r.content.decode())
r = requests.get(get.replace('pre/signed.bin', 'pre/other.bin'))
print('OTHER', r.status_code)
r = requests.put(put, data=b'x', headers={{'x-amz-copy-source': '/demo/pre/signed.bin'}})
print('ADDED', r.status_code, 'AccessDenied' in r.text or 'SignatureDoesNotMatch' in r.text)
expired = s3.generate_presigned_url('get_object', Params={{'Bucket': 'demo', 'Key': 'pre/signed.bin'}}, ExpiresIn=-10)
print('EXPIRED', requests.get(expired).status_code)
"
    );
    let out = s.run("python3", &["-c"], &script);
    assert!(out.contains("PUT 200"), "{out}");
    assert!(out.contains("GET 200 presigned body"), "{out}");
    assert!(out.contains("OTHER 403"), "{out}");
    assert!(out.contains("ADDED 403 True"), "{out}");
    assert!(out.contains("EXPIRED 403"), "{out}");
    assert_eq!(
        s.download("pre/signed.bin").await,
        (200, b"presigned body".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn python_requests_snippet() {
    let s = Seed::start().await;
    let body = content(50_000, 5);
    std::fs::write(s.file("photo.jpg"), &body).unwrap();
    let out = s.run("python3", &["-c"], &s.snippet("requests_client.py"));
    assert!(out.contains("'key': 'images/photo.jpg'"), "{out}");
    assert!(out.lines().any(|l| l == "images/photo.jpg 50000"), "{out}");
    assert_eq!(std::fs::read(s.file("downloaded.jpg")).unwrap(), body);
}

#[tokio::test(flavor = "multi_thread")]
async fn js_sdk_v3_snippet() {
    let s = Seed::start().await;
    let body = content(9_000, 9);
    std::fs::write(s.file("myfile.txt"), &body).unwrap();
    let out = s.node("sdk_v3.js");
    assert!(out.lines().any(|l| l == "myfile.txt 9000"), "{out}");
    assert_eq!(s.download("myfile.txt").await, (200, body));
}

/// axios + form-data: `file` is appended before `key`.
#[tokio::test(flavor = "multi_thread")]
async fn axios_form_data_snippet() {
    let s = Seed::start().await;
    // Over one part (8 MiB): the file streams to a staging object and is
    // moved to its key once the form has ended.
    let body = content(9 << 20, 13);
    std::fs::write(s.file("photo.jpg"), &body).unwrap();
    let out = s.node("axios_form_data.js");
    assert!(out.contains("key: 'images/photo.jpg'"), "{out}");
    assert_eq!(std::fs::read(s.file("downloaded.jpg")).unwrap(), body);
    let (status, stored) = s.download("images/photo.jpg").await;
    assert_eq!((status, stored.len()), (200, body.len()));
    assert!(stored == body);
    // Nothing else was left behind, and the ledger holds exactly the file.
    let files = get_json(&s.gw.url("/s3/files"), KEY).await;
    let keys: Vec<&str> = files["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["images/photo.jpg"], "{files}");
    let usage = get_json(&s.gw.url("/s3/usage"), KEY).await;
    assert_eq!(usage["used"], body.len() as u64, "{usage}");
}
