//! The state contract of the upload API and key reset (DESIGN §6, §2):
//! temporary files by id, path and expiry; leases; the one-step key swap.
//! One suite, run against the embedded backend (and again after a reopen),
//! a real redis-server and a 3-master Redis Cluster.

mod common;

use std::sync::Arc;

use kikaku_edge::state::{EmbeddedState, KeyStore, StateStore, TempFiles, UploadRecord};
use kikaku_filters::keys::{hash_key, key_ref};
use kikaku_filters::{ApiKey, KeyStatus, KeyType};

fn rec(id: &str, path: &str, name: &str, expires_ms: i64) -> UploadRecord {
    UploadRecord {
        file_id: id.into(),
        subject: "subj".into(),
        tenant: "0a1b2c3d4e5f".into(),
        bucket: "demo".into(),
        object: format!("kikaku-uploads/{path}/{name}"),
        upload_path: path.into(),
        file_name: name.into(),
        original_name: "o.txt".into(),
        size: 10,
        mime_type: "text/plain".into(),
        uploaded_ms: 1,
        expires_ms,
    }
}

async fn files_suite(s: &dyn StateStore) {
    assert_eq!(
        s.upload_put(rec("file_a", "p", "a.txt", 100))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.upload_put(rec("file_b", "p", "b.txt", 50)).await.unwrap(),
        None
    );
    assert_eq!(
        s.upload_get("file_a").await.unwrap().unwrap().file_name,
        "a.txt"
    );
    let at = s.upload_at("0a1b2c3d4e5f/p/b.txt").await.unwrap().unwrap();
    assert_eq!(at.file_id, "file_b");
    // The same path again: the new file takes it, the old one is returned and gone.
    let old = s
        .upload_put(rec("file_c", "p", "a.txt", 300))
        .await
        .unwrap();
    assert_eq!(old.map(|r| r.file_id).as_deref(), Some("file_a"));
    assert_eq!(s.upload_get("file_a").await.unwrap(), None);
    // A retry of the same put changes nothing.
    assert_eq!(
        s.upload_put(rec("file_c", "p", "a.txt", 300))
            .await
            .unwrap(),
        None
    );
    let ids = |v: Vec<UploadRecord>| v.into_iter().map(|r| r.file_id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.uploads_expired(49, 10).await.unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(ids(s.uploads_expired(50, 10).await.unwrap()), ["file_b"]);
    assert_eq!(
        ids(s.uploads_expired(1000, 10).await.unwrap()),
        ["file_b", "file_c"]
    );
    assert_eq!(ids(s.uploads_expired(1000, 1).await.unwrap()), ["file_b"]);
    let b = s.upload_get("file_b").await.unwrap().unwrap();
    assert!(s.upload_remove(&b).await.unwrap());
    assert!(!s.upload_remove(&b).await.unwrap(), "once");
    assert_eq!(s.upload_at("0a1b2c3d4e5f/p/b.txt").await.unwrap(), None);
    // Removing a file that lost its path leaves the path to its new owner.
    s.upload_put(rec("file_d", "q", "x.txt", 400))
        .await
        .unwrap();
    let d = s.upload_get("file_d").await.unwrap().unwrap();
    s.upload_put(rec("file_e", "q", "x.txt", 500))
        .await
        .unwrap();
    assert!(!s.upload_remove(&d).await.unwrap());
    let e = s.upload_at("0a1b2c3d4e5f/q/x.txt").await.unwrap().unwrap();
    assert_eq!(e.file_id, "file_e");
}

async fn lease_suite(s: &dyn StateStore) {
    assert!(s.lease_take("job", "one", 60_000).await.unwrap());
    assert!(!s.lease_take("job", "two", 60_000).await.unwrap(), "held");
    assert!(
        s.lease_take("job", "one", 60_000).await.unwrap(),
        "renewed by its holder"
    );
    s.lease_drop("job", "two").await.unwrap();
    assert!(
        !s.lease_take("job", "two", 60_000).await.unwrap(),
        "only the holder drops it"
    );
    s.lease_drop("job", "one").await.unwrap();
    assert!(s.lease_take("job", "two", 200).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        s.lease_take("job", "one", 60_000).await.unwrap(),
        "a lapsed lease is free"
    );
}

fn key(secret: &str) -> ApiKey {
    let hash = hash_key(secret);
    ApiKey {
        hash,
        key_ref: key_ref(KeyType::Storage, &hash),
        key_type: KeyType::Storage,
        owner: "o".into(),
        email: String::new(),
        status: KeyStatus::Active,
        created_at: 0,
        expires_at: None,
        quota: 1,
        rate_limit_per_minute: None,
        bucket: None,
        s3: Some(kikaku_filters::keys::S3Credential::new(
            "KKROTATECREDENTIAL00".into(),
            "r".repeat(40),
        )),
        more_s3: Vec::new(),
        account: None,
    }
}

async fn rotate_suite(s: &dyn StateStore) {
    let old = key("kikaku_s3_rotate_me");
    s.key_put(&old).await.unwrap();
    let (secret, new) = old.rotated();
    assert_eq!(
        (new.subject(), new.tenant_id()),
        (old.subject(), old.tenant_id())
    );
    assert_ne!(new.id(), old.id());
    assert!(s.key_rotate(&old.hash, &new).await.unwrap());
    assert_eq!(s.key_get(&old.hash).await.unwrap(), None);
    assert_eq!(
        s.key_get(&hash_key(&secret)).await.unwrap().as_ref(),
        Some(&new)
    );
    let by_cred = s
        .key_get_by_access_key("KKROTATECREDENTIAL00")
        .await
        .unwrap();
    assert_eq!(
        by_cred.map(|k| k.hash),
        Some(new.hash),
        "the credential follows"
    );
    // A second reset of the old key finds it gone and makes no second key.
    let (_, other) = old.rotated();
    assert!(!s.key_rotate(&old.hash, &other).await.unwrap());
    assert_eq!(s.key_get(&other.hash).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_files_leases_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.journal");
    let s: Arc<dyn StateStore> = Arc::new(EmbeddedState::open(&path).unwrap());
    files_suite(s.as_ref()).await;
    lease_suite(s.as_ref()).await;
    rotate_suite(s.as_ref()).await;
    drop(s);
    let s = EmbeddedState::open(&path).unwrap();
    let ids: Vec<String> = s
        .uploads_expired(i64::MAX, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.file_id)
        .collect();
    assert_eq!(ids, ["file_c", "file_e"], "the files survive a reopen");
    assert!(s.upload_at("0a1b2c3d4e5f/q/x.txt").await.unwrap().is_some());
    assert!(s
        .key_get_by_access_key("KKROTATECREDENTIAL00")
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_files_leases_and_rotation() {
    let server = common::redis::RedisServer::start();
    let url = server.url();
    let s = tokio::task::spawn_blocking(move || common::redis::store(url, vec![]))
        .await
        .unwrap();
    files_suite(s.as_ref()).await;
    lease_suite(s.as_ref()).await;
    rotate_suite(s.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_cluster_files_leases_and_rotation() {
    let cluster = common::redis::RedisCluster::start();
    let urls = cluster.urls();
    let s = tokio::task::spawn_blocking(move || common::redis::store(String::new(), urls))
        .await
        .unwrap();
    files_suite(s.as_ref()).await;
    lease_suite(s.as_ref()).await;
    rotate_suite(s.as_ref()).await;
}
