//! The embedded backend as a whole: durability across reopen, compaction,
//! admission, quotas, logs and keys.

use super::*;
use std::time::Duration;

use kikaku_filters::state::PendingRateLimit;
use kikaku_filters::ApiKey;

use crate::state::{
    KeyStore, LogQuery, QuotaUsage, Quotas, RateLimits, RequestLog, RequestLogs, StateError,
    StateStore,
};

#[tokio::test]
async fn hits_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.journal");
    let w = Duration::from_secs(60);
    {
        let s = EmbeddedState::open(&path).unwrap();
        for _ in 0..3 {
            assert!(s.rate_limit("rl:key:{a}", 1, 3, w).await.unwrap().allowed);
        }
        // Dropped without any shutdown step, as after kill -9.
    }
    let s = EmbeddedState::open(&path).unwrap();
    assert!(!s.rate_limit("rl:key:{a}", 1, 3, w).await.unwrap().allowed);
    assert!(s.rate_limit("rl:key:{b}", 1, 3, w).await.unwrap().allowed);
}

#[tokio::test]
async fn compaction_keeps_live_hits_as_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.journal");
    let w = Duration::from_secs(60);
    let s = EmbeddedState::open(&path).unwrap();
    let n = COMPACT_EVERY + 10;
    for _ in 0..n {
        assert!(s.rate_limit("busy", 1, u32::MAX, w).await.unwrap().allowed);
    }
    {
        let mut inner = s.inner.lock();
        // One compaction started (at COMPACT_EVERY); 10 hits came after it.
        let j = inner.journal.as_mut().unwrap();
        j.finish_compaction();
        assert_eq!(j.appended, 10);
    }
    drop(s);
    // Compaction wrote one record per millisecond run, not per hit, and
    // the runs still hold every unit.
    let text = std::fs::read_to_string(&path).unwrap();
    let units: u64 = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["n"].as_u64().unwrap_or(1)
        })
        .sum();
    assert_eq!(units, n);
    assert!(
        (text.lines().count() as u64) < n / 10,
        "{} lines",
        text.lines().count()
    );
    let s = EmbeddedState::open(&path).unwrap();
    assert!(!s.rate_limit("busy", 1, n as u32, w).await.unwrap().allowed);
    assert!(
        s.rate_limit("busy", 1, n as u32 + 1, w)
            .await
            .unwrap()
            .allowed
    );
}

#[tokio::test]
async fn admission_charges_ceiling_and_reserves_only_when_everything_allows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.journal");
    let w = Duration::from_secs(60);
    let rate = PendingRateLimit {
        bucket: "rl:key:{a}".into(),
        limit: 3,
        window: w,
    };
    let ceiling = PendingRateLimit {
        bucket: "model:{m}".into(),
        limit: 5,
        window: w,
    };
    let s = EmbeddedState::open(&path).unwrap();
    let admit = |amount: u64, quota: u64| {
        let (s, rate, ceiling) = (&s, &rate, &ceiling);
        async move {
            s.admit_within_ceiling(&ImageAdmission {
                rate: Some(rate),
                subject: "a",
                amount,
                limit: quota,
                ceiling,
                cost: amount as u32,
            })
            .await
        }
    };
    // Admitted: both hits in the journal, 4 units held.
    let a = admit(4, 10).await.unwrap();
    assert!(a.rate.unwrap().allowed && a.ceiling.unwrap().allowed);
    let r = a.reservation.expect("held");
    assert_eq!(s.quota_usage("a").await.unwrap().reserved, 4);
    assert_eq!(s.inner.lock().journal.as_ref().unwrap().appended, 2);
    // The ceiling refuses 4 more (4 + 4 > 5): nothing held, the key's hit counted.
    let a = admit(4, 10).await.unwrap();
    assert!(a.rate.unwrap().allowed);
    assert!(!a.ceiling.unwrap().allowed);
    assert_eq!(a.reservation, None);
    assert_eq!(s.quota_usage("a").await.unwrap().reserved, 4);
    // No quota room (4 held + 7 > 10): the ceiling is not charged.
    let a = admit(7, 10).await.unwrap();
    assert_eq!((a.ceiling, a.reservation), (None, None));
    assert!(
        s.rate_limit("model:{m}", 1, 5, w).await.unwrap().allowed,
        "4 charged + 1 fits"
    );
    // The key's limit (3) is spent: refused before anything else.
    let a = admit(1, 10).await.unwrap();
    assert!(!a.rate.unwrap().allowed);
    assert_eq!((a.ceiling, a.reservation), (None, None));
    s.quota_settle("a", r, 4).await.unwrap();
    drop(s);
    // What was journaled survives: 3 key hits, 5 ceiling units, 4 used.
    let s = EmbeddedState::open(&path).unwrap();
    assert!(!s.rate_limit("rl:key:{a}", 1, 3, w).await.unwrap().allowed);
    assert!(!s.rate_limit("model:{m}", 1, 5, w).await.unwrap().allowed);
    assert_eq!(s.quota_usage("a").await.unwrap().used, 4);
}

fn log(status: &str, ts: i64) -> RequestLog {
    RequestLog {
        id: 0,
        model: "seedream-4.5".into(),
        timestamp_ms: ts,
        status: status.into(),
        http_status: 200,
        response_time_ms: 100,
        images: 1,
        tokens: 16_384,
        error_message: None,
    }
}

#[tokio::test]
async fn quota_reserves_exactly_and_only_settled_usage_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.journal");
    {
        let s = EmbeddedState::open(&path).unwrap();
        let a = s.quota_reserve("k", 4, 5).await.unwrap().unwrap();
        assert!(
            s.quota_reserve("k", 2, 5).await.unwrap().is_none(),
            "4 held + 2 > 5"
        );
        let b = s.quota_reserve("k", 1, 5).await.unwrap().unwrap();
        s.quota_settle("k", a, 3).await.unwrap();
        s.quota_settle("k", a, 3).await.unwrap(); // a second settle bills nothing
        assert_eq!(
            s.quota_usage("k").await.unwrap(),
            QuotaUsage {
                used: 3,
                reserved: 1
            }
        );
        let _ = b; // in flight when the process dies
    }
    let s = EmbeddedState::open(&path).unwrap();
    assert_eq!(
        s.quota_usage("k").await.unwrap(),
        QuotaUsage {
            used: 3,
            reserved: 0
        }
    );
    let c = s.quota_reserve("k", 2, 5).await.unwrap().unwrap();
    s.quota_settle("k", c, 9).await.unwrap();
    assert_eq!(
        s.quota_usage("k").await.unwrap().used,
        5,
        "never more than reserved"
    );
}

#[tokio::test]
async fn logs_page_newest_first_and_stats_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.journal");
    {
        let s = EmbeddedState::open(&path).unwrap();
        for i in 0..5 {
            let id = s
                .log_request(
                    "k",
                    log(if i == 2 { "failed" } else { "success" }, 1_000 + i),
                )
                .await
                .unwrap();
            assert_eq!(id, i as u64 + 1);
        }
    }
    let s = EmbeddedState::open(&path).unwrap();
    let q = LogQuery {
        from_ms: 0,
        to_ms: i64::MAX,
        page: 1,
        limit: 2,
    };
    let p = s.logs("k", q).await.unwrap();
    assert_eq!(p.total, 5);
    assert_eq!(p.logs.iter().map(|l| l.id).collect::<Vec<_>>(), [5, 4]);
    let p = s.logs("k", LogQuery { page: 3, ..q }).await.unwrap();
    assert_eq!(p.logs.iter().map(|l| l.id).collect::<Vec<_>>(), [1]);
    let p = s
        .logs(
            "k",
            LogQuery {
                from_ms: 1_001,
                to_ms: 1_003,
                ..q
            },
        )
        .await
        .unwrap();
    assert_eq!((p.total, p.logs[0].id), (2, 3));
    let st = s.request_stats("k").await.unwrap();
    assert_eq!(
        (
            st.total_requests,
            st.successful_requests,
            st.failed_requests
        ),
        (5, 4, 1)
    );
    assert_eq!(st.total_response_time_ms, 500);
    assert_eq!(s.log_request("k", log("success", 2_000)).await.unwrap(), 6);
}

#[tokio::test]
async fn stored_keys_survive_any_number_of_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.journal");
    let hash = kikaku_filters::keys::hash_key("kikaku_stored");
    let key = ApiKey {
        hash,
        key_ref: kikaku_filters::keys::key_ref(kikaku_filters::KeyType::Image, &hash),
        key_type: kikaku_filters::KeyType::Image,
        owner: "o".into(),
        email: String::new(),
        status: kikaku_filters::KeyStatus::Active,
        created_at: 1,
        expires_at: None,
        quota: 5,
        rate_limit_per_minute: Some(3),
        bucket: None,
        s3: None,
        more_s3: Vec::new(),
        account: None,
    };
    EmbeddedState::open(&path)
        .unwrap()
        .key_put(&key)
        .await
        .unwrap();
    // Every open compacts: the key must be rewritten each time.
    for _ in 0..3 {
        let s = EmbeddedState::open(&path).unwrap();
        assert_eq!(s.key_get(&hash).await.unwrap().as_ref(), Some(&key));
    }
    let s = EmbeddedState::open(&path).unwrap();
    assert!(s.key_delete(&hash).await.unwrap());
    assert!(!s.key_delete(&hash).await.unwrap());
    drop(s);
    assert!(EmbeddedState::open(&path)
        .unwrap()
        .key_get(&hash)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn logs_are_capped_per_key_but_stats_keep_counting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.journal");
    {
        let s = EmbeddedState::open_with(&path, 3).unwrap();
        for i in 0..5 {
            s.log_request("k", log("success", 1_000 + i)).await.unwrap();
        }
    }
    let s = EmbeddedState::open_with(&path, 3).unwrap();
    let q = LogQuery {
        from_ms: 0,
        to_ms: i64::MAX,
        page: 1,
        limit: 10,
    };
    let p = s.logs("k", q).await.unwrap();
    assert_eq!(p.logs.iter().map(|l| l.id).collect::<Vec<_>>(), [5, 4, 3]);
    assert_eq!(s.request_stats("k").await.unwrap().total_requests, 5);
    assert_eq!(
        s.log_request("k", log("success", 2_000)).await.unwrap(),
        6,
        "ids keep counting"
    );
    drop(s);
    // Opens compact: the dropped logs must not take their counts along.
    for _ in 0..2 {
        let s = EmbeddedState::open_with(&path, 3).unwrap();
        let st = s.request_stats("k").await.unwrap();
        assert_eq!((st.total_requests, st.total_response_time_ms), (6, 600));
    }
}

#[tokio::test]
async fn torn_tail_is_dropped_and_expired_hits_are_compacted_away() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.journal");
    std::fs::write(
        &path,
        "{\"op\":\"hit\",\"b\":\"old\",\"t\":1,\"w\":1000}\n{\"op\":\"hit\",\"b\":\"x\",\"t\"",
    )
    .unwrap();
    let _s = EmbeddedState::open(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
}

#[tokio::test]
async fn corruption_in_the_middle_is_an_error_not_a_silent_reset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.journal");
    std::fs::write(
        &path,
        "garbage\n{\"op\":\"hit\",\"b\":\"x\",\"t\":1,\"w\":1}\n",
    )
    .unwrap();
    assert!(matches!(
        EmbeddedState::open(&path),
        Err(StateError::Corrupt(_))
    ));
}

#[tokio::test]
async fn compaction_keeps_hosted_contents_and_holds() {
    use crate::state::{HostedContent, HostedFiles, HostedRef};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.journal");
    let s = EmbeddedState::open(&path).unwrap();
    let content = |c: &str| HostedContent {
        hash: c.repeat(64),
        size: 4,
        content_type: "text/plain".into(),
        created_ms: 1,
    };
    s.hosted_put(content("a"), 1).await.unwrap();
    s.hosted_put(content("b"), 2).await.unwrap();
    let r = HostedRef {
        hash: "a".repeat(64),
        holder: "alice".into(),
        file_name: "a.txt".into(),
        uploaded_ms: 3,
    };
    assert!(s.hosted_hold(r.clone()).await.unwrap());
    s.inner.lock().compact(10).unwrap();
    drop(s);
    let s = EmbeddedState::open(&path).unwrap();
    assert_eq!(s.hosted_held("alice").await.unwrap(), [r]);
    let unref = s.hosted_unreferenced(2, 10).await.unwrap();
    assert_eq!(unref, [content("b")], "unreferenced since 2, as before");
    assert!(s.hosted_unreferenced(1, 10).await.unwrap().is_empty());
}
