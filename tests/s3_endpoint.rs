//! The S3-compatible endpoint with real clients (boto3, the AWS CLI) over
//! HTTPS, against the embedded backend and against moto's server: one set of
//! scenarios, two independent S3 implementations behind the gateway.

mod common;

use common::s3::{Backend, StorageGateway};

macro_rules! on_both_backends {
    ($($name:ident => $scenario:literal),* $(,)?) => {
        mod embedded {
            use super::*;
            $(#[test] fn $name() { StorageGateway::start(Backend::Embedded).scenario($scenario); })*
        }
        mod moto {
            use super::*;
            $(#[test] fn $name() { StorageGateway::start(Backend::Moto).scenario($scenario); })*
        }
    };
}

on_both_backends! {
    put_get_list_delete_with_every_payload_mode => "basic",
    multipart_64_mib_and_the_upload_calls => "multipart",
    presigned_get_put_expiry_and_other_tenants => "presigned",
    wrong_secret_skew_tampering_and_lies_store_nothing => "refusals",
    tenants_cannot_reach_each_other_by_any_path => "isolation",
    concurrent_uploads_never_exceed_the_quota => "quota",
    aws_cli_cp_ls_rm => "cli",
    reads_racing_overwrites_see_whole_versions => "overwrite_race",
    a_put_failing_its_content_md5_keeps_the_old_object => "bad_digest",
    every_amz_header_signed_region_sse_acl_and_unsigned_paths => "signing_rules",
}

/// DESIGN §8 / issue 5: three gateways on one Redis share the byte ledger —
/// 50 concurrent 1 MiB uploads spread over them against 10 MiB of quota never
/// store more than 10 MiB, and every instance reports the stored total.
#[test]
fn three_instances_on_redis_never_exceed_a_storage_quota() {
    let redis = common::redis::RedisServer::start();
    let moto = common::s3::Moto::start();
    let state = format!(
        "state: {{backend: redis, redis: {{url: '{}'}}}}",
        redis.url()
    );
    let gws: Vec<StorageGateway> = (0..3)
        .map(|_| StorageGateway::start_with(Backend::External(moto.port), &state))
        .collect();
    let out = gws[0].scenario_across("quota", &[&gws[1], &gws[2]]);
    let line = out
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("result line");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let stored = v["stored"].as_u64().unwrap();
    println!("three instances, 50 uploads of 1 MiB against 10 MiB: {v}");
    assert!(stored <= 10 << 20, "{v}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    for g in &gws {
        let usage: serde_json::Value = rt.block_on(async {
            g.client()
                .get(g.url("/s3/usage"))
                .bearer_auth(common::s3::TENANTS[2].1)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        assert_eq!(usage["used"].as_u64(), Some(stored), "{usage}");
        assert_eq!(usage["reserved"], 0, "{usage}");
    }
}

/// Issue 5: a storage key made by `kikaku-edge keys create` on Redis works
/// at once with the S3 credential it prints, and `keys suspend` shuts it out
/// of the S3 endpoint within a second.
#[test]
fn a_stored_storage_key_works_by_its_credential_and_suspends_within_a_second() {
    let redis = common::redis::RedisServer::start();
    let state = format!(
        "state: {{backend: redis, redis: {{url: '{}'}}}}",
        redis.url()
    );
    let g = StorageGateway::start_with(Backend::Embedded, &state);
    let keys = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kikaku-edge"))
            .args(["keys", "-c"])
            .arg(&g.gw.config_path)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let created = keys(&[
        "create",
        "--type",
        "storage",
        "--owner",
        "Stored",
        "--bucket",
        "stored-one",
        "--rate-limit",
        "1000",
    ]);
    let field = |name: &str| {
        created
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .to_string()
    };
    let key = created.lines().next().unwrap().to_string();
    let (id, secret) = (field("aws_access_key_id="), field("aws_secret_access_key="));
    let env = [
        ("KK_S_ID", id.as_str()),
        ("KK_S_SECRET", secret.as_str()),
        ("KK_S_BUCKET", "stored-one"),
    ];
    g.scenario_env("stored_key", &env);

    // A poller that works until the key is suspended, started first so its
    // start-up time does not count.
    let mut poller = g.scenario_spawn("suspended_soon", &env);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(poller.stdout.take().unwrap()));
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    keys(&["suspend", &key]);
    let suspended = std::time::SystemTime::now();
    let line = lines.next().expect("a result line").unwrap();
    assert!(poller.wait().unwrap().success());
    let refused_at: f64 = serde_json::from_str::<serde_json::Value>(&line).unwrap()["refused_at"]
        .as_f64()
        .unwrap();
    let since = refused_at
        - suspended
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
    println!("stored storage key refused {since:.3} s after `keys suspend`");
    assert!(since < 1.0, "{since} s");
}
