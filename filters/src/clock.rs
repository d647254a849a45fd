//! The wall clock in the units the gateway stores: Unix seconds (key
//! expiry, signatures) and Unix milliseconds (logs, rate windows). One
//! place, so every part of the gateway reads the same clock the same way.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds (0 if the clock reads before 1970).
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix milliseconds (0 if the clock reads before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
