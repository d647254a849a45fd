//! Calls to the upload API (seed 003) on the shipped offline config.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use serde_json::Value;

use super::{bearer, client, start_shipped_with, Gateway};

/// The shipped storage key.
pub const KEY: &str = "kikaku_s3_demo_key";

/// The shipped offline config, steered by `env` (`KIKAKU_UPLOAD_TTL`, ...).
pub struct Uploads {
    pub gw: Gateway,
    pub data: tempfile::TempDir,
}

pub fn start(env: &[(&str, String)]) -> Uploads {
    let data = tempfile::tempdir().unwrap();
    let (gw, _, _) = start_shipped_with("conf/kikaku.yaml", data.path(), env);
    Uploads { gw, data }
}

/// One form field: name, filename (a file part), content type, bytes.
pub struct Part<'a> {
    pub name: &'a str,
    pub filename: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub data: &'a [u8],
}

pub fn text<'a>(name: &'a str, value: &'a str) -> Part<'a> {
    Part {
        name,
        filename: None,
        content_type: None,
        data: value.as_bytes(),
    }
}

pub fn file<'a>(filename: &'a str, content_type: &'a str, data: &'a [u8]) -> Part<'a> {
    Part {
        name: "file",
        filename: Some(filename),
        content_type: Some(content_type),
        data,
    }
}

/// A multipart/form-data body of `parts`, in order: content type and body.
pub fn form(parts: &[Part]) -> (String, Vec<u8>) {
    let boundary = "kikakuTestBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disp = format!("Content-Disposition: form-data; name=\"{}\"", p.name);
        if let Some(f) = p.filename {
            disp.push_str(&format!("; filename=\"{f}\""));
        }
        body.extend_from_slice(disp.as_bytes());
        body.extend_from_slice(b"\r\n");
        if let Some(ct) = p.content_type {
            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(p.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// `POST path` with a multipart form of `parts`, with `key` as the bearer
/// when there is one.
pub async fn post_form(
    gw: &Gateway,
    path: &str,
    key: Option<&str>,
    parts: &[Part<'_>],
) -> reqwest::Response {
    let (ct, body) = form(parts);
    let mut req = client()
        .post(gw.url(path))
        .header("content-type", ct)
        .body(body);
    if let Some(k) = key {
        req = req.header("authorization", bearer(k));
    }
    req.send().await.unwrap()
}

/// `POST /api/file-stream-upload` with this form; status and JSON.
pub async fn stream(gw: &Gateway, key: &str, parts: &[Part<'_>]) -> (u16, Value) {
    answer(post_form(gw, "/api/file-stream-upload", Some(key), parts).await).await
}

/// Store `keep.txt` of `n` bytes through the storage API (`/s3/upload`):
/// bytes of the key that never expire.
pub async fn keep(gw: &Gateway, key: &str, n: usize) {
    let data = vec![b'k'; n];
    let resp = post_form(
        gw,
        "/s3/upload",
        Some(key),
        &[file("keep.txt", "text/plain", &data)],
    )
    .await;
    assert_eq!(resp.status(), 201);
}

/// `POST <path>` with a JSON body; status and JSON.
pub async fn post_json(gw: &Gateway, path: &str, key: &str, body: &Value) -> (u16, Value) {
    let resp = client()
        .post(gw.url(path))
        .header("authorization", bearer(key))
        .json(body)
        .send()
        .await
        .unwrap();
    answer(resp).await
}

/// Status and JSON; the envelope's `code` always equals the status.
pub async fn answer(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(
        v["code"], status,
        "the envelope's code is the HTTP status: {v}"
    );
    assert_eq!(v["success"], status == 200, "{v}");
    (status, v)
}

/// The key's storage usage in bytes, as the management API shows it (no
/// rate limit, unlike `/s3/usage`, so tests may poll it).
pub async fn used(gw: &Gateway, key: &str) -> u64 {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(key.as_bytes());
    let id: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
    let (status, v) = super::admin::demo_admin(gw, "GET", &format!("/keys/{id}"), None).await;
    assert_eq!(status, 200, "{v}");
    v["used"]
        .as_u64()
        .unwrap_or_else(|| panic!("no usage: {v}"))
}

/// GET a URL without a key: status, headers, body.
pub async fn fetch(
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    (status, h, resp.bytes().await.unwrap().to_vec())
}

/// A small JPEG-looking file (its magic bytes are JPEG's).
pub const JPEG: &[u8] = b"\xff\xd8\xff\xe0\0\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0fake-jpeg-body";

/// The allowed origin on 127.0.0.5: `/file.jpg`, `/redirect?to=URL`,
/// `/chain/N` (N redirects, then the file), `/big` (2 MB, with a length),
/// `/big-chunked` (2 MB, no length), `/bytes/N` (N bytes, streamed),
/// `/stall` (never answers).
pub fn origin() -> u16 {
    let l = TcpListener::bind("127.0.0.5:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            std::thread::spawn(move || serve(conn, port));
        }
    });
    port
}

fn serve(mut conn: TcpStream, port: u16) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
    }
    let redirect = |to: &str| {
        format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    };
    if let Some(to) = path.strip_prefix("/redirect?to=") {
        let _ = conn.write_all(redirect(to).as_bytes());
    } else if let Some(n) = path.strip_prefix("/chain/") {
        let n: u32 = n.parse().unwrap();
        let to = if n <= 1 {
            format!("http://127.0.0.5:{port}/file.jpg")
        } else {
            format!("http://127.0.0.5:{port}/chain/{}", n - 1)
        };
        let _ = conn.write_all(redirect(&to).as_bytes());
    } else if path == "/file.jpg" {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", JPEG.len());
        let _ = conn.write_all(head.as_bytes());
        let _ = conn.write_all(JPEG);
    } else if path == "/big" {
        let body = vec![b'b'; 2_000_000];
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = conn.write_all(head.as_bytes());
        let _ = conn.write_all(&body);
    } else if path == "/big-chunked" {
        let _ = conn.write_all(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        );
        let chunk = vec![b'c'; 100_000];
        for _ in 0..20 {
            if conn
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .is_err()
                || conn.write_all(&chunk).is_err()
                || conn.write_all(b"\r\n").is_err()
            {
                return;
            }
        }
        let _ = conn.write_all(b"0\r\n\r\n");
    } else if let Some(n) = path.strip_prefix("/bytes/") {
        // n bytes, streamed 1 MiB at a time.
        let n: usize = n.parse().unwrap();
        let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n");
        let _ = conn.write_all(head.as_bytes());
        let chunk = vec![b'x'; 1 << 20];
        let mut left = n;
        while left > 0 {
            let k = left.min(chunk.len());
            if conn.write_all(&chunk[..k]).is_err() {
                return;
            }
            left -= k;
        }
    } else if path == "/stall" {
        std::thread::sleep(Duration::from_secs(20));
    } else {
        let _ = conn
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
}
