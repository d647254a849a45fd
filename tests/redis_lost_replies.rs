//! A Redis call whose reply is lost (the connection dies after Redis ran
//! the command) is sent once more on a fresh connection (issue 14). Every
//! script is idempotent, so that retry never counts twice: checked here for
//! each state operation, through a TCP proxy in front of a real
//! redis-server that swallows one reply and cuts the connection.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kikaku_edge::state::{GalleryRecord, LedgerSlot, LogQuery, RequestLog, StateStore};
use kikaku_edge::state::{RedisConfig, RedisState};
use kikaku_filters::state::PendingRateLimit;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Pipes clients to Redis; while `armed`, the next reply Redis sends is
/// thrown away and both connections are closed (Redis did run the command).
struct LossyProxy {
    port: u16,
    armed: Arc<AtomicUsize>,
    swallowed: Arc<AtomicUsize>,
}

impl LossyProxy {
    async fn start(redis_port: u16) -> LossyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (armed, swallowed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (a, s) = (armed.clone(), swallowed.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(pipe(client, redis_port, a.clone(), s.clone()));
            }
        });
        LossyProxy {
            port,
            armed,
            swallowed,
        }
    }

    /// Lose the reply to the next command, and check that one was lost.
    async fn lose_next_reply<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        let before = self.swallowed.load(Ordering::SeqCst);
        self.armed.store(1, Ordering::SeqCst);
        let out = call.await;
        assert_eq!(
            self.swallowed.load(Ordering::SeqCst),
            before + 1,
            "the proxy lost a reply"
        );
        out
    }
}

async fn pipe(client: TcpStream, redis_port: u16, armed: Arc<AtomicUsize>, lost: Arc<AtomicUsize>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", redis_port)).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if armed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |a| a.checked_sub(1))
            .is_ok()
        {
            lost.fetch_add(1, Ordering::SeqCst);
            break; // the reply is gone, and so is the connection
        }
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    up.abort();
}

fn log(status: &str) -> RequestLog {
    RequestLog {
        id: 0,
        model: "seedream-4.0".into(),
        timestamp_ms: 1_700_000_000_000,
        status: status.into(),
        http_status: if status == "success" { 200 } else { 503 },
        response_time_ms: 5,
        images: 1,
        tokens: 0,
        error_message: None,
    }
}

fn all_logs() -> LogQuery {
    LogQuery {
        from_ms: 0,
        to_ms: i64::MAX,
        page: 1,
        limit: 100,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_reply_is_retried_and_never_counted_twice() {
    let redis = common::redis::RedisServer::start();
    let proxy = LossyProxy::start(redis.port).await;
    let url = format!("redis://127.0.0.1:{}", proxy.port);
    let s: Arc<dyn StateStore> = tokio::task::spawn_blocking(move || {
        Arc::new(
            RedisState::connect(
                RedisConfig {
                    url,
                    cluster: vec![],
                    timeout_ms: 2000,
                    rate_limit_when_unavailable: Default::default(),
                    reservation_ttl_seconds: 600,
                },
                100,
            )
            .unwrap(),
        ) as Arc<dyn StateStore>
    })
    .await
    .unwrap();
    let window = Duration::from_secs(60);
    // Every script loaded first, so a lost reply is a script that ran.
    let warm = "warm-up";
    s.rate_limit("rl:warm", 1, 100, window).await.unwrap();
    let r = s.quota_reserve(warm, 1, 100).await.unwrap().unwrap();
    s.settle_and_log(warm, r, 1, log("success")).await.unwrap();
    s.quota_settle(warm, r, 1).await.unwrap();
    s.quota_refund(warm, r, 1).await.unwrap();
    s.log_request(warm, log("failed")).await.unwrap();
    let rate = |bucket: &str| PendingRateLimit {
        bucket: bucket.into(),
        limit: 5,
        window,
    };
    s.admit_and_reserve(&rate("rl:warm2"), warm, 1, 100)
        .await
        .unwrap();
    s.quota_usage(warm).await.unwrap();
    let rec = GalleryRecord {
        id: 0,
        token: "a".repeat(32),
        prompt: "p".into(),
        model: "m".into(),
        image_size: "1K".into(),
        created_at_ms: 1,
    };
    s.gallery_add(warm, rec.clone(), 10).await.unwrap();
    let slot = LedgerSlot::Object("b/warm".into());
    let r = s
        .storage_reserve(warm, &slot, 1, 100)
        .await
        .unwrap()
        .unwrap();
    s.storage_commit(warm, r, &slot, 1).await.unwrap();
    s.storage_remove(warm, "b/warm").await.unwrap();

    // Rate limit: the lost admission is found again, not counted twice.
    let d = proxy
        .lose_next_reply(s.rate_limit("rl:a", 1, 5, window))
        .await
        .unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 4, "one admission, not two");
    for _ in 0..4 {
        assert!(s.rate_limit("rl:a", 1, 5, window).await.unwrap().allowed);
    }
    assert!(!s.rate_limit("rl:a", 1, 5, window).await.unwrap().allowed);

    // Quota reservation: held once (held twice, 6 + 6 would not fit in 10).
    let t = "tenant";
    let r = proxy
        .lose_next_reply(s.quota_reserve(t, 6, 10))
        .await
        .unwrap()
        .expect("reserved");
    assert_eq!(s.quota_usage(t).await.unwrap().reserved, 6);
    // Settle with its log: billed once, logged once.
    proxy
        .lose_next_reply(s.settle_and_log(t, r, 3, log("success")))
        .await
        .unwrap();
    let u = s.quota_usage(t).await.unwrap();
    assert_eq!((u.used, u.reserved), (3, 0));
    assert_eq!(s.logs(t, all_logs()).await.unwrap().total, 1);
    // Refund: given back once.
    proxy
        .lose_next_reply(s.quota_refund(t, r, 2))
        .await
        .unwrap();
    s.quota_refund(t, r, 2).await.unwrap(); // asked again: still once
    assert_eq!(s.quota_usage(t).await.unwrap().used, 1);
    // A log of its own: one line, one count.
    proxy
        .lose_next_reply(s.log_request(t, log("failed")))
        .await
        .unwrap();
    let stats = s.request_stats(t).await.unwrap();
    assert_eq!(
        (
            stats.total_requests,
            stats.successful_requests,
            stats.failed_requests
        ),
        (2, 1, 1)
    );
    assert_eq!(s.logs(t, all_logs()).await.unwrap().total, 2);

    // Rate limit and reservation in one script: admitted and held once
    // (1 used + 5 held twice would not fit in 10).
    let (d, held) = proxy
        .lose_next_reply(s.admit_and_reserve(&rate("rl:b"), t, 5, 10))
        .await
        .unwrap();
    assert!(d.allowed && held.is_some(), "{d:?} {held:?}");
    assert_eq!(d.remaining, 4);
    assert_eq!(s.quota_usage(t).await.unwrap().reserved, 5);

    // Gallery: one record.
    proxy
        .lose_next_reply(s.gallery_add(t, rec, 10))
        .await
        .unwrap();
    assert_eq!(s.gallery_page(t, 1, 10).await.unwrap().1, 1);

    // Storage: the reservation is held once, the commit bills once.
    let slot = LedgerSlot::Object("b/one".into());
    let r = proxy
        .lose_next_reply(s.storage_reserve("s3-t", &slot, 600, 1000))
        .await
        .unwrap()
        .expect("fits");
    assert_eq!(r.amount, 600);
    assert_eq!(s.quota_usage("s3-t").await.unwrap().reserved, 600);
    proxy
        .lose_next_reply(s.storage_commit("s3-t", r, &slot, 600))
        .await
        .unwrap();
    let u = s.quota_usage("s3-t").await.unwrap();
    assert_eq!((u.used, u.reserved), (600, 0));
    proxy
        .lose_next_reply(s.storage_remove("s3-t", "b/one"))
        .await
        .unwrap();
    assert_eq!(s.quota_usage("s3-t").await.unwrap().used, 0);
}
