//! The Redis backend: many gateway instances share exact rate limits,
//! quotas and request logs (DESIGN §8).
//!
//! - Every check-and-update is one server-side Lua script (atomic), using
//!   Redis's own clock so all instances agree on time.
//! - Key names carry hash tags (`kikaku:{subject}:...`, buckets as
//!   `rl:scope:{hash}`), so the scripts' keys share a slot on Redis Cluster.
//! - Redis I/O runs on a small runtime of its own: connection drivers never
//!   depend on which of Pingora's runtimes first touched them.
//! - Unreachable Redis: quota operations fail (the caller answers 503, nothing
//!   billed); rate limits fail closed or fall back to a per-instance limiter,
//!   as configured.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kikaku_filters::state::SlidingLog;
use parking_lot::Mutex;
use rand::Rng;
use redis::{IntoConnectionInfo, RedisResult};

mod files;
mod gallery;
mod hosted;
mod keys;
mod ledger;
mod logs;
mod presigned;
mod quotas;
mod rate;
mod scripts;

use logs::LogEntry;

pub use crate::config::{Fallback, RedisConfig};
use scripts::Scripts;

use super::contract::admit_in_turns;
use super::{Admission, ImageAdmission, RequestLog, Reservation, StateError, StateStore};

#[derive(Clone)]
enum Conn {
    Single(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

pub struct RedisState {
    /// Always `Some` until dropped (taken out to shut it down without blocking).
    rt: Option<tokio::runtime::Runtime>,
    conn: Conn,
    cfg: RedisConfig,
    /// Request logs kept per key (newest first).
    logs_per_key: u64,
    scripts: Arc<Scripts>,
    /// Per-instance limiter used while Redis is away (policy `local`).
    local: Mutex<HashMap<String, SlidingLog>>,
}

/// A fresh id for one logical call, the same for its retry.
fn call_id() -> String {
    format!("{:016x}", rand::thread_rng().gen::<u64>())
}

fn unavailable(e: redis::RedisError) -> StateError {
    StateError::Unavailable(format!("redis: {e}"))
}

fn key(subject: &str, what: &str) -> String {
    format!("kikaku:{{{subject}}}:{what}")
}

impl RedisState {
    pub fn connect(cfg: RedisConfig, logs_per_key: u64) -> Result<RedisState, StateError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("redis-io")
            .enable_all()
            .build()
            .map_err(|e| StateError::Unavailable(e.to_string()))?;
        let timeout = Duration::from_millis(cfg.timeout_ms);
        // Small request/response scripts: Nagle's algorithm against delayed
        // ACKs would add milliseconds to every call.
        let info = |url: &str| {
            url.into_connection_info().map(|i| {
                i.set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true))
            })
        };
        let conn = rt.block_on(async {
            if cfg.cluster.is_empty() {
                let client = redis::Client::open(info(&cfg.url).map_err(unavailable)?)
                    .map_err(unavailable)?;
                let mc = redis::aio::ConnectionManagerConfig::new()
                    .set_response_timeout(Some(timeout))
                    .set_connection_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let cm = client
                    .get_connection_manager_with_config(mc)
                    .await
                    .map_err(unavailable)?;
                Ok::<_, StateError>(Conn::Single(cm))
            } else {
                let nodes = cfg
                    .cluster
                    .iter()
                    .map(|u| info(u))
                    .collect::<RedisResult<Vec<_>>>()
                    .map_err(unavailable)?;
                let client = redis::cluster::ClusterClient::builder(nodes)
                    .response_timeout(timeout)
                    .connection_timeout(timeout)
                    .build()
                    .map_err(unavailable)?;
                Ok(Conn::Cluster(
                    client.get_async_connection().await.map_err(unavailable)?,
                ))
            }
        })?;
        Ok(RedisState {
            rt: Some(rt),
            conn,
            cfg,
            logs_per_key: logs_per_key.max(1),
            scripts: Arc::new(Scripts::new()),
            local: Mutex::new(HashMap::new()),
        })
    }

    /// Run one Redis operation on the Redis runtime, bounded by the timeout.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(Conn, Arc<Scripts>) -> Fut,
        Fut: Future<Output = RedisResult<T>> + Send + 'static,
    {
        let fut = op(self.conn.clone(), self.scripts.clone());
        let timeout = Duration::from_millis(self.cfg.timeout_ms.max(1));
        let handle = self
            .rt
            .as_ref()
            .expect("the runtime lives as long as the state")
            .spawn(async move { tokio::time::timeout(timeout, fut).await });
        match handle.await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(unavailable(e)),
            Ok(Err(_)) => Err(StateError::Unavailable("redis: timed out".into())),
            Err(e) => Err(StateError::Unavailable(format!("redis task: {e}"))),
        }
    }
}

/// A runtime may not be dropped (blocking) inside another: let it go in the
/// background, so the state can be dropped anywhere.
impl Drop for RedisState {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A failure of the connection rather than of the command: the connection
/// was found dead (Redis restarted, failed over) or could not be made. The
/// manager has begun a fresh connection by then; the call goes once more on
/// it. A timeout is not retried: the command may still be running.
fn connection_failed(e: &redis::RedisError) -> bool {
    (e.is_io_error() || e.is_unrecoverable_error()) && !e.is_timeout()
}

/// `$call` (an awaited Redis call), once more when the connection failed.
/// Every script is idempotent (reservation, settle and call ids), so the
/// one retry can never count twice, even when the first attempt ran and
/// only its reply was lost.
macro_rules! once_more {
    ($call:expr) => {
        match $call {
            Err(e) if connection_failed(&e) => {
                log::info!("redis: {e}; once more on a fresh connection");
                $call
            }
            r => r,
        }
    };
}

impl Conn {
    async fn invoke<T: redis::FromRedisValue>(
        self,
        inv: redis::ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        match self {
            Conn::Single(mut c) => once_more!(inv.invoke_async(&mut c).await),
            Conn::Cluster(mut c) => once_more!(inv.invoke_async(&mut c).await),
        }
    }

    async fn query<T: redis::FromRedisValue>(self, cmd: redis::Cmd) -> RedisResult<T> {
        match self {
            Conn::Single(mut c) => once_more!(cmd.query_async(&mut c).await),
            Conn::Cluster(mut c) => once_more!(cmd.query_async(&mut c).await),
        }
    }

    /// Commands on one key, in one round trip (not atomic: each one is
    /// idempotent on its own).
    async fn query_pipe<T: redis::FromRedisValue>(self, pipe: redis::Pipeline) -> RedisResult<T> {
        match self {
            Conn::Single(mut c) => once_more!(pipe.query_async(&mut c).await),
            Conn::Cluster(mut c) => once_more!(pipe.query_async(&mut c).await),
        }
    }
}

impl RedisState {
    /// The records of hash `records` whose members of sorted set `index`
    /// score at or below `max_score`, lowest first, at most `limit`: two
    /// round trips on one slot (the upload expiry and the file host's
    /// unreferenced content).
    async fn due_records(
        &self,
        index: &'static str,
        records: &'static str,
        max_score: i64,
        limit: usize,
    ) -> Result<Vec<String>, StateError> {
        let ids: Vec<String> = self
            .run(move |c, _| async move {
                c.query(
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(index)
                        .arg("-inf")
                        .arg(max_score)
                        .arg("LIMIT")
                        .arg(0)
                        .arg(limit)
                        .clone(),
                )
                .await
            })
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<Option<String>> = self
            .run(move |c, _| async move {
                c.query(redis::cmd("HMGET").arg(records).arg(ids).clone())
                    .await
            })
            .await?;
        Ok(raw.into_iter().flatten().collect())
    }
}

#[async_trait]
impl StateStore for RedisState {
    async fn admit_within_ceiling(
        &self,
        asked: &ImageAdmission<'_>,
    ) -> Result<Admission, StateError> {
        match asked.rate {
            Some(rate) if self.cfg.cluster.is_empty() => self.admit_in_one_call(rate, asked).await,
            _ => admit_in_turns(self, asked).await,
        }
    }

    async fn ready(&self) -> bool {
        self.run(|c, _| async move { c.query::<String>(redis::cmd("PING")).await })
            .await
            .is_ok()
    }

    async fn settle_and_log(
        &self,
        subject: &str,
        reservation: Reservation,
        used: u64,
        log: RequestLog,
    ) -> Result<u64, StateError> {
        let settle = self.settlement(subject, reservation, used);
        let entry = LogEntry::new(subject, log, self.logs_per_key)?;
        self.run(move |c, s| async move {
            let mut inv = s.settle_log.prepare_invoke();
            settle.add_to(&mut inv);
            entry.add_to(&mut inv);
            c.invoke::<u64>(inv).await
        })
        .await
    }

    fn backend_name(&self) -> &'static str {
        "redis"
    }
}
