//! Where the embedded backend keeps an object on disk.
//!
//! s3s-fs stores key `K` as the file `<root>/<bucket>/K`, so `foo/bar` and
//! `foo/bar/xyzzy` cannot both exist (one would be a file and a directory),
//! `foo/` cannot hold bytes, and `..`-like keys need care. Here every key is
//! given to s3s-fs in an encoded form that is always a plain file path:
//!
//! - every byte but `A-Z a-z 0-9 _ -` is written `%XX`, so the encoded key
//!   has no `/`, `.` or `+` of its own;
//! - it is cut into pieces of at most [`PIECE`] bytes (file names may be at
//!   most 255); every piece but the last is a directory named `<piece>+`,
//!   so a file and a directory never share a name;
//! - it all lives under the directory `o+` of the bucket, which tells this
//!   layout from the plain one of earlier versions ([`migrate`] moves those
//!   objects in at start-up).
//!
//! `docs/a b.txt` is stored as `<root>/<bucket>/o+/docs%2Fa%20b%2Etxt`.

use std::path::{Path, PathBuf};

use base64::Engine as _;

/// The directory of a bucket that holds encoded keys.
pub const TOP: &str = "o+";
/// Bytes of encoded key per path segment.
const PIECE: usize = 200;

fn kept(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// The path (relative to the bucket's directory) s3s-fs is given for `key`.
pub fn encode(key: &str) -> String {
    let mut flat = String::with_capacity(key.len() * 3);
    for &b in key.as_bytes() {
        if kept(b) {
            flat.push(b as char);
        } else {
            flat.push_str(&format!("%{b:02X}"));
        }
    }
    let mut out = String::with_capacity(flat.len() + 8 + flat.len() / PIECE * 2);
    out.push_str(TOP);
    let pieces: Vec<&str> = flat
        .as_bytes()
        .chunks(PIECE)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    for (i, piece) in pieces.iter().enumerate() {
        out.push('/');
        out.push_str(piece);
        if i + 1 < pieces.len() {
            out.push('+');
        }
    }
    out
}

/// The key stored at `path` (relative to the bucket's directory, `/`
/// separated), when it is in this layout.
pub fn decode(path: &str) -> Option<String> {
    let rest = path.strip_prefix(TOP)?.strip_prefix('/')?;
    let segments: Vec<&str> = rest.split('/').collect();
    let (last, dirs) = segments.split_last()?;
    if last.is_empty() || last.ends_with('+') {
        return None;
    }
    let mut flat = String::new();
    for d in dirs {
        flat.push_str(d.strip_suffix('+')?);
    }
    flat.push_str(last);
    let mut bytes = Vec::with_capacity(flat.len());
    let raw = flat.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => {
                let hex = std::str::from_utf8(raw.get(i + 1..i + 3)?).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if kept(b) => {
                bytes.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(bytes).ok()
}

/// s3s-fs's side files of an object (metadata, checksums, open uploads)
/// start with this, in its root.
fn side_prefix(bucket: &str, key: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(".bucket-{}.object-{}.", b64(bucket), b64(key))
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &Path, rel: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if entry.file_type()?.is_dir() {
            files_under(&entry.path(), &path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Move objects stored by earlier versions (`<bucket>/<key>`) into this
/// layout, side files with them. Returns how many moved. Runs before the
/// server answers; a crash midway leaves each object in one layout or the
/// other, and the next start moves the rest.
pub fn migrate(root: &Path) -> std::io::Result<usize> {
    let mut moved = 0;
    let side_files: Vec<String> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok()?.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with(".bucket-"))
        .collect();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let Some(bucket) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !entry.file_type()?.is_dir() || bucket.starts_with('.') {
            continue;
        }
        let mut files = Vec::new();
        files_under(&entry.path(), "", &mut files)?;
        for key in files.into_iter().filter(|f| !f.starts_with("o+/")) {
            let to = entry.path().join(encode(&key));
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(entry.path().join(&key), &to)?;
            let (old, new) = (
                side_prefix(&bucket, &key),
                side_prefix(&bucket, &encode(&key)),
            );
            for side in side_files.iter().filter(|s| s.starts_with(&old)) {
                let renamed = format!("{new}{}", &side[old.len()..]);
                std::fs::rename(root.join(side), root.join(renamed))?;
            }
            moved += 1;
        }
        remove_empty_dirs(&entry.path(), true);
    }
    Ok(moved)
}

/// Remove the empty directories left under `dir` (not `dir` itself when
/// `keep`), except the layout's own.
fn remove_empty_dirs(dir: &Path, keep: bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) && !(keep && e.file_name() == TOP) {
            remove_empty_dirs(&e.path(), false);
        }
    }
    if !keep {
        let _ = std::fs::remove_dir(dir);
    }
}

/// The object files of a bucket in this layout: `(key, path)`.
pub fn objects(bucket_dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let top = bucket_dir.join(TOP);
    if !top.is_dir() {
        return Ok(Vec::new());
    }
    files_under(&top, TOP, &mut files)?;
    Ok(files
        .into_iter()
        .filter_map(|rel| {
            let key = decode(&rel)?;
            Some((key, bucket_dir.join(rel)))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_never_collide() {
        let long = "x/".repeat(400);
        for key in [
            "a",
            "foo/bar",
            "foo/bar/xyzzy",
            "foo/",
            "..",
            "./a",
            "a+b",
            "c%ab",
            "日本/語",
            &long,
        ] {
            let e = encode(key);
            assert_eq!(decode(&e).as_deref(), Some(key), "{key}");
            assert!(e
                .split('/')
                .all(|s| !s.is_empty() && s.len() <= PIECE + 1 && s != "." && s != ".."));
        }
        assert_eq!(encode("docs/a b.txt"), "o+/docs%2Fa%20b%2Etxt");
        // A file and a directory never share a name.
        let (file, dir) = (encode(&"k".repeat(PIECE)), encode(&"k".repeat(PIECE + 1)));
        assert!(!dir.starts_with(&format!("{file}/")), "{file} {dir}");
        for bad in ["docs/a.txt", "o+/a%2", "o+/a+", "o+/a/b", "o+/a.b"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn objects_of_the_plain_layout_move_in_with_their_side_files() {
        let root = tempfile::tempdir().unwrap();
        let b = root.path().join("bkt");
        std::fs::create_dir_all(b.join("docs/deep")).unwrap();
        std::fs::write(b.join("docs/deep/a.txt"), b"A").unwrap();
        std::fs::write(b.join("top.bin"), b"T").unwrap();
        let side = format!("{}metadata.json", side_prefix("bkt", "docs/deep/a.txt"));
        std::fs::write(root.path().join(&side), b"{}").unwrap();
        assert_eq!(migrate(root.path()).unwrap(), 2);
        let mut got = objects(&b).unwrap();
        got.sort();
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["docs/deep/a.txt", "top.bin"]);
        assert_eq!(std::fs::read(&got[0].1).unwrap(), b"A");
        let moved = format!(
            "{}metadata.json",
            side_prefix("bkt", &encode("docs/deep/a.txt"))
        );
        assert!(root.path().join(moved).is_file());
        assert!(!b.join("docs").exists(), "old directories are removed");
        assert_eq!(migrate(root.path()).unwrap(), 0, "idempotent");
    }
}
