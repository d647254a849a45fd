//! An append-only journal of JSON lines, the durable half of the embedded
//! state backend.
//!
//! Every record is handed to the kernel with one `write(2)` before the caller
//! answers, so killing the process (even `kill -9`) loses nothing; fsync
//! happens at compaction, so a power cut may lose the last moments. Compaction
//! rewrites the live state into a fresh file and renames it over the old one.
//!
//! While the process runs, compaction happens off the request path: a
//! thread serializes the live records into the side file and fsyncs it,
//! while appends go on into the journal as before; the next append after
//! it is done copies the records appended meanwhile (the tail) into the
//! side file and renames it in. The old journal stays whole until then, so
//! a kill at any moment leaves one complete journal.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, TryRecvError};

use serde::{de::DeserializeOwned, Serialize};

use super::StateError;

pub struct Journal {
    path: PathBuf,
    file: File,
    /// Records appended since the last compaction.
    pub appended: u64,
    /// Bytes in the journal file.
    len: u64,
    /// A compaction whose side file is being written.
    pending: Option<Pending>,
}

/// A compaction in the background.
struct Pending {
    /// The journal's length when the live records were taken: the tail
    /// starts here.
    from: u64,
    /// Records appended since.
    since: u64,
    /// The side file's length once written and synced, or why it failed.
    done: Receiver<Result<u64, StateError>>,
}

fn io(e: std::io::Error, what: &str, path: &Path) -> StateError {
    StateError::Unavailable(format!("{what} {}: {e}", path.display()))
}

impl Journal {
    /// Open (creating) the journal and return the records it holds. A torn
    /// last line (a write cut short) is dropped; any other bad line is corruption.
    pub fn open<R: DeserializeOwned + Serialize>(
        path: &Path,
    ) -> Result<(Journal, Vec<R>), StateError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io(e, "cannot create", dir))?;
        }
        let mut records = Vec::new();
        if path.exists() {
            let f = File::open(path).map_err(|e| io(e, "cannot open", path))?;
            let lines: Vec<String> = BufReader::new(f)
                .lines()
                .collect::<Result<_, _>>()
                .map_err(|e| io(e, "cannot read", path))?;
            let n = lines.len();
            for (i, line) in lines.into_iter().enumerate() {
                if line.is_empty() {
                    continue;
                }
                match serde_json::from_str(&line) {
                    Ok(r) => records.push(r),
                    Err(_) if i + 1 == n => {
                        log::warn!("state journal: dropping a torn last record")
                    }
                    Err(e) => {
                        return Err(StateError::Corrupt(format!(
                            "{} line {}: {e}",
                            path.display(),
                            i + 1
                        )))
                    }
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io(e, "cannot open", path))?;
        let mut j = Journal {
            path: path.to_path_buf(),
            file,
            appended: 0,
            len: 0,
            pending: None,
        };
        // Start from a compact file so a torn tail never precedes new records.
        j.rewrite(&records)?;
        Ok((j, records))
    }

    /// Append records (one line each) with a single write.
    pub fn append_all<R: Serialize>(&mut self, records: &[R]) -> Result<(), StateError> {
        let mut lines = Vec::with_capacity(128 * records.len());
        for r in records {
            serde_json::to_writer(&mut lines, r).map_err(|e| StateError::Corrupt(e.to_string()))?;
            lines.push(b'\n');
        }
        self.file
            .write_all(&lines)
            .map_err(|e| io(e, "cannot write", &self.path))?;
        self.len += lines.len() as u64;
        self.appended += records.len() as u64;
        if let Some(p) = &mut self.pending {
            p.since += records.len() as u64;
            match p.done.try_recv() {
                Err(TryRecvError::Empty) => {}
                Ok(written) => self.swap_in(written.map_err(|e| e.to_string())),
                Err(TryRecvError::Disconnected) => self.swap_in(Err("the writer stopped".into())),
            }
        }
        Ok(())
    }

    /// Whether a compaction is under way.
    pub fn compacting(&self) -> bool {
        self.pending.is_some()
    }

    /// Start replacing the journal by `records` plus whatever is appended
    /// meanwhile; the records are written and synced by a thread of their
    /// own. Nothing happens while another compaction is under way.
    pub fn compact_in_background<R: Serialize + Send + 'static>(&mut self, records: Vec<R>) {
        if self.pending.is_some() {
            return;
        }
        let (tx, done) = mpsc::sync_channel(1);
        let tmp = self.side_path();
        let spawned = std::thread::Builder::new()
            .name("journal-compact".into())
            .spawn(move || {
                let _ = tx.send(write_synced(&tmp, &records));
            });
        match spawned {
            Ok(_) => {
                self.pending = Some(Pending {
                    from: self.len,
                    since: 0,
                    done,
                })
            }
            Err(e) => log::warn!("state journal: compaction not started: {e}"),
        }
    }

    /// Wait for a compaction under way and put it in place.
    pub fn finish_compaction(&mut self) {
        if let Some(p) = &self.pending {
            let written = p
                .done
                .recv()
                .unwrap_or_else(|_| Err(StateError::Unavailable("the writer stopped".into())));
            self.swap_in(written.map_err(|e| e.to_string()));
        }
    }

    /// Append the tail to the synced side file and rename it over the
    /// journal. On any failure the journal stays as it is (whole) and the
    /// side file goes.
    fn swap_in(&mut self, written: Result<u64, String>) {
        let Some(p) = self.pending.take() else { return };
        let tmp = self.side_path();
        let swapped = written.and_then(|live_len| {
            let tail = self.tail(p.from).map_err(|e| e.to_string())?;
            let mut f = OpenOptions::new()
                .append(true)
                .open(&tmp)
                .map_err(|e| e.to_string())?;
            f.write_all(&tail).map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, &self.path).map_err(|e| e.to_string())?;
            Ok(live_len + tail.len() as u64)
        });
        match swapped {
            Ok(len) => match OpenOptions::new().append(true).open(&self.path) {
                Ok(file) => {
                    self.file = file;
                    self.len = len;
                    self.appended = p.since;
                }
                // The renamed file is whole; appends to the old handle
                // would be lost, so keep trying to reopen on the next one.
                Err(e) => log::error!("state journal: cannot reopen after compaction: {e}"),
            },
            Err(e) => {
                log::warn!("state journal: compaction abandoned: {e}");
                let _ = std::fs::remove_file(&tmp);
            }
        }
    }

    /// The journal's bytes from `from` to its end.
    fn tail(&self, from: u64) -> std::io::Result<Vec<u8>> {
        let mut f = File::open(&self.path)?;
        f.seek(SeekFrom::Start(from))?;
        let mut tail = Vec::with_capacity(self.len.saturating_sub(from) as usize);
        f.read_to_end(&mut tail)?;
        Ok(tail)
    }

    fn side_path(&self) -> PathBuf {
        self.path.with_extension("journal.tmp")
    }

    /// Replace the journal by exactly `records`, durably (write, fsync, rename).
    pub fn rewrite<R: Serialize>(&mut self, records: &[R]) -> Result<(), StateError> {
        self.finish_compaction();
        let tmp = self.side_path();
        let len = write_synced(&tmp, records)?;
        std::fs::rename(&tmp, &self.path).map_err(|e| io(e, "cannot replace", &self.path))?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| io(e, "cannot reopen", &self.path))?;
        self.appended = 0;
        self.len = len;
        Ok(())
    }
}

impl Drop for Journal {
    /// A clean shutdown puts a compaction under way in place.
    fn drop(&mut self) {
        self.finish_compaction();
    }
}

/// `records` as a new file at `path`, one line each, synced; its length.
fn write_synced<R: Serialize>(path: &Path, records: &[R]) -> Result<u64, StateError> {
    let mut f = File::create(path).map_err(|e| io(e, "cannot create", path))?;
    let mut buf = Vec::with_capacity(records.len() * 64);
    for r in records {
        serde_json::to_writer(&mut buf, r).map_err(|e| StateError::Corrupt(e.to_string()))?;
        buf.push(b'\n');
    }
    f.write_all(&buf).map_err(|e| io(e, "cannot write", path))?;
    f.sync_all().map_err(|e| io(e, "cannot sync", path))?;
    Ok(buf.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn on_disk(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Records appended while the live ones are written elsewhere are
    /// kept: the journal on disk is whole before the swap (old records
    /// and new) and after it (live records and new).
    #[test]
    fn appends_during_a_compaction_survive_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.journal");
        let (mut j, _) = Journal::open::<Value>(&path).unwrap();
        j.append_all(&[json!(1), json!(2), json!(3)]).unwrap();
        j.compact_in_background(vec![json!("live")]);
        assert!(j.compacting());
        j.compact_in_background(vec![json!("ignored while one runs")]);
        j.append_all(&[json!(4)]).unwrap();
        assert_eq!(
            on_disk(&path).len(),
            4,
            "the old journal, whole, until the swap"
        );
        j.append_all(&[json!(5)]).unwrap();
        j.finish_compaction();
        assert!(!j.compacting());
        assert_eq!(on_disk(&path), [json!("live"), json!(4), json!(5)]);
        assert_eq!(j.appended, 2);
        j.append_all(&[json!(6)]).unwrap();
        drop(j);
        let (_, records) = Journal::open::<Value>(&path).unwrap();
        assert_eq!(records, [json!("live"), json!(4), json!(5), json!(6)]);
    }

    /// A compaction under way when the journal is dropped (a clean
    /// shutdown) is put in place.
    #[test]
    fn a_clean_shutdown_finishes_the_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.journal");
        let (mut j, _) = Journal::open::<Value>(&path).unwrap();
        j.append_all(&[json!(1), json!(2)]).unwrap();
        j.compact_in_background(vec![json!("live")]);
        j.append_all(&[json!(3)]).unwrap();
        drop(j);
        assert_eq!(on_disk(&path), [json!("live"), json!(3)]);
        assert!(!path.with_extension("journal.tmp").exists());
    }
}
