//! The management API's storage side (DESIGN §5) on the shipped offline
//! config: storage keys made through it, their S3 credentials (seed 002),
//! and the tenants' buckets and objects, used by real clients (the AWS CLI,
//! boto3) at the same time.

mod common;

use std::time::Duration;

use common::admin::{demo_admin, shipped, Shipped};
use common::*;
use serde_json::{json, Value};

/// On the shipped offline config: a storage key made through the API has
/// its bucket and S3 credential at once; the storage API and the AWS CLI
/// both work with them.
#[tokio::test(flavor = "multi_thread")]
async fn a_storage_key_made_through_the_api_works_with_the_storage_api_and_the_aws_cli() {
    let (gw, _sim, _data) = start_shipped("conf/kikaku.yaml");
    let made = {
        let resp = client()
            .post(gw.admin_url("/admin/v1/keys"))
            .header("authorization", "Bearer admin_demo_token")
            .json(&json!({"type": "storage", "owner": "Ben", "quota": "1MiB", "bucket": "photos"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        resp.json::<Value>().await.unwrap()
    };
    assert_eq!(
        (made["bucket"].as_str(), made["quota"].as_u64()),
        (Some("photos"), Some(1 << 20))
    );
    let key = made["key"].as_str().unwrap();
    assert!(key.starts_with("kikaku_s3_"), "{made}");
    let id = made["s3"]["access_key_id"].as_str().unwrap();
    let secret = made["s3"]["secret_access_key"].as_str().unwrap();
    assert_eq!((id.len(), secret.len()), (20, 40), "{made}");

    let b = "admin-test-boundary";
    let form = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\na/b.txt\r\n--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.txt\"\r\n\r\nhello\r\n--{b}--\r\n"
    );
    let up = client()
        .post(gw.url("/s3/upload"))
        .header("authorization", bearer(key))
        .header("content-type", format!("multipart/form-data; boundary={b}"))
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 201, "{}", up.text().await.unwrap());

    let out = aws(&gw.url(""), id, secret, &["s3", "ls", "s3://photos/a/"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{listing}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        listing.contains("b.txt") && listing.contains(" 5 "),
        "{listing}"
    );

    let (s, seen) = {
        let resp = client()
            .get(gw.admin_url(&format!("/admin/v1/keys/{}", made["id"].as_str().unwrap())))
            .header("authorization", "Bearer admin_demo_token")
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    };
    assert_eq!((s, seen["used"].as_u64()), (200, Some(5)), "{seen}");
    assert!(
        !seen.to_string().contains(secret),
        "the S3 secret is shown once"
    );
}

/// boto3, in a loop: how long until `list_objects_v2` on `bucket` with this
/// credential answers `want` ("ok" or an S3 error code), at most 5 s.
fn boto3_until(endpoint: &str, id: &str, secret: &str, bucket: &str, want: &str) -> Duration {
    let script = r#"
import sys, time, boto3, botocore
from botocore.config import Config
endpoint, ident, secret, bucket, want = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ident,
                  aws_secret_access_key=secret, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
start = time.time()
while time.time() - start < 5:
    try:
        s3.list_objects_v2(Bucket=bucket)
        got = "ok"
    except botocore.exceptions.ClientError as e:
        got = e.response["Error"]["Code"]
    if got == want:
        print(f"{time.time() - start:.3f}")
        sys.exit(0)
    time.sleep(0.02)
sys.exit(f"still {got}, not {want}")
"#;
    let out = tool("python3")
        .args(["-c", script, endpoint, id, secret, bucket, want])
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Duration::from_secs_f64(String::from_utf8_lossy(&out.stdout).trim().parse().unwrap())
}

fn aws_ls(endpoint: &str, id: &str, secret: &str, bucket: &str) -> std::process::Output {
    aws(
        endpoint,
        id,
        secret,
        &["s3", "ls", &format!("s3://{bucket}/")],
    )
}

/// Seed 002's credentials: a second credential of one storage key works
/// with boto3 while the first works with the AWS CLI; switching it off
/// locks its clients out within a second and leaves the first alone.
#[tokio::test(flavor = "multi_thread")]
async fn extra_credentials_on_the_embedded_backend() {
    extra_credentials_work_at_once_and_are_switched_off_alone(false).await
}

#[tokio::test(flavor = "multi_thread")]
async fn extra_credentials_on_redis() {
    extra_credentials_work_at_once_and_are_switched_off_alone(true).await
}

async fn extra_credentials_work_at_once_and_are_switched_off_alone(redis: bool) {
    let Shipped {
        gw,
        data: _data,
        _redis,
    } = shipped(redis);
    let endpoint = gw.url("");
    let (s, made) = demo_admin(
        &gw,
        "POST",
        "/keys",
        Some(json!({"type": "storage", "owner": "Cleo", "bucket": "media"})),
    )
    .await;
    assert_eq!(s, 201, "{made}");
    let key_id = made["id"].as_str().unwrap();
    let (id1, secret1) = (
        made["s3"]["access_key_id"].as_str().unwrap(),
        made["s3"]["secret_access_key"].as_str().unwrap(),
    );
    let (s, second) = demo_admin(
        &gw,
        "POST",
        "/credentials",
        Some(json!({"key_id": key_id, "user_name": "ci-runner"})),
    )
    .await;
    assert_eq!(s, 201, "{second}");
    let id2 = second["access_key"].as_str().unwrap();
    let secret2 = second["secret_key"].as_str().unwrap();
    assert_eq!(
        (second["user_name"].as_str(), second["is_active"].as_bool()),
        (Some("ci-runner"), Some(true))
    );

    // Both at once: the AWS CLI with the first, boto3 with the second.
    let cli = aws_ls(&endpoint, id1, secret1, "media");
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    boto3_until(&endpoint, id2, secret2, "media", "ok");

    let (s, listed) = demo_admin(&gw, "GET", &format!("/credentials?key_id={key_id}"), None).await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = listed["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id1, id2], "{listed}");
    assert!(
        !listed.to_string().contains(secret2),
        "the secret is shown once"
    );
    let (s, one) = demo_admin(&gw, "GET", &format!("/credentials/{id2}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(
        (one["bucket_count"].as_u64(), one["buckets"].clone()),
        (Some(1), json!(["media"]))
    );

    let (s, off) = demo_admin(
        &gw,
        "PATCH",
        &format!("/credentials/{id2}"),
        Some(json!({"is_active": false})),
    )
    .await;
    assert_eq!((s, off["is_active"].as_bool()), (200, Some(false)), "{off}");
    let locked_out = boto3_until(&endpoint, id2, secret2, "media", "InvalidAccessKeyId");
    eprintln!("a switched-off credential was refused after {locked_out:?}");
    assert!(locked_out < Duration::from_secs(1), "{locked_out:?}");
    let cli = aws_ls(&endpoint, id1, secret1, "media");
    assert!(cli.status.success(), "the first credential still works");

    // Taken, malformed, and read-only credentials.
    let (s, _) = demo_admin(
        &gw,
        "POST",
        "/credentials",
        Some(json!({"key_id": key_id, "access_key": id1})),
    )
    .await;
    assert_eq!(s, 409);
    for body in [
        json!({"key_id": key_id, "access_key": "lower-case-key-0000"}),
        json!({"key_id": key_id, "secret_key": "short"}),
        json!({"key_id": "ffffffffffff"}),
        json!({"key_id": key_id, "colour": 1}),
        json!({}),
    ] {
        let (s, v) = demo_admin(&gw, "POST", "/credentials", Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {v}");
    }
    let (s, _) = demo_admin(
        &gw,
        "PATCH",
        "/credentials/KIKAKUDEMOACCESSKEY0",
        Some(json!({"is_active": false})),
    )
    .await;
    assert_eq!(s, 409, "the config's credential is read-only");

    let (s, _) = demo_admin(&gw, "DELETE", &format!("/credentials/{id2}"), None).await;
    assert_eq!(s, 200);
    let (s, _) = demo_admin(&gw, "GET", &format!("/credentials/{id2}"), None).await;
    assert_eq!(s, 404);
    let cli = aws_ls(&endpoint, id1, secret1, "media");
    assert!(
        cli.status.success(),
        "the key and its first credential stay"
    );
}
