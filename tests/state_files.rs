//! The state contract of the upload API and key reset (DESIGN §6, §2):
//! temporary files by id, path and expiry; leases; the one-step key swap;
//! the file host's contents and holds.
//! One suite, run against the embedded backend (and again after a reopen),
//! a real redis-server and a 3-master Redis Cluster.

mod common;

use std::sync::Arc;

use kikaku_edge::state::{
    EmbeddedState, HostedContent, HostedRef, KeyStore, StateStore, TempFiles, UploadRecord,
};
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

fn content(c: char, size: u64, created_ms: i64) -> HostedContent {
    HostedContent {
        hash: c.to_string().repeat(64),
        size,
        content_type: "image/png".into(),
        created_ms,
    }
}

fn hold(c: char, holder: &str, uploaded_ms: i64) -> HostedRef {
    HostedRef {
        hash: c.to_string().repeat(64),
        holder: holder.into(),
        file_name: format!("{c}.png"),
        uploaded_ms,
    }
}

fn hashes(v: Vec<HostedContent>) -> Vec<char> {
    v.iter().map(|c| c.hash.chars().next().unwrap()).collect()
}

/// Leaves `b` held by alice and `c` unreferenced since 60.
async fn hosted_suite(s: &dyn StateStore) {
    let a = "a".repeat(64);
    s.hosted_put(content('a', 5, 10), 10).await.unwrap();
    assert_eq!(
        s.hosted_get(&a).await.unwrap(),
        Some((content('a', 5, 10), 0))
    );
    assert_eq!(hashes(s.hosted_unreferenced(10, 10).await.unwrap()), ['a']);
    assert!(s.hosted_unreferenced(9, 10).await.unwrap().is_empty());
    // Recorded once: a second put changes nothing.
    s.hosted_put(content('a', 99, 11), 11).await.unwrap();
    assert_eq!(s.hosted_get(&a).await.unwrap().unwrap().0.size, 5);

    assert!(s.hosted_hold(hold('a', "alice", 12)).await.unwrap());
    assert!(
        !s.hosted_hold(hold('a', "alice", 13)).await.unwrap(),
        "held once"
    );
    assert!(s.hosted_hold(hold('a', "bob", 14)).await.unwrap());
    assert_eq!(s.hosted_get(&a).await.unwrap().unwrap().1, 2);
    assert!(s
        .hosted_unreferenced(i64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(
        s.hosted_hold(hold('z', "alice", 1)).await.is_err(),
        "a hold needs its content"
    );
    s.hosted_put(content('b', 7, 20), 20).await.unwrap();
    assert!(s.hosted_hold(hold('b', "alice", 20)).await.unwrap());
    let held: Vec<HostedRef> = s.hosted_held("alice").await.unwrap();
    assert_eq!(held, [hold('b', "alice", 20), hold('a', "alice", 12)]);

    assert_eq!(s.hosted_release(&a, "carol", 30).await.unwrap(), None);
    assert_eq!(s.hosted_release(&a, "alice", 30).await.unwrap(), Some(1));
    assert_eq!(s.hosted_release(&a, "alice", 31).await.unwrap(), None);
    assert!(s
        .hosted_unreferenced(i64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.hosted_release(&a, "bob", 40).await.unwrap(), Some(0));
    assert!(s.hosted_unreferenced(39, 10).await.unwrap().is_empty());
    assert_eq!(hashes(s.hosted_unreferenced(40, 10).await.unwrap()), ['a']);
    assert!(s.hosted_held("bob").await.unwrap().is_empty());

    assert!(
        !s.hosted_forget(&"b".repeat(64)).await.unwrap(),
        "alice holds b"
    );
    assert!(s.hosted_forget(&a).await.unwrap());
    assert!(!s.hosted_forget(&a).await.unwrap());
    assert_eq!(s.hosted_get(&a).await.unwrap(), None);
    assert!(s
        .hosted_unreferenced(i64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    s.hosted_put(content('c', 3, 60), 60).await.unwrap();
}

async fn hosted_after_reopen(s: &dyn StateStore) {
    assert_eq!(
        s.hosted_held("alice").await.unwrap(),
        [hold('b', "alice", 20)]
    );
    assert_eq!(s.hosted_get(&"b".repeat(64)).await.unwrap().unwrap().1, 1);
    assert!(s.hosted_unreferenced(59, 10).await.unwrap().is_empty());
    assert_eq!(hashes(s.hosted_unreferenced(60, 10).await.unwrap()), ['c']);
    assert_eq!(s.hosted_get(&"a".repeat(64)).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_files_leases_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.journal");
    let s: Arc<dyn StateStore> = Arc::new(EmbeddedState::open(&path).unwrap());
    files_suite(s.as_ref()).await;
    lease_suite(s.as_ref()).await;
    rotate_suite(s.as_ref()).await;
    hosted_suite(s.as_ref()).await;
    drop(s);
    let s = EmbeddedState::open(&path).unwrap();
    hosted_after_reopen(&s).await;
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
    hosted_suite(s.as_ref()).await;
    hosted_after_reopen(s.as_ref()).await;
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
    hosted_suite(s.as_ref()).await;
    hosted_after_reopen(s.as_ref()).await;
}
