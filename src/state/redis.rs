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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use kikaku_filters::context::PendingRateLimit;
use kikaku_filters::state::SlidingLog;
use parking_lot::Mutex;
use rand::Rng;
use redis::{IntoConnectionInfo, RedisResult, Script};

use kikaku_filters::keys::hex;
use kikaku_filters::ApiKey;

pub use crate::config::{Fallback, RedisConfig};

use super::{
    Galleries, GalleryRecord, KeyStore, LedgerSlot, LogPage, LogQuery, OpenUpload, QuotaUsage,
    Quotas, RateDecision, RateLimits, RequestLog, RequestLogs, RequestStats, Reservation,
    StateError, StateStore, StorageLedger,
};


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

struct Scripts {
    rate: Script,
    reserve: Script,
    settle: Script,
    refund: Script,
    usage: Script,
    log: Script,
    settle_log: Script,
    admit_reserve: Script,
    ledger: LedgerScripts,
    gallery: Script,
}

/// The storage byte ledger: objects in `kikaku:{s}:objects` (object →
/// bytes), parts of open uploads in `kikaku:{s}:mpu:<upload>` (part →
/// bytes), open uploads in `kikaku:{s}:mpus`. Usage is the quota hash's
/// `used`, moved by every change.
struct LedgerScripts {
    reserve: Script,
    commit: Script,
    remove: Script,
    complete: Script,
    abort: Script,
    reconcile: Script,
}

/// Lua: `used = max(0, used + delta)` on KEYS[1].
/// (Zero is skipped: Lua writes `-0`, which HINCRBY refuses.)
const SHIFT_USED: &str = "local function shift(delta)
  if delta == 0 then return end
  local u = redis.call('HINCRBY', KEYS[1], 'used', string.format('%d', delta))
  if u < 0 then redis.call('HSET', KEYS[1], 'used', 0) end
end
local function sum(hash)
  local t = 0
  for _, v in ipairs(redis.call('HVALS', hash)) do t = t + tonumber(v) end
  return t
end
";

impl LedgerScripts {
    fn new() -> LedgerScripts {
        LedgerScripts {
            // KEYS quota, held, slot hash; ARGV field, amount, limit, id, ttl_ms.
            // A retry (its first reply lost) finds its own hold.
            reserve: Script::new(&format!(
                "{NOW}local mine = redis.call('HGET', KEYS[2], ARGV[4])
if mine then return tonumber(string.match(mine, '^(%d+):')) end
local used = tonumber(redis.call('HGET', KEYS[1], 'used') or '0')
local held = 0
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local amount, exp = string.match(all[i + 1], '^(%d+):(%d+)$')
  if tonumber(exp) <= now then redis.call('HDEL', KEYS[2], all[i]) else held = held + tonumber(amount) end
end
local old = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
local need = math.max(0, tonumber(ARGV[2]) - old)
if used + held + need > tonumber(ARGV[3]) then return -1 end
redis.call('HSET', KEYS[2], ARGV[4], need .. ':' .. (now + tonumber(ARGV[5])))
return need"
            )),
            // KEYS quota, held, slot hash, uploads set; ARGV id, field, size, upload ('' for objects).
            commit: Script::new(&format!(
                "{SHIFT_USED}redis.call('HDEL', KEYS[2], ARGV[1])
local old = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
shift(tonumber(ARGV[3]) - old)
if ARGV[4] ~= '' then redis.call('SADD', KEYS[4], ARGV[4]) end
return 1"
            )),
            // KEYS quota, objects; ARGV object. Returns the bytes freed.
            remove: Script::new(&format!(
                "{SHIFT_USED}local old = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
redis.call('HDEL', KEYS[2], ARGV[1])
shift(-old)
return old"
            )),
            // KEYS quota, parts, objects, uploads, open uploads; ARGV upload, object, size.
            complete: Script::new(&format!(
                "{SHIFT_USED}local parts = sum(KEYS[2])
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
local old = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
shift(tonumber(ARGV[3]) - parts - old)
return 1"
            )),
            // KEYS quota, parts, uploads, open uploads; ARGV upload. Returns the bytes freed.
            abort: Script::new(&format!(
                "{SHIFT_USED}local parts = sum(KEYS[2])
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
shift(-parts)
return parts"
            )),
            // KEYS quota, objects; ARGV object, size, object, size, ...
            reconcile: Script::new(&format!(
                "{SHIFT_USED}local old = sum(KEYS[2])
redis.call('DEL', KEYS[2])
local new = 0
for i = 1, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  new = new + tonumber(ARGV[i + 1])
end
shift(new - old)
return tonumber(redis.call('HGET', KEYS[1], 'used') or '0')"
            )),
        }
    }
}

/// Settle reservation `id` (in hash `held`) to `used` on hash `quota`:
/// bills at most the reserved amount, once. The `done` marker remembers what
/// was billed (`billed` or, settled with its log, `billed:log id`), so a
/// repeat (after a lost reply) returns the same answer.
const SETTLE: &str = "local function settle(quota, held, done, id, used, ttl)
  local d = redis.call('GET', done)
  if d then return tonumber(string.match(d, '^(%d+)')) end
  local v = redis.call('HGET', held, id)
  if not v then return -1 end
  redis.call('HDEL', held, id)
  local billed = math.min(tonumber(string.match(v, '^(%d+):')), tonumber(used))
  if billed > 0 then redis.call('HINCRBY', quota, 'used', billed) end
  redis.call('SET', done, billed, 'PX', tonumber(ttl))
  return billed
end
";

/// Push a request log (JSON with `"id":0` first; the id is spliced in),
/// keep the newest `keep`, count it in `stats`. Returns the id.
const LOG: &str = "local function log(list, seq, stats, json, ok, ms, keep)
  local id = redis.call('INCR', seq)
  redis.call('LPUSH', list, '{\"id\":' .. id .. string.sub(json, 8))
  redis.call('LTRIM', list, 0, tonumber(keep) - 1)
  redis.call('HINCRBY', stats, 'total', 1)
  if ok == '1' then redis.call('HINCRBY', stats, 'ok', 1) else redis.call('HINCRBY', stats, 'failed', 1) end
  redis.call('HINCRBY', stats, 'ms', tonumber(ms))
  return id
end
";

/// How long a call's marker (`logged:`, `galadd:`) outlives it: a retry
/// comes within the call's own timeout, so a minute is plenty.
const MARKER_TTL_MS: u64 = 60_000;

/// A fresh id for one logical call, the same for its retry.
fn call_id() -> String {
    format!("{:016x}", rand::thread_rng().gen::<u64>())
}

/// `now` in ms from Redis's clock, at the top of every script.
const NOW: &str = "local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            // KEYS[1] zset of admitted units; ARGV window_ms, limit, cost, member id.
            rate: Script::new(&format!(
                "{NOW}local window = tonumber(ARGV[1]); local limit = tonumber(ARGV[2]); local cost = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local held = redis.call('ZCARD', KEYS[1])
local allowed = 0
if cost > 0 and redis.call('ZSCORE', KEYS[1], ARGV[4] .. ':1') then
  allowed = 1 -- a retry of a call that was admitted (its reply lost)
elseif held + cost <= limit then
  for i = 1, cost do redis.call('ZADD', KEYS[1], now, ARGV[4] .. ':' .. i) end
  redis.call('PEXPIRE', KEYS[1], window)
  held = held + cost
  allowed = 1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local reset = 0
if oldest[2] then reset = tonumber(oldest[2]) + window - now end
return {{allowed, held, reset}}"
            )),
            // KEYS[1] quota hash (used), KEYS[2] held hash (id -> amount:expiry),
            // only reservations in flight; ARGV amount, limit, id, ttl_ms.
            // A retry (its first reply lost) finds its own reservation.
            reserve: Script::new(&format!(
                "{NOW}if redis.call('HEXISTS', KEYS[2], ARGV[3]) == 1 then return 1 end
local used = tonumber(redis.call('HGET', KEYS[1], 'used') or '0')
local held = 0
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local amount, exp = string.match(all[i + 1], '^(%d+):(%d+)$')
  if tonumber(exp) <= now then redis.call('HDEL', KEYS[2], all[i]) else held = held + tonumber(amount) end
end
local amount = tonumber(ARGV[1])
if used + held + amount > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[2], ARGV[3], amount .. ':' .. (now + tonumber(ARGV[4])))
return 1"
            )),
            // KEYS[1] quota, KEYS[2] held, KEYS[3] this reservation's done
            // marker; ARGV id, used, ttl_ms.
            settle: Script::new(&format!(
                "{SETTLE}return settle(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3])"
            )),
            // KEYS[1] quota, KEYS[2] this reservation's refund marker;
            // ARGV amount, ttl_ms. Once per reservation, however often asked.
            refund: Script::new(
                "if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', tonumber(ARGV[2])) then return 0 end
local u = redis.call('HINCRBY', KEYS[1], 'used', -tonumber(ARGV[1]))
if u < 0 then redis.call('HSET', KEYS[1], 'used', 0) end
return 1",
            ),
            usage: Script::new(&format!(
                "{NOW}local used = tonumber(redis.call('HGET', KEYS[1], 'used') or '0')
local held = 0
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do
  local amount, exp = string.match(v, '^(%d+):(%d+)$')
  if tonumber(exp) > now then held = held + tonumber(amount) end
end
return {{used, held}}"
            )),
            // KEYS[1] log list, KEYS[2] id counter, KEYS[3] stats hash,
            // KEYS[4] this call's marker; ARGV json with \"id\":0 first,
            // success (1/0), response ms, keep. A retry (its first reply
            // lost) finds the marker and logs nothing twice.
            log: Script::new(&format!(
                "{LOG}local prior = redis.call('GET', KEYS[4])
if prior then return tonumber(prior) end
local id = log(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
redis.call('SET', KEYS[4], id, 'PX', {MARKER_TTL_MS})
return id"
            )),
            // Both of the above in one round trip: KEYS quota, held, done,
            // log list, id counter, stats; ARGV id, used, ttl_ms, then the
            // log's four. Returns the log id. The done marker keeps the log
            // id too, so a repeat neither bills nor logs twice.
            settle_log: Script::new(&format!(
                "{SETTLE}{LOG}local d = redis.call('GET', KEYS[3])
if d and string.match(d, ':(%d+)$') then return tonumber(string.match(d, ':(%d+)$')) end
local billed = settle(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3])
local id = log(KEYS[4], KEYS[5], KEYS[6], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
redis.call('SET', KEYS[3], math.max(billed, 0) .. ':' .. id, 'PX', tonumber(ARGV[3]))
return id"
            )),
            // The rate script, then (only when admitted) the reserve script,
            // as one: KEYS rl zset, quota, held (one hash tag: the subject);
            // ARGV window_ms, limit, member, amount, quota limit, id, ttl_ms.
            // Returns {allowed, held, reset, reserved (1/0)}.
            admit_reserve: Script::new(&format!(
                "{NOW}local window = tonumber(ARGV[1]); local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
local reserved = 0
-- A retry (its first reply lost) finds its own admission and reservation.
local again = redis.call('ZSCORE', KEYS[1], ARGV[3])
if again and redis.call('HEXISTS', KEYS[3], ARGV[6]) == 1 then
  allowed = 1
  reserved = 1
elseif again or count + 1 <= limit then
  if not again then
    redis.call('ZADD', KEYS[1], now, ARGV[3])
    redis.call('PEXPIRE', KEYS[1], window)
    count = count + 1
  end
  allowed = 1
  local used = tonumber(redis.call('HGET', KEYS[2], 'used') or '0')
  local held = 0
  local all = redis.call('HGETALL', KEYS[3])
  for i = 1, #all, 2 do
    local amount, exp = string.match(all[i + 1], '^(%d+):(%d+)$')
    if tonumber(exp) <= now then redis.call('HDEL', KEYS[3], all[i]) else held = held + tonumber(amount) end
  end
  local amount = tonumber(ARGV[4])
  if used + held + amount <= tonumber(ARGV[5]) then
    redis.call('HSET', KEYS[3], ARGV[6], amount .. ':' .. (now + tonumber(ARGV[7])))
    reserved = 1
  end
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local reset = 0
if oldest[2] then reset = tonumber(oldest[2]) + window - now end
return {{allowed, count, reset, reserved}}"
            )),
            ledger: LedgerScripts::new(),
            // KEYS[1] gallery list (newest first), KEYS[2] id counter,
            // KEYS[3] this call's marker; ARGV json with \"id\":0 first,
            // keep. Returns the id, then the records pushed out; a retry
            // (its first reply lost) adds nothing and returns the id alone.
            gallery: Script::new(&format!(
                "local prior = redis.call('GET', KEYS[3])
if prior then return {{prior}} end
local id = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[3], id, 'PX', {MARKER_TTL_MS})
local entry = '{{\"id\":' .. id .. string.sub(ARGV[1], 8)
redis.call('LPUSH', KEYS[1], entry)
local keep = tonumber(ARGV[2])
local out = redis.call('LRANGE', KEYS[1], keep, -1)
redis.call('LTRIM', KEYS[1], 0, keep - 1)
table.insert(out, 1, tostring(id))
return out"
            )),
        }
    }
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
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[async_trait]
impl RateLimits for RedisState {
    async fn rate_limit(
        &self,
        bucket: &str,
        cost: u32,
        limit: u32,
        window: Duration,
    ) -> Result<RateDecision, StateError> {
        let (k, window_ms) = (format!("kikaku:{bucket}"), window.as_millis() as u64);
        let member = format!("{:016x}", rand::thread_rng().gen::<u64>());
        let result = self
            .run(move |c, s| async move {
                let mut inv = s.rate.prepare_invoke();
                inv.key(k).arg(window_ms).arg(limit).arg(cost).arg(member);
                c.invoke::<(u32, u64, i64)>(inv).await
            })
            .await;
        match result {
            Ok((allowed, held, reset)) => Ok(RateDecision {
                allowed: allowed == 1,
                limit,
                remaining: u64::from(limit).saturating_sub(held) as u32,
                reset_after: Duration::from_millis(reset.max(0) as u64),
            }),
            Err(e) if self.cfg.rate_limit_when_unavailable == Fallback::Local => {
                log::warn!("{e}; rate limiting locally on this instance");
                let mut local = self.local.lock();
                Ok(local.entry(bucket.to_string()).or_default().admit(
                    now_ms(),
                    cost,
                    limit,
                    window_ms,
                ))
            }
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Quotas for RedisState {
    async fn quota_reserve(
        &self,
        subject: &str,
        amount: u64,
        limit: u64,
    ) -> Result<Option<Reservation>, StateError> {
        let id: u64 = rand::thread_rng().gen();
        let (q, h) = (key(subject, "quota"), key(subject, "held"));
        let ttl = self.cfg.reservation_ttl_seconds * 1000;
        let ok: i64 = self
            .run(move |c, s| async move {
                let mut inv = s.reserve.prepare_invoke();
                inv.key(q).key(h).arg(amount).arg(limit).arg(id).arg(ttl);
                c.invoke(inv).await
            })
            .await?;
        Ok((ok == 1).then_some(Reservation { id, amount }))
    }

    async fn quota_settle(
        &self,
        subject: &str,
        reservation: Reservation,
        used: u64,
    ) -> Result<(), StateError> {
        let settle = self.settlement(subject, reservation, used);
        self.run(move |c, s| async move {
            let mut inv = s.settle.prepare_invoke();
            settle.add_to(&mut inv);
            c.invoke::<i64>(inv).await
        })
        .await
        .map(|_| ())
    }

    async fn quota_refund(
        &self,
        subject: &str,
        reservation: Reservation,
        amount: u64,
    ) -> Result<(), StateError> {
        let (q, mark) = (
            key(subject, "quota"),
            key(subject, &format!("refunded:{}", reservation.id)),
        );
        let ttl = self.cfg.reservation_ttl_seconds * 1000;
        self.run(move |c, s| async move {
            let mut inv = s.refund.prepare_invoke();
            inv.key(q).key(mark).arg(amount).arg(ttl);
            c.invoke::<i64>(inv).await
        })
        .await
        .map(|_| ())
    }

    async fn admit_and_reserve(
        &self,
        rate: &PendingRateLimit,
        subject: &str,
        amount: u64,
        limit: u64,
    ) -> Result<(RateDecision, Option<Reservation>), StateError> {
        let rl = format!("kikaku:{}", rate.bucket);
        let (q, h) = (key(subject, "quota"), key(subject, "held"));
        let window_ms = rate.window.as_millis() as u64;
        let (rate_limit, id) = (rate.limit, rand::thread_rng().gen::<u64>());
        let member = format!("{id:016x}");
        let ttl = self.cfg.reservation_ttl_seconds * 1000;
        let (allowed, held, reset, reserved): (u32, u64, i64, u32) = self
            .run(move |c, s| async move {
                let mut inv = s.admit_reserve.prepare_invoke();
                inv.key(rl).key(q).key(h);
                inv.arg(window_ms)
                    .arg(rate_limit)
                    .arg(member)
                    .arg(amount)
                    .arg(limit)
                    .arg(id)
                    .arg(ttl);
                c.invoke(inv).await
            })
            .await?;
        let decision = RateDecision {
            allowed: allowed == 1,
            limit: rate.limit,
            remaining: u64::from(rate.limit).saturating_sub(held) as u32,
            reset_after: Duration::from_millis(reset.max(0) as u64),
        };
        Ok((
            decision,
            (reserved == 1).then_some(Reservation { id, amount }),
        ))
    }

    async fn quota_usage(&self, subject: &str) -> Result<QuotaUsage, StateError> {
        let (q, h) = (key(subject, "quota"), key(subject, "held"));
        let (used, reserved): (u64, u64) = self
            .run(move |c, s| async move {
                let mut inv = s.usage.prepare_invoke();
                inv.key(q).key(h);
                c.invoke(inv).await
            })
            .await?;
        Ok(QuotaUsage { used, reserved })
    }
}

/// The hash a ledger slot lives in, and its field.
fn slot_keys(subject: &str, slot: &LedgerSlot) -> (String, String, String) {
    match slot {
        LedgerSlot::Object(o) => (key(subject, "objects"), o.clone(), String::new()),
        LedgerSlot::Part { upload_id, part } => (
            key(subject, &format!("mpu:{upload_id}")),
            part.to_string(),
            upload_id.clone(),
        ),
    }
}

#[async_trait]
impl StorageLedger for RedisState {
    async fn storage_reserve(
        &self,
        subject: &str,
        slot: &LedgerSlot,
        amount: u64,
        limit: u64,
    ) -> Result<Option<Reservation>, StateError> {
        let id: u64 = rand::thread_rng().gen();
        let (q, h) = (key(subject, "quota"), key(subject, "held"));
        let (hash, field, _) = slot_keys(subject, slot);
        let ttl = self.cfg.reservation_ttl_seconds * 1000;
        let need: i64 = self
            .run(move |c, s| async move {
                let mut inv = s.ledger.reserve.prepare_invoke();
                inv.key(q).key(h).key(hash);
                inv.arg(field).arg(amount).arg(limit).arg(id).arg(ttl);
                c.invoke(inv).await
            })
            .await?;
        Ok((need >= 0).then_some(Reservation {
            id,
            amount: need as u64,
        }))
    }

    async fn storage_commit(
        &self,
        subject: &str,
        reservation: Reservation,
        slot: &LedgerSlot,
        size: u64,
    ) -> Result<(), StateError> {
        let (q, h, up) = (
            key(subject, "quota"),
            key(subject, "held"),
            key(subject, "mpus"),
        );
        let (hash, field, upload) = slot_keys(subject, slot);
        self.run(move |c, s| async move {
            let mut inv = s.ledger.commit.prepare_invoke();
            inv.key(q).key(h).key(hash).key(up);
            inv.arg(reservation.id).arg(field).arg(size).arg(upload);
            c.invoke::<i64>(inv).await
        })
        .await
        .map(|_| ())
    }

    async fn storage_release(
        &self,
        subject: &str,
        reservation: Reservation,
    ) -> Result<(), StateError> {
        let h = key(subject, "held");
        self.run(move |c, _| async move {
            c.query::<i64>(redis::cmd("HDEL").arg(h).arg(reservation.id).clone())
                .await
        })
        .await
        .map(|_| ())
    }

    async fn storage_remove(&self, subject: &str, object: &str) -> Result<u64, StateError> {
        let (q, o, object) = (
            key(subject, "quota"),
            key(subject, "objects"),
            object.to_string(),
        );
        self.run(move |c, s| async move {
            let mut inv = s.ledger.remove.prepare_invoke();
            inv.key(q).key(o).arg(object);
            c.invoke::<u64>(inv).await
        })
        .await
    }

    async fn storage_complete(
        &self,
        subject: &str,
        upload_id: &str,
        object: &str,
        size: u64,
    ) -> Result<(), StateError> {
        let keys = [
            key(subject, "quota"),
            key(subject, &format!("mpu:{upload_id}")),
            key(subject, "objects"),
            key(subject, "mpus"),
            key(subject, "uploads"),
        ];
        let (u, o) = (upload_id.to_string(), object.to_string());
        self.run(move |c, s| async move {
            let mut inv = s.ledger.complete.prepare_invoke();
            for k in keys {
                inv.key(k);
            }
            inv.arg(u).arg(o).arg(size);
            c.invoke::<i64>(inv).await
        })
        .await
        .map(|_| ())
    }

    async fn storage_abort(&self, subject: &str, upload_id: &str) -> Result<u64, StateError> {
        let keys = [
            key(subject, "quota"),
            key(subject, &format!("mpu:{upload_id}")),
            key(subject, "mpus"),
            key(subject, "uploads"),
        ];
        let u = upload_id.to_string();
        self.run(move |c, s| async move {
            let mut inv = s.ledger.abort.prepare_invoke();
            for k in keys {
                inv.key(k);
            }
            inv.arg(u);
            c.invoke::<u64>(inv).await
        })
        .await
    }

    async fn storage_upload_begin(
        &self,
        subject: &str,
        upload: OpenUpload,
    ) -> Result<(), StateError> {
        let k = key(subject, "uploads");
        let id = upload.upload_id.clone();
        let json =
            serde_json::to_string(&upload).map_err(|e| StateError::Corrupt(e.to_string()))?;
        self.run(move |c, _| async move {
            c.query::<i64>(redis::cmd("HSET").arg(k).arg(id).arg(json).clone())
                .await
        })
        .await
        .map(|_| ())
    }

    async fn storage_uploads(&self, subject: &str) -> Result<Vec<OpenUpload>, StateError> {
        let k = key(subject, "uploads");
        let raw: Vec<String> = self
            .run(move |c, _| async move { c.query(redis::cmd("HVALS").arg(k).clone()).await })
            .await?;
        let mut ups: Vec<OpenUpload> = raw
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect();
        ups.sort_by_key(|u| u.initiated_ms);
        Ok(ups)
    }

    async fn storage_reconcile(
        &self,
        subject: &str,
        objects: Vec<(String, u64)>,
    ) -> Result<u64, StateError> {
        let (q, o) = (key(subject, "quota"), key(subject, "objects"));
        self.run(move |c, s| async move {
            let mut inv = s.ledger.reconcile.prepare_invoke();
            inv.key(q).key(o);
            for (name, size) in objects {
                inv.arg(name).arg(size);
            }
            c.invoke::<u64>(inv).await
        })
        .await
    }
}

#[async_trait]
impl Galleries for RedisState {
    async fn gallery_add(
        &self,
        subject: &str,
        mut record: GalleryRecord,
        keep: u64,
    ) -> Result<(u64, Vec<GalleryRecord>), StateError> {
        record.id = 0;
        let json =
            serde_json::to_string(&record).map_err(|e| StateError::Corrupt(e.to_string()))?;
        debug_assert!(json.starts_with("{\"id\":0,"));
        let (l, seq) = (key(subject, "gallery"), key(subject, "galseq"));
        let mark = key(subject, &format!("galadd:{}", call_id()));
        let keep = keep.max(1);
        let out: Vec<String> = self
            .run(move |c, s| async move {
                let mut inv = s.gallery.prepare_invoke();
                inv.key(l).key(seq).key(mark).arg(json).arg(keep);
                c.invoke(inv).await
            })
            .await?;
        let id = out
            .first()
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| StateError::Corrupt("gallery id".into()))?;
        let evicted = out[1..]
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect();
        Ok((id, evicted))
    }

    async fn gallery_page(
        &self,
        subject: &str,
        page: u64,
        limit: u64,
    ) -> Result<(Vec<GalleryRecord>, u64), StateError> {
        let l = key(subject, "gallery");
        let start = page.saturating_sub(1) * limit;
        let stop = start + limit.max(1) - 1;
        let (raw, total): (Vec<String>, u64) = self
            .run(move |c, _| async move {
                let raw: Vec<String> = c
                    .clone()
                    .query(redis::cmd("LRANGE").arg(&l).arg(start).arg(stop).clone())
                    .await?;
                let total: u64 = c.query(redis::cmd("LLEN").arg(&l).clone()).await?;
                Ok((raw, total))
            })
            .await?;
        Ok((
            raw.iter()
                .filter_map(|r| serde_json::from_str(r).ok())
                .collect(),
            total,
        ))
    }
}

#[async_trait]
impl RequestLogs for RedisState {
    async fn log_request(&self, subject: &str, log: RequestLog) -> Result<u64, StateError> {
        let entry = LogEntry::new(subject, log, self.logs_per_key)?;
        let mark = key(subject, &format!("logged:{}", call_id()));
        self.run(move |c, s| async move {
            let mut inv = s.log.prepare_invoke();
            entry.add_to(&mut inv);
            inv.key(mark);
            c.invoke::<u64>(inv).await
        })
        .await
    }

    async fn logs(&self, subject: &str, q: LogQuery) -> Result<LogPage, StateError> {
        let l = key(subject, "logs");
        let raw: Vec<String> = self
            .run(move |c, _| async move {
                c.query(redis::cmd("LRANGE").arg(l).arg(0).arg(-1).clone())
                    .await
            })
            .await?;
        // LPUSH keeps the list newest first.
        let parsed: Vec<RequestLog> = raw
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect();
        Ok(q.apply(parsed.iter()))
    }

    async fn request_stats(&self, subject: &str) -> Result<RequestStats, StateError> {
        let st = key(subject, "stats");
        let m: HashMap<String, u64> = self
            .run(move |c, _| async move { c.query(redis::cmd("HGETALL").arg(st).clone()).await })
            .await?;
        let get = |k: &str| m.get(k).copied().unwrap_or(0);
        Ok(RequestStats {
            total_requests: get("total"),
            successful_requests: get("ok"),
            failed_requests: get("failed"),
            total_response_time_ms: get("ms"),
        })
    }
}

/// Stored keys: one hash, field = key hash (hex), value = the record as JSON.
const KEYS: &str = "kikaku:keys";
/// S3 access key id → key hash (hex), for the S3 endpoint's lookups.
const ACCESS_KEYS: &str = "kikaku:keys:s3";

#[async_trait]
impl KeyStore for RedisState {
    async fn key_get(&self, hash: &[u8; 32]) -> Result<Option<ApiKey>, StateError> {
        let field = hex(hash);
        let raw: Option<String> = self
            .run(move |c, _| async move {
                c.query(redis::cmd("HGET").arg(KEYS).arg(field).clone())
                    .await
            })
            .await?;
        raw.map(|r| {
            serde_json::from_str(&r).map_err(|e| StateError::Corrupt(format!("stored key: {e}")))
        })
        .transpose()
    }

    async fn key_put(&self, key: &ApiKey) -> Result<(), StateError> {
        let (field, json) = (
            hex(&key.hash),
            serde_json::to_string(key).map_err(|e| StateError::Corrupt(e.to_string()))?,
        );
        // The access-key index first: a lookup always re-checks the record
        // it points at, so an index entry without (or ahead of) its key is harmless.
        if let Some(cred) = &key.s3 {
            let (id, f) = (cred.access_key_id.clone(), field.clone());
            self.run(move |c, _| async move {
                c.query::<i64>(redis::cmd("HSET").arg(ACCESS_KEYS).arg(id).arg(f).clone())
                    .await
            })
            .await?;
        }
        self.run(move |c, _| async move {
            c.query::<i64>(redis::cmd("HSET").arg(KEYS).arg(field).arg(json).clone())
                .await
        })
        .await
        .map(|_| ())
    }

    async fn key_get_by_access_key(&self, id: &str) -> Result<Option<ApiKey>, StateError> {
        let ak = id.to_string();
        let field: Option<String> = self
            .run(move |c, _| async move {
                c.query(redis::cmd("HGET").arg(ACCESS_KEYS).arg(ak).clone())
                    .await
            })
            .await?;
        let Some(hash) = field.as_deref().and_then(kikaku_filters::keys::parse_hex32) else {
            return Ok(None);
        };
        Ok(self
            .key_get(&hash)
            .await?
            .filter(|k| k.s3.as_ref().is_some_and(|c| c.access_key_id == id)))
    }

    async fn key_delete(&self, hash: &[u8; 32]) -> Result<bool, StateError> {
        let field = hex(hash);
        let n: i64 = self
            .run(move |c, _| async move {
                c.query(redis::cmd("HDEL").arg(KEYS).arg(field).clone())
                    .await
            })
            .await?;
        Ok(n > 0)
    }

    async fn key_list(&self) -> Result<Vec<ApiKey>, StateError> {
        let raw: Vec<String> = self
            .run(|c, _| async move { c.query(redis::cmd("HVALS").arg(KEYS).clone()).await })
            .await?;
        let mut keys: Vec<ApiKey> = raw
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect();
        keys.sort_by_key(|k| k.created_at);
        Ok(keys)
    }
}

/// The keys and arguments of the `SETTLE` script for one reservation.
struct Settlement {
    keys: [String; 3],
    id: u64,
    used: u64,
    ttl_ms: u64,
}

impl Settlement {
    fn add_to(self, inv: &mut redis::ScriptInvocation<'_>) {
        for k in self.keys {
            inv.key(k);
        }
        inv.arg(self.id).arg(self.used).arg(self.ttl_ms);
    }
}

impl RedisState {
    fn settlement(&self, subject: &str, r: Reservation, used: u64) -> Settlement {
        Settlement {
            keys: [
                key(subject, "quota"),
                key(subject, "held"),
                key(subject, &format!("done:{}", r.id)),
            ],
            id: r.id,
            used,
            ttl_ms: self.cfg.reservation_ttl_seconds * 1000,
        }
    }
}

/// The keys and arguments of the `LOG` script for one request.
struct LogEntry {
    keys: [String; 3],
    json: String,
    ok: u8,
    ms: u64,
    keep: u64,
}

impl LogEntry {
    fn new(subject: &str, mut log: RequestLog, keep: u64) -> Result<LogEntry, StateError> {
        log.id = 0;
        let json = serde_json::to_string(&log).map_err(|e| StateError::Corrupt(e.to_string()))?;
        // The script splices the real id over this prefix.
        debug_assert!(json.starts_with("{\"id\":0,"));
        Ok(LogEntry {
            keys: [
                key(subject, "logs"),
                key(subject, "logseq"),
                key(subject, "stats"),
            ],
            json,
            ok: u8::from(log.status == "success"),
            ms: log.response_time_ms,
            keep,
        })
    }

    /// Append to an invocation: keys after any already there, and the
    /// four arguments after any already there.
    fn add_to(self, inv: &mut redis::ScriptInvocation<'_>) {
        for k in self.keys {
            inv.key(k);
        }
        inv.arg(self.json).arg(self.ok).arg(self.ms).arg(self.keep);
    }
}

#[async_trait]
impl StateStore for RedisState {
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
