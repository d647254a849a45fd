//! The Lua scripts, one file each under `lua/` (loaded at compile time).
//! Every check-and-update is one script, atomic on Redis, reading Redis's
//! own clock (`now.lua`). Every script is idempotent for its ids, so a call
//! retried after a lost reply never counts twice.
//!
//! Keys share the subject's hash tag (`kikaku:{subject}:...`), so each
//! script's keys share one slot on Redis Cluster.

use redis::Script;

/// A script: the shared helpers it uses, then its own body.
macro_rules! lua {
    ($($file:literal),+) => {
        Script::new(concat!($(include_str!(concat!("lua/", $file, ".lua"))),+))
    };
}

pub(super) struct Scripts {
    /// KEYS[1] zset of admitted units; ARGV window_ms, limit, cost, member
    /// id. Returns {allowed, held, reset}. A retry finds its own members.
    pub rate: Script,
    /// KEYS[1] quota hash (`used`), KEYS[2] held hash (id → amount:expiry,
    /// reservations in flight); ARGV amount, limit, id, ttl_ms. A retry
    /// finds its own reservation.
    pub reserve: Script,
    /// KEYS[1] quota, KEYS[2] held, KEYS[3] this reservation's done marker;
    /// ARGV id, used, ttl_ms.
    pub settle: Script,
    /// KEYS[1] quota, KEYS[2] this reservation's refund marker; ARGV amount,
    /// ttl_ms. Once per reservation, however often asked.
    pub refund: Script,
    /// KEYS[1] quota, KEYS[2] held. Returns {used, reserved}.
    pub usage: Script,
    /// KEYS[1] log list, KEYS[2] id counter, KEYS[3] stats hash, KEYS[4]
    /// this call's marker (a minute); ARGV json with `"id":0` first, success
    /// (1/0), response ms, keep. A retry finds the marker and logs nothing twice.
    pub log: Script,
    /// Settle and log in one round trip: KEYS quota, held, done, log list,
    /// id counter, stats; ARGV id, used, ttl_ms, then the log's four.
    /// Returns the log id. The done marker (read once, written once) keeps
    /// the log id too, so a repeat neither bills nor logs twice.
    pub settle_log: Script,
    /// The rate script, then (only when admitted) the reserve script, as
    /// one: KEYS rl zset, quota, held (one hash tag: the subject); ARGV
    /// window_ms, limit, member, amount, quota limit, id, ttl_ms. Returns
    /// {allowed, held, reset, reserved (1/0)}.
    pub admit_reserve: Script,
    /// `admit_reserve`, then (only when reserved) the model's ceiling, one
    /// call on one Redis: KEYS as `admit_reserve` plus the ceiling's zset
    /// (another slot: never on a Cluster); ARGV as `admit_reserve` plus the
    /// ceiling's window_ms, limit and cost. Returns {allowed, held, reset,
    /// reserved, ceiling checked, ceiling allowed, ceiling held, ceiling
    /// reset}; a reservation the ceiling refuses is not kept.
    pub admit_ceiling: Script,
    /// KEYS[1] gallery list (newest first), KEYS[2] id counter, KEYS[3]
    /// this call's marker (a minute); ARGV json with `"id":0` first, keep.
    /// Returns the id, then the records pushed out; a retry adds nothing and
    /// returns the id alone.
    pub gallery: Script,
    /// KEYS[1] the stored keys hash; ARGV old field, new field, new record.
    /// Returns 1 when the old key was there and is now replaced, else 0.
    pub key_rotate: Script,
    /// Temporary files (`files.rs`): KEYS files, paths, expiry.
    pub file_put: Script,
    pub file_remove: Script,
    /// KEYS[1] the lease; ARGV holder (and ttl_ms to take it).
    pub lease_take: Script,
    pub lease_drop: Script,
    /// The file host (`hosted.rs`): KEYS content, holds, held, unreferenced.
    pub hosted_put: Script,
    pub hosted_hold: Script,
    pub hosted_release: Script,
    pub hosted_forget: Script,
    pub ledger: LedgerScripts,
}

/// The storage byte ledger: objects in `kikaku:{s}:objects` (object →
/// bytes), parts of open uploads in `kikaku:{s}:mpu:<upload>` (part →
/// bytes), open uploads in `kikaku:{s}:mpus`. Usage is the quota hash's
/// `used`, moved by every change (`shift_used.lua`: never below 0).
pub(super) struct LedgerScripts {
    /// KEYS quota, held, slot hash; ARGV field, amount, limit, id, ttl_ms.
    /// Returns the bytes held (-1: over quota). A retry finds its own hold.
    pub reserve: Script,
    /// KEYS quota, held, slot hash, uploads set; ARGV id, field, size,
    /// upload ('' for objects).
    pub commit: Script,
    /// KEYS quota, objects; ARGV object. Returns the bytes freed.
    pub remove: Script,
    /// KEYS quota, parts, objects, uploads, open uploads; ARGV upload,
    /// object, size.
    pub complete: Script,
    /// KEYS quota, parts, uploads, open uploads; ARGV upload. Returns the
    /// bytes freed.
    pub abort: Script,
    /// KEYS quota, objects; ARGV object, size, object, size, ... Returns
    /// the usage after.
    pub reconcile: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            rate: lua!("now", "rate_fn", "rate"),
            reserve: lua!("now", "reserve"),
            settle: lua!("settle_fn", "settle"),
            refund: lua!("refund"),
            usage: lua!("now", "usage"),
            log: lua!("log_fn", "log"),
            settle_log: lua!("settle_fn", "log_fn", "settle_log"),
            admit_reserve: lua!("now", "admit_reserve_fn", "admit_reserve"),
            admit_ceiling: lua!("now", "admit_reserve_fn", "rate_fn", "admit_ceiling"),
            gallery: lua!("gallery_add"),
            key_rotate: lua!("key_rotate"),
            file_put: lua!("file_put"),
            file_remove: lua!("file_remove"),
            lease_take: lua!("lease_take"),
            lease_drop: lua!("lease_drop"),
            hosted_put: lua!("hosted_put"),
            hosted_hold: lua!("hosted_hold"),
            hosted_release: lua!("hosted_release"),
            hosted_forget: lua!("hosted_forget"),
            ledger: LedgerScripts {
                reserve: lua!("now", "ledger_reserve"),
                commit: lua!("shift_used", "ledger_commit"),
                remove: lua!("shift_used", "ledger_remove"),
                complete: lua!("shift_used", "ledger_complete"),
                abort: lua!("shift_used", "ledger_abort"),
                reconcile: lua!("shift_used", "ledger_reconcile"),
            },
        }
    }
}
