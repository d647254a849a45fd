//! Percent-encoding as SigV4 and S3 use it: paths and queries, both ways.

/// Percent-encode as SigV4 wants: everything but `A-Za-z0-9-._~`, and `/`
/// too unless `keep_slash`.
pub fn uri_encode(input: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len() + 8);
    for &b in input {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decode `%XX` escapes (a `+` stays a `+`: S3 paths and SDK queries encode
/// spaces as `%20`). `None` when an escape is malformed.
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Split a raw query string into decoded `(name, value)` pairs.
pub fn parse_query(query: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((
            String::from_utf8(percent_decode(k)?).ok()?,
            String::from_utf8(percent_decode(v)?).ok()?,
        ));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_follows_sigv4() {
        assert_eq!(uri_encode(b"/a b/c~d+e", true), "/a%20b/c~d%2Be");
        assert_eq!(uri_encode(b"a/b", false), "a%2Fb");
        assert_eq!(percent_decode("a%2Fb+c").unwrap(), b"a/b+c");
        assert_eq!(percent_decode("a%2"), None);
    }
}
