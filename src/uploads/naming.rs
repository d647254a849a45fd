//! The upload API's names (DESIGN §6): `uploadPath` and `fileName` are
//! checked like object keys, a missing `fileName` becomes a random name
//! with the source's extension, and a file gets a random `fileId`.

use kikaku_filters::{ErrorKind, GatewayError};
use rand::distributions::{Alphanumeric, DistString};

use crate::storage::mime;

/// Longest `uploadPath` and `fileName`, in bytes.
const MAX_NAME_BYTES: usize = 255;

fn bad(msg: String) -> GatewayError {
    GatewayError::new(ErrorKind::InvalidParameter, msg)
}

fn lower_random(n: usize) -> String {
    Alphanumeric
        .sample_string(&mut rand::thread_rng(), n)
        .to_ascii_lowercase()
}

/// A new `fileId`: `file_` and 20 random letters and digits.
pub fn file_id() -> String {
    format!("file_{}", lower_random(20))
}

/// `uploadPath` as stored: without leading or trailing slashes; empty is
/// the tenant's root.
pub fn upload_path(raw: Option<&str>) -> Result<String, GatewayError> {
    let p = raw.unwrap_or("").trim().trim_matches('/');
    if p.len() > MAX_NAME_BYTES {
        return Err(bad(format!(
            "uploadPath is longer than {MAX_NAME_BYTES} bytes."
        )));
    }
    if p.chars().any(|c| c.is_control()) || p.contains('\\') {
        return Err(bad(
            "uploadPath may not hold control characters or backslashes.".into(),
        ));
    }
    if !p.is_empty() {
        for seg in p.split('/') {
            if seg.is_empty() || seg == "." || seg == ".." {
                return Err(bad(format!(
                    "uploadPath {p:?} holds an empty, '.' or '..' segment."
                )));
            }
        }
    }
    Ok(p.to_string())
}

/// A given `fileName`, checked: one path segment.
pub fn file_name(raw: &str) -> Result<String, GatewayError> {
    let n = raw.trim();
    if n.is_empty() {
        return Err(bad("fileName is empty.".into()));
    }
    if n.len() > MAX_NAME_BYTES {
        return Err(bad(format!(
            "fileName is longer than {MAX_NAME_BYTES} bytes."
        )));
    }
    if n == "." || n == ".." || n.contains(['/', '\\']) || n.chars().any(|c| c.is_control()) {
        return Err(bad(format!(
            "fileName {n:?} must be one name: no '/', '\\\\', control characters, '.' or '..'."
        )));
    }
    Ok(n.to_string())
}

/// The name of a file sent without one: 12 random letters and digits with
/// the extension of the source's name, else of its content type.
pub fn random_name(original: &str, content_type: &str) -> String {
    let ext = original
        .rsplit_once('.')
        .map(|(_, e)| e)
        .filter(|e| !e.is_empty() && e.len() <= 10 && e.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(|e| e.to_ascii_lowercase())
        .or_else(|| mime::extension_for(content_type).map(str::to_string));
    match ext {
        Some(e) => format!("{}.{e}", lower_random(12)),
        None => lower_random(12),
    }
}

/// The last segment of a URL's path, decoded, if it is a usable name.
pub fn name_from_url(url: &url::Url) -> Option<String> {
    let last = url.path_segments()?.next_back()?;
    let decoded = sigv4::percent_decode(last).and_then(|b| String::from_utf8(b).ok())?;
    file_name(&decoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_names() {
        assert_eq!(
            upload_path(Some("/images/user-uploads/")).unwrap(),
            "images/user-uploads"
        );
        assert_eq!(upload_path(None).unwrap(), "");
        for bad_path in ["a/../b", "a//b", "./a", "a\\b", "a\u{7}"] {
            assert!(upload_path(Some(bad_path)).is_err(), "{bad_path}");
        }
        assert!(upload_path(Some(&"a".repeat(256))).is_err());
        assert_eq!(file_name(" my-photo.jpg ").unwrap(), "my-photo.jpg");
        for bad_name in ["", "..", "a/b", "a\\b", "x\ny"] {
            assert!(file_name(bad_name).is_err(), "{bad_name:?}");
        }
        let r = random_name("sample-image.JPG", "image/png");
        assert!(r.ends_with(".jpg") && r.len() == 16, "{r}");
        assert!(random_name("blob", "image/png").ends_with(".png"));
        assert_eq!(random_name("blob", "application/x-unknown-thing").len(), 12);
        assert!(file_id().starts_with("file_"));
        let u = url::Url::parse("https://e.com/a/b%20c.jpg?x=1").unwrap();
        assert_eq!(name_from_url(&u).as_deref(), Some("b c.jpg"));
        assert_eq!(
            name_from_url(&url::Url::parse("https://e.com/").unwrap()),
            None
        );
    }
}
