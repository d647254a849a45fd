//! `uploads:` (the temporary-file upload API, DESIGN §6, seed 003) and
//! `file_host:` (the content-addressed host, seed 001). Sizes are written
//! `10MB` / `1GiB` / a number of bytes, durations `3d` / `72h` / `1m` /
//! `10s` / `500ms`; a bad one is refused at load with its path.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A byte count: `10MB`, `1GiB`, or a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

/// A span of time: `3d`, `72h`, `1m`, `10s`, `500ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UploadsConfig {
    /// How long an uploaded file lives (seed 003: 3 days).
    pub ttl: Span,
    /// How often each instance looks for expired files. Each file is
    /// deleted (and its bytes returned) once, by whichever instance holds
    /// the sweep lease in the state store.
    pub sweep_interval: Span,
    /// `POST /api/file-base64-upload`: the most bytes a decoded file may hold.
    pub max_base64_bytes: ByteSize,
    /// `POST /api/file-stream-upload`: the most bytes one file may hold
    /// (the key's quota still applies).
    pub max_stream_bytes: ByteSize,
    /// `POST /api/file-url-upload`: how the gateway fetches.
    pub url_fetch: UrlFetchConfig,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig {
            ttl: Span(Duration::from_secs(3 * 86_400)),
            sweep_interval: Span(Duration::from_secs(60)),
            max_base64_bytes: ByteSize(10_000_000),
            max_stream_bytes: ByteSize(5 << 30),
            url_fetch: UrlFetchConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UrlFetchConfig {
    /// The whole fetch, redirects included.
    pub timeout: Span,
    /// The most bytes fetched; more aborts the upload (413), nothing stored.
    pub max_bytes: ByteSize,
    /// Redirects followed, each checked like the first URL.
    pub max_redirects: u32,
    /// Hosts (exact names, `files.internal`) or address ranges
    /// (`10.9.0.0/16`, `fd00::/8`, a bare address) the fetch may reach
    /// although they are private, loopback or otherwise refused.
    pub allow: Vec<String>,
}

impl Default for UrlFetchConfig {
    fn default() -> Self {
        UrlFetchConfig {
            timeout: Span(Duration::from_secs(30)),
            max_bytes: ByteSize(100_000_000),
            max_redirects: 5,
            allow: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FileHostConfig {
    /// The backend bucket holding every hosted content once, named by its
    /// SHA-256 (not a tenant bucket; made on first use).
    pub bucket: String,
    /// The most bytes one file may hold (`/api/upload` with a key).
    pub max_bytes: ByteSize,
    /// The form URL `POST /upload`, and `/api/upload` without a key.
    pub anonymous: AnonymousUploads,
}

impl Default for FileHostConfig {
    fn default() -> Self {
        FileHostConfig {
            bucket: "kk-files".into(),
            max_bytes: ByteSize(100_000_000),
            anonymous: AnonymousUploads::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AnonymousUploads {
    /// Off by default: `POST /upload` answers 403, and `/api/upload`
    /// without a key 401.
    pub enabled: bool,
    /// Uploads per minute per client IP, counted in the state store (exact
    /// across instances on Redis).
    pub per_minute_per_ip: u32,
    /// The most bytes one anonymous file may hold.
    pub max_bytes: ByteSize,
    /// The most bytes all anonymous content may hold together (one ledger,
    /// `#anonymous`, each distinct content counted once).
    pub quota: ByteSize,
}

impl Default for AnonymousUploads {
    fn default() -> Self {
        AnonymousUploads {
            enabled: false,
            per_minute_per_ip: 10,
            max_bytes: ByteSize(10_000_000),
            quota: ByteSize(1 << 30),
        }
    }
}

/// One entry of `uploads.url_fetch.allow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowEntry {
    /// A range (`10.9.0.0/16`) or a single address.
    Net(ipnet::IpNet),
    /// An exact host name, lowercased, without a trailing dot.
    Host(String),
}

/// Parse an `allow` entry; `None` for an empty one (skipped).
pub fn parse_allow_entry(entry: &str) -> Result<Option<AllowEntry>, String> {
    let e = entry.trim();
    if e.is_empty() {
        return Ok(None);
    }
    if let Ok(net) = e.parse::<ipnet::IpNet>() {
        return Ok(Some(AllowEntry::Net(net)));
    }
    if let Ok(ip) = e.parse::<std::net::IpAddr>() {
        return Ok(Some(AllowEntry::Net(ip.into())));
    }
    let host = e.trim_end_matches('.');
    let is_name = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if is_name {
        Ok(Some(AllowEntry::Host(host.to_ascii_lowercase())))
    } else {
        Err(format!(
            "{e:?} is neither a host name nor an address range like 10.9.0.0/16"
        ))
    }
}

/// `3d`, `72h`, `1m`, `10s`, `500ms` → a duration (> 0).
pub fn parse_span(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 3d, 72h, 1m or 10s"))?;
    let ms: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => return Err(format!("{s:?} needs a unit: ms, s, m, h or d")),
        u => return Err(format!("unknown duration unit {u:?} (ms, s, m, h, d)")),
    };
    match n.checked_mul(ms) {
        Some(0) => Err("must be > 0".into()),
        Some(ms) => Ok(Duration::from_millis(ms)),
        None => Err(format!("{s:?} is too long")),
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Span;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration like 3d, 72h, 1m, 10s or 500ms")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Span, E> {
                parse_span(s).map(Span).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size like 10MB, 1GiB or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ByteSize, E> {
                match n {
                    0 => Err(E::custom("must be > 0")),
                    n => Ok(ByteSize(n)),
                }
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom("must be > 0"))
                    .and_then(|n| self.visit_u64(n))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteSize, E> {
                match super::parse_size(s).map_err(E::custom)? {
                    0 => Err(E::custom("must be > 0")),
                    n => Ok(ByteSize(n)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        assert_eq!(parse_span("3d").unwrap(), Duration::from_secs(259_200));
        assert_eq!(parse_span("72h").unwrap(), Duration::from_secs(259_200));
        assert_eq!(parse_span("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_span("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_span("10").unwrap_err().contains("unit"));
        assert!(parse_span("0s").is_err());
        assert!(parse_span("1w").unwrap_err().contains("unit"));
        assert!(parse_span("soon").is_err());
    }

    #[test]
    fn sections_load_with_defaults_and_name_bad_paths() {
        let c: UploadsConfig =
            serde_yaml::from_str("ttl: 10s\nurl_fetch: {max_bytes: 1MiB}").unwrap();
        assert_eq!(c.ttl, Span(Duration::from_secs(10)));
        assert_eq!(c.url_fetch.max_bytes, ByteSize(1 << 20));
        assert_eq!(c.url_fetch.max_redirects, 5);
        assert_eq!(c.sweep_interval, Span(Duration::from_secs(60)));
        let e = serde_yaml::from_str::<UploadsConfig>("ttl: 3 days").unwrap_err();
        assert!(e.to_string().contains("unit"), "{e}");
        assert!(serde_yaml::from_str::<UploadsConfig>("max_base64_bytes: 0").is_err());
        assert!(
            serde_yaml::from_str::<FileHostConfig>("anonymous: {enabled: true, colour: red}")
                .is_err()
        );
    }
}
