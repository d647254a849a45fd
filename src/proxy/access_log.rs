//! One JSON line per request, written by a background thread so a slow disk
//! or pipe never stalls a request. Keys appear only as their `key_ref`.

use std::io::Write;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

use serde::Serialize;

use crate::proxy::metrics::ACCESS_LOG_DROPPED;

#[derive(Serialize)]
pub struct AccessRecord<'a> {
    pub ts: String,
    pub request_id: Option<&'a str>,
    pub client_ip: Option<String>,
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

#[derive(Clone)]
pub struct AccessLog {
    tx: Option<SyncSender<Vec<u8>>>,
}

/// Lines buffered before new ones are dropped (and counted).
const QUEUE: usize = 16 * 1024;

impl AccessLog {
    /// `stdout`, `off`, or a file path (appended to).
    pub fn open(target: &str) -> std::io::Result<AccessLog> {
        let mut out: Box<dyn Write + Send> = match target {
            "off" => return Ok(AccessLog { tx: None }),
            "stdout" => Box::new(std::io::stdout()),
            path => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                while let Ok(line) = rx.recv() {
                    let _ = out.write_all(&line);
                    // Drain what is queued, then flush once.
                    while let Ok(more) = rx.try_recv() {
                        let _ = out.write_all(&more);
                    }
                    let _ = out.flush();
                }
            })?;
        Ok(AccessLog { tx: Some(tx) })
    }

    /// Whether lines are written at all (`access_log: off` skips building them).
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn write(&self, rec: &AccessRecord<'_>) {
        let Some(tx) = &self.tx else { return };
        let Ok(mut line) = serde_json::to_vec(rec) else {
            return;
        };
        line.push(b'\n');
        if let Err(TrySendError::Full(_)) = tx.try_send(line) {
            ACCESS_LOG_DROPPED.inc();
        }
    }
}
