//! An append-only journal of JSON lines, the durable half of the embedded
//! state backend.
//!
//! Every record is handed to the kernel with one `write(2)` before the caller
//! answers, so killing the process (even `kill -9`) loses nothing; fsync
//! happens at compaction, so a power cut may lose the last moments. Compaction
//! rewrites the live state into a fresh file and renames it over the old one.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};

use super::StateError;

pub struct Journal {
    path: PathBuf,
    file: File,
    /// Records appended since the last compaction.
    pub appended: u64,
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
        self.appended += records.len() as u64;
        Ok(())
    }

    /// Replace the journal by exactly `records`, durably (write, fsync, rename).
    pub fn rewrite<R: Serialize>(&mut self, records: &[R]) -> Result<(), StateError> {
        let tmp = self.path.with_extension("journal.tmp");
        {
            let mut f = File::create(&tmp).map_err(|e| io(e, "cannot create", &tmp))?;
            let mut buf = Vec::with_capacity(records.len() * 64);
            for r in records {
                serde_json::to_writer(&mut buf, r)
                    .map_err(|e| StateError::Corrupt(e.to_string()))?;
                buf.push(b'\n');
            }
            f.write_all(&buf).map_err(|e| io(e, "cannot write", &tmp))?;
            f.sync_all().map_err(|e| io(e, "cannot sync", &tmp))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| io(e, "cannot replace", &self.path))?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| io(e, "cannot reopen", &self.path))?;
        self.appended = 0;
        Ok(())
    }
}
