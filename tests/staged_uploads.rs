//! An upload staged as a multipart upload while it streams (a file before
//! its name, DESIGN §4) is listed with the account's multipart uploads
//! until it completes or aborts: when a kill -9 cuts it off, its parts stay
//! charged after the restart, the tenant sees the upload in
//! ListMultipartUploads, and aborting it gives the bytes back.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::uploads::{self as up, KEY};
use common::*;

const MIB: usize = 1 << 20;
const ID: &str = "KIKAKUDEMOACCESSKEY0";
const SECRET: &str = "kikaku-demo-secret-key-for-local-use-only";

#[tokio::test(flavor = "multi_thread")]
async fn parts_cut_off_by_a_kill_are_listed_and_aborting_them_refunds() {
    let data = tempfile::tempdir().unwrap();
    let (gw, _, _) = start_shipped_with("conf/kikaku.yaml", data.path(), &[]);
    // /s3/upload with the file before its key: staged under a staging name.
    let boundary = "stagedBoundary42";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.bin\"\r\n\r\n"
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let url = gw.url("/s3/upload");
    let sending = tokio::spawn(async move {
        client()
            .post(url)
            .header("authorization", bearer(KEY))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
    });
    tx.send(Ok(Bytes::from(head))).await.unwrap();
    for _ in 0..12 {
        tx.send(Ok(Bytes::from(vec![b'c'; MIB]))).await.unwrap();
    }
    // One 8 MiB part is at the backend and charged; the body stalls here.
    let start = Instant::now();
    while up::used(&gw, KEY).await < 8 * MIB as u64 {
        assert!(start.elapsed() < Duration::from_secs(20), "no part charged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::process::Command::new("kill")
        .args(["-9", &gw.pid().to_string()])
        .status();
    drop(gw);
    drop(tx);
    let _ = sending.await;

    let (gw, _, _) = start_shipped_with("conf/kikaku.yaml", data.path(), &[]);
    let charged = up::used(&gw, KEY).await;
    assert_eq!(charged, 8 * MIB as u64, "the part stays charged");
    let endpoint = gw.url("");
    let listed = aws_json(
        &endpoint,
        &["s3api", "list-multipart-uploads", "--bucket", "demo"],
    );
    let uploads = listed["Uploads"].as_array().expect("listed");
    assert_eq!(uploads.len(), 1, "{listed}");
    let key = uploads[0]["Key"].as_str().unwrap().to_string();
    let id = uploads[0]["UploadId"].as_str().unwrap().to_string();
    assert!(key.starts_with(".kikaku-staging/"), "{key}");
    let out = aws(
        &endpoint,
        ID,
        SECRET,
        &[
            "s3api",
            "abort-multipart-upload",
            "--bucket",
            "demo",
            "--key",
            &key,
            "--upload-id",
            &id,
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(up::used(&gw, KEY).await, 0, "aborting gave the bytes back");
}

fn aws_json(endpoint: &str, args: &[&str]) -> serde_json::Value {
    let out = aws(endpoint, ID, SECRET, args);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}
