//! What a stored file's content type is: what its name says, else what the
//! client declared, else what its first bytes are, else
//! `application/octet-stream`.

const GENERIC: &str = "application/octet-stream";

/// The content type for a file named `name` (any of the names it goes by,
/// first wins), `declared` by the client or the origin, starting `head`.
pub fn content_type(names: &[&str], declared: Option<&str>, head: &[u8]) -> String {
    for name in names {
        if let Some(m) = by_name(name) {
            return m;
        }
    }
    if let Some(d) = declared
        .map(|d| d.split(';').next().unwrap_or("").trim())
        .filter(|d| !d.is_empty() && *d != GENERIC && d.contains('/'))
    {
        return d.to_ascii_lowercase();
    }
    by_content(head).unwrap_or_else(|| GENERIC.to_string())
}

/// By the name's extension, if it has a known one.
pub fn by_name(name: &str) -> Option<String> {
    let ext = name.rsplit_once('.')?.1;
    if ext.is_empty() || ext.contains('/') {
        return None;
    }
    mime_guess::from_ext(ext).first().map(|m| m.to_string())
}

/// By the first bytes (magic numbers).
pub fn by_content(head: &[u8]) -> Option<String> {
    infer::get(head).map(|t| t.mime_type().to_string())
}

/// The extension for a content type (`image/png` → `png`), if there is a usual one.
pub fn extension_for(content_type: &str) -> Option<&'static str> {
    let essence = content_type.split(';').next()?.trim();
    mime_guess::get_mime_extensions_str(essence)?
        .iter()
        .copied()
        .find(|e| e.len() <= 4)
        .or_else(|| {
            mime_guess::get_mime_extensions_str(essence)?
                .first()
                .copied()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn name_then_declared_then_content() {
        assert_eq!(
            content_type(&["a.jpg"], Some("text/plain"), PNG),
            "image/jpeg"
        );
        assert_eq!(
            content_type(&["noext", "b.pdf"], None, b""),
            "application/pdf"
        );
        assert_eq!(
            content_type(&["blob"], Some("image/webp; q=1"), PNG),
            "image/webp"
        );
        assert_eq!(content_type(&["blob"], Some(GENERIC), PNG), "image/png");
        assert_eq!(
            content_type(&["blob"], None, b"\xff\xd8\xff\xe0"),
            "image/jpeg"
        );
        assert_eq!(content_type(&[], None, b"hello"), GENERIC);
        assert_eq!(
            extension_for("image/jpeg").map(|e| e.len() <= 4),
            Some(true)
        );
        assert_eq!(extension_for("image/png"), Some("png"));
    }
}
