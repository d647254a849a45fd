//! Tenant bucket and object names: what a storage key may use, and how it
//! maps to the backend. Isolation is by construction: a tenant's bucket
//! `photos` is `<prefix><tenant id>-photos` at the backend, so no name a
//! tenant can write reaches another tenant's buckets.

/// Names a tenant may not give a bucket: they collide with the gateway's
/// own paths on the shared listener (DESIGN §4).
pub const RESERVED_BUCKETS: &[&str] = &[
    "api", "admin", "assets", "download", "files", "gallery", "healthz", "metrics", "portal",
    "readyz", "static", "upload", "uploads",
];

/// The longest tenant bucket name. With the default prefix `kk-` and a
/// 12-digit tenant id the backend name stays within S3's 63.
pub const MAX_BUCKET_LEN: usize = 40;
/// The longest bucket prefix the config accepts (keeps backend names ≤ 63).
pub const MAX_PREFIX_LEN: usize = 63 - MAX_BUCKET_LEN - 13;
pub const MAX_OBJECT_KEY_BYTES: usize = 1024;

/// A tenant bucket name: 3–40 of `a-z 0-9 -`, starting and ending with a
/// letter or digit, and not one of the gateway's own path names. Dots are
/// refused (they break virtual-host TLS and invite `..` tricks).
pub fn check_tenant_bucket(name: &str) -> Result<(), String> {
    if !(3..=MAX_BUCKET_LEN).contains(&name.len()) {
        return Err(format!(
            "bucket name {name:?} must be 3 to {MAX_BUCKET_LEN} characters"
        ));
    }
    let b = name.as_bytes();
    let ok_char = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    if !b.iter().all(ok_char) {
        return Err(format!(
            "bucket name {name:?} may only hold lower-case letters, digits and '-'"
        ));
    }
    if b[0] == b'-' || b[b.len() - 1] == b'-' {
        return Err(format!(
            "bucket name {name:?} must start and end with a letter or digit"
        ));
    }
    if RESERVED_BUCKETS.contains(&name) {
        return Err(format!(
            "bucket name {name:?} is reserved for the gateway's own paths"
        ));
    }
    Ok(())
}

/// A bucket of the gateway's own (the gallery's, the file host's): an S3
/// bucket name, 3–63 of `a-z 0-9 - .`, starting and ending with a letter
/// or digit.
pub fn check_service_bucket(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let ok_char = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.';
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !(3..=63).contains(&b.len())
        || !b.iter().all(ok_char)
        || !edge(b[0])
        || !edge(b[b.len() - 1])
        || name.contains("..")
    {
        return Err(format!(
            "{name:?} is not an S3 bucket name (3 to 63 of a-z, 0-9, '-' and '.', \
             starting and ending with a letter or digit)"
        ));
    }
    Ok(())
}

/// An object key: 1–1024 bytes of UTF-8, no `.`/`..` or empty segments, no
/// leading `/`, no control characters. Checked on the decoded key, before
/// anything is mapped or forwarded.
pub fn check_object_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the object key is empty".into());
    }
    if key.len() > MAX_OBJECT_KEY_BYTES {
        return Err(format!(
            "the object key is longer than {MAX_OBJECT_KEY_BYTES} bytes"
        ));
    }
    if key.chars().any(|c| c.is_control()) {
        return Err("the object key holds control characters".into());
    }
    if key.contains('\\') {
        return Err("the object key holds a backslash".into());
    }
    for seg in key.split('/') {
        match seg {
            "." | ".." => {
                return Err(format!("the object key holds a {seg:?} segment"));
            }
            "" if !key.ends_with('/') || key.len() == 1 => {
                return Err(
                    "the object key holds an empty segment (a leading or double '/')".into(),
                );
            }
            _ => {}
        }
    }
    // A single trailing '/' names a "folder" object; "a//" is still refused.
    if key.ends_with("//") {
        return Err("the object key holds an empty segment (a leading or double '/')".into());
    }
    Ok(())
}

/// How tenant buckets map to backend buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketMap {
    pub prefix: String,
}

impl BucketMap {
    /// `<prefix><tenant>-` : every backend bucket of one tenant starts so.
    pub fn tenant_prefix(&self, tenant: &str) -> String {
        format!("{}{tenant}-", self.prefix)
    }

    pub fn to_backend(&self, tenant: &str, bucket: &str) -> String {
        format!("{}{bucket}", self.tenant_prefix(tenant))
    }

    /// The tenant's name of a backend bucket, if it is one of the tenant's.
    pub fn to_tenant<'a>(&self, tenant: &str, backend: &'a str) -> Option<&'a str> {
        backend
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(tenant)?
            .strip_prefix('-')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        assert!(check_tenant_bucket("demo").is_ok());
        assert!(check_tenant_bucket("my-photos-2").is_ok());
        for bad in [
            "ab", "Demo", "a.b", "-ab", "ab-", "files", "portal", "a/b", "a..b", "..",
        ] {
            assert!(check_tenant_bucket(bad).is_err(), "{bad}");
        }
        assert!(check_tenant_bucket(&"a".repeat(41)).is_err());
        assert!(check_service_bucket("kk-files").is_ok());
        for bad in ["kk", "KK-files", "-kk", "kk-", "a..b", "a_b"] {
            assert!(check_service_bucket(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn object_keys() {
        for good in ["a", "a/b.txt", "folder/", "a b/ü.png", "..a/b..", "a/.b"] {
            assert!(check_object_key(good).is_ok(), "{good}");
        }
        for bad in [
            "", "/a", "a//b", "../b", "a/../b", "a/./b", "a/..", ".", "a\nb", "a\\..\\b", "a//",
        ] {
            assert!(check_object_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_object_key(&"k".repeat(1025)).is_err());
    }

    #[test]
    fn mapping_keeps_tenants_apart() {
        let m = BucketMap {
            prefix: "kk-".into(),
        };
        assert_eq!(m.to_backend("aaaa", "demo"), "kk-aaaa-demo");
        assert_eq!(m.to_tenant("aaaa", "kk-aaaa-demo"), Some("demo"));
        assert_eq!(m.to_tenant("bbbb", "kk-aaaa-demo"), None);
        assert_eq!(m.to_tenant("aaaa", "kk-gallery"), None);
    }
}
