//! One JSON line per request. Keys appear only as their `key_ref`.
//!
//! A request serializes its line into a buffer of its thread's and appends
//! it to one shared buffer: no write, no allocation of its own, and no
//! wake-up of another thread. A writer thread takes the shared buffer every
//! [`FLUSH_EVERY`] (sooner once it is half full) and writes it out, so a
//! slow disk or pipe stalls only that thread. Memory is bounded: past
//! [`MAX_PENDING`] bytes waiting, lines are dropped and counted
//! (`kikaku_access_log_dropped_total`). At a clean exit (Pingora's graceful
//! shutdown ends in `exit`) an `atexit` hook writes out what is waiting.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde::Serialize;

use crate::proxy::metrics::ACCESS_LOG_DROPPED;

#[derive(Serialize)]
pub struct AccessRecord<'a> {
    pub ts: Timestamp,
    pub request_id: Option<&'a str>,
    pub client_ip: Option<std::net::IpAddr>,
    pub method: &'a str,
    /// Path only: query strings may carry signatures or tokens.
    pub path: &'a str,
    pub route: Option<&'a str>,
    pub upstream: Option<&'a str>,
    pub status: u16,
    /// `kikaku_~1a2b3c4d`: type prefix and short hash, never the key.
    pub key: Option<&'a str>,
    pub total_ms: f64,
    pub upstream_ms: Option<f64>,
    pub rejected_by: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// The time of a line, written as RFC 3339 in UTC with milliseconds
/// (`2026-12-06T09:30:00.123Z`). Lines of the same millisecond on a thread
/// share one formatting.
pub struct Timestamp(pub std::time::SystemTime);

thread_local! {
    /// The last millisecond formatted on this thread, and its text.
    static LAST_TS: RefCell<(u128, String)> = const { RefCell::new((u128::MAX, String::new())) };
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ms = self
            .0
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        LAST_TS.with_borrow_mut(|(at, text)| {
            if *at != ms {
                *at = ms;
                *text = chrono::DateTime::<chrono::Utc>::from(self.0)
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            }
            s.serialize_str(text)
        })
    }
}

#[derive(Clone)]
pub struct AccessLog {
    shared: Option<Arc<Shared>>,
}

/// How often the writer wakes to write what is waiting.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Bytes waiting past which lines are dropped (and counted).
pub const MAX_PENDING: usize = 8 << 20;

struct Shared {
    /// Lines waiting for the writer.
    pending: Mutex<Vec<u8>>,
    /// Wakes the writer early, when `pending` passes half its bound.
    nudge: Condvar,
    out: Mutex<Box<dyn Write + Send>>,
}

impl Shared {
    /// Write out what is waiting; `spare` is the writer's own buffer,
    /// swapped with the shared one so appends go on meanwhile.
    fn drain(&self, spare: &mut Vec<u8>) {
        std::mem::swap(&mut *self.pending.lock(), spare);
        if spare.is_empty() {
            return;
        }
        let mut out = self.out.lock();
        let _ = out.write_all(spare);
        let _ = out.flush();
        spare.clear();
    }
}

/// Every log opened, for the exit hook.
static OPEN: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

extern "C" fn write_out_at_exit() {
    let logs: Vec<Arc<Shared>> = OPEN.lock().iter().filter_map(Weak::upgrade).collect();
    let mut spare = Vec::new();
    for log in logs {
        log.drain(&mut spare);
    }
}

thread_local! {
    /// A line being serialized, reused by each request of this thread.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl AccessLog {
    /// `stdout`, `off`, or a file path (appended to).
    pub fn open(target: &str) -> std::io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match target {
            "off" => return Ok(AccessLog { shared: None }),
            "stdout" => Box::new(std::io::stdout()),
            path => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(64 << 10)),
            nudge: Condvar::new(),
            out: Mutex::new(out),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut spare = Vec::with_capacity(64 << 10);
                // Ends once every handle of the log is gone.
                while let Some(log) = weak.upgrade() {
                    {
                        let mut pending = log.pending.lock();
                        if pending.len() < MAX_PENDING / 2 {
                            log.nudge.wait_for(&mut pending, FLUSH_EVERY);
                        }
                    }
                    log.drain(&mut spare);
                }
            })?;
        let mut open = OPEN.lock();
        if open.is_empty() {
            // SAFETY: registers a plain function with the C runtime, once.
            unsafe { libc::atexit(write_out_at_exit) };
        }
        open.retain(|w| w.strong_count() > 0);
        open.push(Arc::downgrade(&shared));
        Ok(AccessLog {
            shared: Some(shared),
        })
    }

    /// Whether lines are written at all (`access_log: off` skips building them).
    pub fn enabled(&self) -> bool {
        self.shared.is_some()
    }

    pub fn write(&self, rec: &AccessRecord<'_>) {
        let Some(shared) = &self.shared else { return };
        LINE.with_borrow_mut(|line| {
            line.clear();
            if serde_json::to_writer(&mut *line, rec).is_err() {
                return;
            }
            line.push(b'\n');
            let mut pending = shared.pending.lock();
            if pending.len() + line.len() > MAX_PENDING {
                ACCESS_LOG_DROPPED.inc();
                return;
            }
            let before = pending.len();
            pending.extend_from_slice(line);
            if before < MAX_PENDING / 2 && pending.len() >= MAX_PENDING / 2 {
                shared.nudge.notify_one();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let at = |ms: u64| {
            serde_json::to_string(&Timestamp(UNIX_EPOCH + Duration::from_millis(ms))).unwrap()
        };
        assert_eq!(at(1_765_013_400_123), "\"2025-12-06T09:30:00.123Z\"");
        // The same millisecond again, then the next: each its own text.
        assert_eq!(at(1_765_013_400_123), "\"2025-12-06T09:30:00.123Z\"");
        assert_eq!(at(1_765_013_400_124), "\"2025-12-06T09:30:00.124Z\"");
        assert_eq!(at(0), "\"1970-01-01T00:00:00.000Z\"");
    }

    /// A disk that takes nothing (a FIFO nobody reads): requests never wait,
    /// the waiting lines stay under MAX_PENDING, the rest are dropped and
    /// counted, and what waited comes out whole once the reader is back.
    #[test]
    fn a_stalled_disk_never_blocks_a_request_and_memory_stays_bounded() {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("access.fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a plain libc call on a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // A reader must exist for the log's open not to block; it reads
        // nothing until the end.
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let log = AccessLog::open(fifo.to_str().unwrap()).unwrap();
        let path = "/v1/".to_string() + &"x".repeat(900);
        fn record(path: &str) -> AccessRecord<'_> {
            AccessRecord {
                ts: Timestamp(std::time::SystemTime::now()),
                request_id: Some("req-1"),
                client_ip: None,
                method: "GET",
                path,
                route: Some("r"),
                upstream: None,
                status: 200,
                key: None,
                total_ms: 1.0,
                upstream_ms: None,
                rejected_by: None,
                error: None,
            }
        }
        let line_len = serde_json::to_vec(&record(&path)).unwrap().len() + 1;
        let lines = 3 * MAX_PENDING / line_len;
        let dropped_before = ACCESS_LOG_DROPPED.get();
        // 3 × 8 MiB of lines against a pipe of 64 KiB, on a thread of their
        // own: a write that waited on the pipe would never return.
        let (done, finished) = std::sync::mpsc::channel();
        let writer = log.clone();
        std::thread::spawn(move || {
            for _ in 0..lines {
                writer.write(&record(&path));
            }
            let _ = done.send(());
        });
        finished
            .recv_timeout(Duration::from_secs(20))
            .expect("a write waited on the stalled disk");
        let waiting = log.shared.as_ref().unwrap().pending.lock().len();
        let dropped = (ACCESS_LOG_DROPPED.get() - dropped_before) as usize;
        assert!(waiting <= MAX_PENDING, "{waiting} bytes waiting");
        assert!(
            dropped > 0 && dropped < lines,
            "{dropped} of {lines} dropped"
        );
        // The reader comes back: every line kept arrives whole.
        let kept = lines - dropped;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while got.iter().filter(|&&b| b == b'\n').count() < kept {
            assert!(std::time::Instant::now() < deadline, "lines did not arrive");
            match reader.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
        let parsed: Vec<serde_json::Value> = got
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("a whole JSON line"))
            .collect();
        assert_eq!(parsed.len(), kept);
    }
}
