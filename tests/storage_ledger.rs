//! The storage byte ledger (DESIGN §4, §8): one suite, run against the
//! embedded backend, a real redis-server, and a 3-master Redis Cluster.

mod common;

use std::sync::Arc;

use kikaku_edge::state::EmbeddedState;
use kikaku_edge::state::{
    Galleries, GalleryRecord, KeyStore, LedgerSlot, OpenUpload, PresignedRecord, PresignedUrls,
    Quotas, StateStore, StorageLedger,
};
use kikaku_filters::keys::{hash_key, key_ref, S3Credential};
use kikaku_filters::{ApiKey, KeyStatus, KeyType};

fn obj(name: &str) -> LedgerSlot {
    LedgerSlot::Object(name.to_string())
}

fn part(upload: &str, n: u32) -> LedgerSlot {
    LedgerSlot::Part {
        upload_id: upload.to_string(),
        part: n,
    }
}

async fn used(s: &dyn StateStore, subject: &str) -> u64 {
    s.quota_usage(subject).await.unwrap().used
}

/// Write `size` bytes to `slot` as a handler does: reserve, then commit.
async fn write(
    s: &dyn StateStore,
    subject: &str,
    slot: &LedgerSlot,
    size: u64,
    limit: u64,
) -> bool {
    match s.storage_reserve(subject, slot, size, limit).await.unwrap() {
        Some(r) => {
            s.storage_commit(subject, r, slot, size).await.unwrap();
            true
        }
        None => false,
    }
}

async fn ledger_suite(s: Arc<dyn StateStore>) {
    let s = s.as_ref();
    let t = "s3-tenant-a";
    // Plain writes and overwrites: an overwrite costs only the difference.
    assert!(write(s, t, &obj("b/one"), 100, 1000).await);
    assert!(write(s, t, &obj("b/two"), 300, 1000).await);
    assert_eq!(used(s, t).await, 400);
    assert!(write(s, t, &obj("b/one"), 150, 1000).await);
    assert_eq!(used(s, t).await, 450);
    // Full, but rewriting an object at its own size still fits.
    assert!(write(s, t, &obj("b/three"), 550, 1000).await);
    assert!(!write(s, t, &obj("b/four"), 1, 1000).await);
    assert!(write(s, t, &obj("b/three"), 550, 1000).await);
    assert_eq!(used(s, t).await, 1000);

    // A failed write releases its reservation and bills nothing.
    let r = s
        .storage_reserve(t, &obj("b/x"), 0, 1000)
        .await
        .unwrap()
        .unwrap();
    s.storage_release(t, r).await.unwrap();
    assert_eq!(s.quota_usage(t).await.unwrap().reserved, 0);

    // Deletes give bytes back; a second delete gives nothing.
    assert_eq!(s.storage_remove(t, "b/three").await.unwrap(), 550);
    assert_eq!(s.storage_remove(t, "b/three").await.unwrap(), 0);
    assert_eq!(used(s, t).await, 450);

    // Multipart: parts count as they land; a re-sent part costs the
    // difference; completion replaces parts by the object.
    assert!(write(s, t, &part("u1", 1), 200, 1000).await);
    assert!(write(s, t, &part("u1", 2), 100, 1000).await);
    assert!(write(s, t, &part("u1", 2), 120, 1000).await);
    assert_eq!(used(s, t).await, 770);
    s.storage_complete(t, "u1", "b/big", 320).await.unwrap();
    assert_eq!(used(s, t).await, 770);
    // Completing again (a retried call) changes nothing.
    s.storage_complete(t, "u1", "b/big", 320).await.unwrap();
    assert_eq!(used(s, t).await, 770);
    assert_eq!(s.storage_remove(t, "b/big").await.unwrap(), 320);

    // Abort frees the parts.
    assert!(write(s, t, &part("u2", 1), 50, 1000).await);
    assert_eq!(s.storage_abort(t, "u2").await.unwrap(), 50);
    assert_eq!(used(s, t).await, 450);

    // Reconcile restates objects from the backend; open parts stay.
    assert!(write(s, t, &part("u3", 1), 10, 1000).await);
    let now = s
        .storage_reconcile(t, vec![("b/one".into(), 150), ("b/seen".into(), 40)])
        .await
        .unwrap();
    assert_eq!(now, 200);
    assert_eq!(used(s, t).await, 200);
    assert_eq!(s.storage_remove(t, "b/two").await.unwrap(), 0);
}

/// Open uploads are listed until they complete or abort; gallery records
/// page newest first and push the oldest out past `keep`.
async fn uploads_and_gallery(s: Arc<dyn StateStore>) {
    let s = s.as_ref();
    let t = "s3-tenant-lists";
    for (id, key) in [("u-a", "x/1"), ("u-b", "x/2")] {
        s.storage_upload_begin(
            t,
            OpenUpload {
                upload_id: id.into(),
                bucket: "b".into(),
                key: key.into(),
                initiated_ms: 1,
            },
        )
        .await
        .unwrap();
    }
    assert_eq!(s.storage_uploads(t).await.unwrap().len(), 2);
    s.storage_complete(t, "u-a", "b/x/1", 0).await.unwrap();
    s.storage_abort(t, "u-b").await.unwrap();
    assert!(s.storage_uploads(t).await.unwrap().is_empty());

    let g = "gallery-subject";
    let mut evicted_all = Vec::new();
    for i in 0..5 {
        let rec = GalleryRecord {
            id: 0,
            token: format!("{i:032x}"),
            prompt: format!("p{i}"),
            model: "seedream-4.5".into(),
            image_size: "2K".into(),
            created_at_ms: i,
        };
        let (id, evicted) = s.gallery_add(g, rec, 3).await.unwrap();
        assert_eq!(id, i as u64 + 1);
        evicted_all.extend(evicted.into_iter().map(|r| r.prompt));
    }
    assert_eq!(evicted_all, ["p0", "p1"]);
    let (page, total) = s.gallery_page(g, 1, 2).await.unwrap();
    assert_eq!(total, 3);
    assert_eq!(
        page.iter().map(|r| r.prompt.as_str()).collect::<Vec<_>>(),
        ["p4", "p3"]
    );
    let (page, _) = s.gallery_page(g, 2, 2).await.unwrap();
    assert_eq!(page[0].prompt, "p2");
    assert_eq!(page[0].id, 3);
}

/// 50 concurrent 1 MiB writes against 10 MiB: exactly 10 fit.
async fn concurrent_writes_never_overshoot(s: Arc<dyn StateStore>) {
    let t = "s3-tenant-race";
    let mib = 1 << 20;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            write(s.as_ref(), t, &obj(&format!("b/{i}")), mib, 10 * mib).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += u64::from(t.await.unwrap());
    }
    assert_eq!(ok, 10);
    assert_eq!(used(s.as_ref(), t).await, 10 * mib);
}

fn presigned(key: &str, created_at: i64, expires_at: i64) -> PresignedRecord {
    PresignedRecord {
        owner_id: "0a1b2c3d4e5f".into(),
        bucket_name: "main".into(),
        object_key: key.into(),
        method: "GET".into(),
        created_at,
        expires_at,
    }
}

/// Presigned URLs are listed while they live, newest first; a stored key
/// is found by every one of its S3 credentials, active or not (the filter
/// decides what an inactive one may do).
async fn presigned_and_credentials(s: Arc<dyn StateStore>) {
    let now = kikaku_filters::clock::now_unix();
    s.presigned_add(presigned("old", now - 100, now - 50))
        .await
        .unwrap();
    s.presigned_add(presigned("a", now, now + 60))
        .await
        .unwrap();
    s.presigned_add(presigned("b", now + 1, now + 3600))
        .await
        .unwrap();
    s.presigned_add(presigned("b", now + 1, now + 3600))
        .await
        .unwrap();
    let live: Vec<String> = s
        .presigned_list(now)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.object_key)
        .collect();
    assert_eq!(live, ["b", "a"], "the same record twice is one");
    assert_eq!(s.presigned_list(now + 61).await.unwrap().len(), 1);

    let hash = hash_key("kikaku_s3_credential_suite");
    let mut second = S3Credential::new("KKSECONDCREDENTIAL00".into(), "s".repeat(40));
    second.is_active = false;
    let key = ApiKey {
        hash,
        key_ref: key_ref(KeyType::Storage, &hash),
        key_type: KeyType::Storage,
        owner: "o".into(),
        email: String::new(),
        status: KeyStatus::Active,
        created_at: 1,
        expires_at: None,
        quota: 10,
        rate_limit_per_minute: None,
        bucket: None,
        s3: Some(S3Credential::new(
            "KKFIRSTCREDENTIAL000".into(),
            "f".repeat(40),
        )),
        more_s3: vec![second],
        account: None,
    };
    s.key_put(&key).await.unwrap();
    for id in ["KKFIRSTCREDENTIAL000", "KKSECONDCREDENTIAL00"] {
        let found = s.key_get_by_access_key(id).await.unwrap();
        assert_eq!(found.as_ref().map(|k| k.hash), Some(hash), "{id}");
    }
    let found = s
        .key_get_by_access_key("KKSECONDCREDENTIAL00")
        .await
        .unwrap()
        .unwrap();
    assert!(found.active_credential("KKSECONDCREDENTIAL00").is_none());
    assert!(found.active_credential("KKFIRSTCREDENTIAL000").is_some());
    assert!(s
        .key_get_by_access_key("KKNOSUCHCREDENTIAL00")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.journal");
    let s: Arc<dyn StateStore> = Arc::new(EmbeddedState::open(&path).unwrap());
    ledger_suite(s.clone()).await;
    concurrent_writes_never_overshoot(s.clone()).await;
    uploads_and_gallery(s.clone()).await;
    presigned_and_credentials(s.clone()).await;
    drop(s);
    // The ledger survives a reopen (replay and compaction).
    let s = EmbeddedState::open(&path).unwrap();
    assert_eq!(s.quota_usage("s3-tenant-a").await.unwrap().used, 200);
    assert_eq!(
        s.quota_usage("s3-tenant-race").await.unwrap().used,
        10 << 20
    );
    assert_eq!(s.storage_abort("s3-tenant-a", "u3").await.unwrap(), 10);
    // Gallery records and their ids survive too; the cap still holds.
    let (page, total) = s.gallery_page("gallery-subject", 1, 10).await.unwrap();
    assert_eq!((page.len(), total), (3, 3));
    let rec = GalleryRecord {
        id: 0,
        token: "f".repeat(32),
        prompt: "after".into(),
        model: "m".into(),
        image_size: "2K".into(),
        created_at_ms: 9,
    };
    assert_eq!(s.gallery_add("gallery-subject", rec, 3).await.unwrap().0, 6);
    // Live presigned URLs and the second credential survive too.
    let now = kikaku_filters::clock::now_unix();
    assert_eq!(s.presigned_list(now).await.unwrap().len(), 2);
    assert!(s
        .key_get_by_access_key("KKSECONDCREDENTIAL00")
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_ledger() {
    let server = common::redis::RedisServer::start();
    let s = tokio::task::spawn_blocking({
        let url = server.url();
        move || common::redis::store(url, vec![])
    })
    .await
    .unwrap();
    ledger_suite(s.clone()).await;
    concurrent_writes_never_overshoot(s.clone()).await;
    uploads_and_gallery(s.clone()).await;
    presigned_and_credentials(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_ledger() {
    let cluster = common::redis::RedisCluster::start();
    let s = tokio::task::spawn_blocking({
        let urls = cluster.urls();
        move || common::redis::store(String::new(), urls)
    })
    .await
    .unwrap();
    ledger_suite(s.clone()).await;
    concurrent_writes_never_overshoot(s.clone()).await;
    uploads_and_gallery(s.clone()).await;
    presigned_and_credentials(s).await;
}
