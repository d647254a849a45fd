//! Checks serde cannot make: ranges, references between sections, formats.
//! Every problem is collected, each with its path.

use std::collections::HashSet;
use std::net::SocketAddr;

use kikaku_filters::registry::validate_chain;
use kikaku_filters::KeyType;

use super::{Config, ConfigError, HandlerConfig, KeyConfig, QuotaValue};

pub fn validate(c: &Config) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let mut err = |path: String, msg: &str| errs.push(ConfigError::new(path, msg));

    if c.listeners.public.address.parse::<SocketAddr>().is_err() {
        err(
            "listeners.public.address".into(),
            "must be IP:PORT, e.g. 127.0.0.1:8080",
        );
    }
    for (name, l, admin) in [
        ("public", Some(&c.listeners.public), false),
        ("admin", c.listeners.admin.as_ref(), true),
    ] {
        let Some(l) = l else { continue };
        if let Some(tls) = &l.tls {
            super::tls::validate(&format!("listeners.{name}.tls"), tls, admin, &mut errs);
            if l.h2c {
                errs.push(ConfigError::new(
                    format!("listeners.{name}.h2c"),
                    "is for plain-text listeners: with `tls`, HTTP/2 is `tls.http2`",
                ));
            }
        }
    }
    for (name, u) in &c.upstreams {
        super::upstream::check(name, u, &mut errs);
    }
    let mut err = |path: String, msg: &str| errs.push(ConfigError::new(path, msg));
    if let Some(admin) = &c.listeners.admin {
        if admin.address.parse::<SocketAddr>().is_err() {
            err(
                "listeners.admin.address".into(),
                "must be IP:PORT, e.g. 127.0.0.1:9090",
            );
        } else if admin.address == c.listeners.public.address {
            err(
                "listeners.admin.address".into(),
                "must differ from listeners.public.address",
            );
        }
    }
    if let Some(a) = &c.admin {
        if a.token.chars().count() < super::MIN_ADMIN_TOKEN_CHARS {
            err(
                "admin.token".into(),
                "must be at least 16 characters (it guards the management API)",
            );
        }
    }
    if let Some(u) = c.public_url.as_deref().filter(|u| !u.is_empty()) {
        let rest = u
            .strip_prefix("https://")
            .or_else(|| u.strip_prefix("http://"));
        if rest.is_none_or(|r| r.trim_end_matches('/').is_empty() || r.contains(['?', '#', ' '])) {
            err(
                "public_url".into(),
                "must be an absolute http(s) URL with no query, e.g. https://gateway.example.com",
            );
        }
    }
    if let Some(sim) = &c.simulators.ark {
        if sim.listen.parse::<SocketAddr>().is_err() {
            err("simulators.ark.listen".into(), "must be IP:PORT");
        }
        if sim.fault_every == 0 {
            err("simulators.ark.fault_every".into(), "must be > 0");
        }
    }
    for (i, entry) in c.uploads.url_fetch.allow.iter().enumerate() {
        if let Err(e) = super::parse_allow_entry(entry) {
            err(format!("uploads.url_fetch.allow[{i}]"), &e);
        }
    }
    if let Err(e) = super::names::check_service_bucket(&c.file_host.bucket) {
        err("file_host.bucket".into(), &e);
    }
    if c.file_host.anonymous.per_minute_per_ip == 0 {
        err(
            "file_host.anonymous.per_minute_per_ip".into(),
            "must be > 0",
        );
    }
    if c.state.logs_per_key == 0 {
        err("state.logs_per_key".into(), "must be > 0");
    }
    match (&c.state.backend, &c.state.redis) {
        (super::StateBackend::Redis, None) => err(
            "state.redis".into(),
            "is required with backend: redis (url: redis://host:port)",
        ),
        (super::StateBackend::Redis, Some(r)) => {
            if r.cluster.is_empty()
                && !(r.url.starts_with("redis://") || r.url.starts_with("rediss://"))
            {
                err(
                    "state.redis.url".into(),
                    "must be redis://host:port or rediss://host:port",
                );
            }
            if r.timeout_ms == 0 || r.reservation_ttl_seconds == 0 {
                err(
                    "state.redis".into(),
                    "timeout_ms and reservation_ttl_seconds must be > 0",
                );
            }
        }
        (super::StateBackend::Embedded, Some(_)) => {
            err("state.redis".into(), "is only used with backend: redis")
        }
        _ => {}
    }
    if c.server.threads == 0 {
        err("server.threads".into(), "must be > 0");
    }
    if c.server.max_request_header_bytes < 1024 {
        err(
            "server.max_request_header_bytes".into(),
            "must be at least 1024",
        );
    }
    if !(10..=256).contains(&c.server.max_request_headers) {
        err(
            "server.max_request_headers".into(),
            "must be between 10 and 256 (Pingora's own limit)",
        );
    }
    if let Some(ca) = &c.server.ca_file {
        if !std::path::Path::new(ca).is_file() {
            err("server.ca_file".into(), "is not a readable file");
        }
    }
    if c.data_dir.is_empty() {
        err("data_dir".into(), "must not be empty");
    }

    let mut route_names = HashSet::new();
    for (i, r) in c.routes.iter().enumerate() {
        let p = format!("routes[{i}]");
        if r.name.is_empty() {
            err(format!("{p}.name"), "must not be empty");
        } else if !route_names.insert(r.name.as_str()) {
            err(format!("{p}.name"), "is used by an earlier route");
        }
        if !r.matcher.path_prefix.starts_with('/') {
            err(format!("{p}.match.path_prefix"), "must start with /");
        }
        for (j, m) in r.matcher.methods.iter().enumerate() {
            if http::Method::from_bytes(m.as_bytes()).is_err()
                || m.chars().any(|c| c.is_ascii_lowercase())
            {
                err(
                    format!("{p}.match.methods[{j}]"),
                    "must be an upper-case HTTP method",
                );
            }
        }
        match (&r.upstream, &r.handler) {
            (Some(_), Some(_)) | (None, None) => {
                err(p.clone(), "needs exactly one of `upstream` or `handler`")
            }
            (Some(u), None) if !c.upstreams.contains_key(u) => {
                err(format!("{p}.upstream"), "names no upstream in `upstreams`")
            }
            (None, Some(HandlerConfig::NotImplemented { message })) if message.is_empty() => {
                err(format!("{p}.handler.message"), "must not be empty")
            }
            (None, Some(HandlerConfig::ImageGeneration(ig))) => {
                if !c.upstreams.contains_key(&ig.upstream) {
                    err(
                        format!("{p}.handler.upstream"),
                        "names no upstream in `upstreams`",
                    );
                }
                if ig.api_key.is_empty() {
                    err(
                        format!("{p}.handler.api_key"),
                        "must not be empty (use ${ARK_API_KEY})",
                    );
                }
                if ig.deadline_seconds == 0
                    || ig.model_images_per_minute == 0
                    || ig.max_body_bytes == 0
                {
                    err(
                        format!("{p}.handler"),
                        "deadline_seconds, max_body_bytes and model_images_per_minute must be > 0",
                    );
                }
                if ig.models.as_ref().is_some_and(|m| m.is_empty()) {
                    err(
                        format!("{p}.handler.models"),
                        "must list at least one model when given",
                    );
                }
                for (path, msg) in
                    super::images::model_problems(ig.models.as_deref().unwrap_or(&[]))
                {
                    err(format!("{p}.handler.models{path}"), &msg);
                }
            }
            _ => {}
        }
        let has = |want: fn(&kikaku_filters::FilterConfig) -> bool| r.filters.iter().any(want);
        if r.handler.as_ref().is_some_and(|h| h.needs_storage()) && c.storage.is_none() {
            err(
                format!("{p}.handler"),
                "this handler needs the storage section (an S3 backend)",
            );
        }
        if matches!(r.handler, Some(HandlerConfig::S3Endpoint)) {
            if !has(|f| matches!(f, kikaku_filters::FilterConfig::S3Auth(_))) {
                err(
                    format!("{p}.filters"),
                    "the S3 endpoint needs s3_auth in its chain",
                );
            }
        } else if r.handler.as_ref().is_some_and(|h| h.needs_key())
            && !has(|f| matches!(f, kikaku_filters::FilterConfig::KeyAuth(_)))
        {
            err(
                format!("{p}.filters"),
                "this handler serves a key's own data: the chain needs key_auth",
            );
        }
        for (j, fe) in validate_chain(&r.filters) {
            err(format!("{p}.filters[{j}].{}", fe.path), &fe.message);
        }
    }

    let mut seen_keys = HashSet::new();
    let mut seen_access = HashSet::new();
    for (i, k) in c.keys.iter().enumerate() {
        let p = format!("keys[{i}]");
        check_key(&p, k, &mut seen_keys, &mut err);
        if let Some(cred) = &k.s3 {
            if !seen_access.insert(cred.access_key_id.clone()) {
                err(format!("{p}.s3.access_key_id"), "is used by another key");
            }
        }
    }
    if let Some(st) = &c.storage {
        if !c.upstreams.contains_key(&st.backend.upstream) {
            err(
                "storage.backend.upstream".into(),
                "must name an entry of upstreams",
            );
        }
        let prefix = &st.backend.bucket_prefix;
        if prefix.len() > super::names::MAX_PREFIX_LEN
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            err(
                "storage.backend.bucket_prefix".into(),
                "must be at most 10 of a-z, 0-9 and '-'",
            );
        }
        match (
            st.backend.access_key_id.is_empty(),
            st.backend.secret_access_key.is_empty(),
        ) {
            (false, false) => {}
            (true, true) if st.embedded.is_some() => {} // the embedded backend's own
            (true, true) => err(
                "storage.backend".into(),
                "access_key_id and secret_access_key are required (only the embedded backend makes its own)",
            ),
            _ => err(
                "storage.backend".into(),
                "access_key_id and secret_access_key go together: set both or neither",
            ),
        }
        if let Some(e) = &st.embedded {
            if e.listen.parse::<SocketAddr>().is_err() {
                err("storage.embedded.listen".into(), "must be IP:PORT");
            }
        }
        if let Err(e) = super::names::check_service_bucket(&st.gallery.bucket) {
            err("storage.gallery.bucket".into(), &e);
        }
        if st.gallery.concurrency == 0 || st.gallery.attempts == 0 {
            err(
                "storage.gallery".into(),
                "concurrency and attempts must be > 0",
            );
        }
    }
    errs
}

fn check_key(
    p: &str,
    k: &KeyConfig,
    seen: &mut HashSet<[u8; 32]>,
    err: &mut impl FnMut(String, &str),
) {
    let hash = match (&k.key, &k.key_sha256) {
        (Some(key), None) => {
            match KeyType::from_key(key) {
                None => err(format!("{p}.key"), "must start with kikaku_ or kikaku_s3_"),
                Some(t) if k.key_type.is_some_and(|d| d != t) => {
                    err(format!("{p}.type"), "contradicts the key's prefix")
                }
                Some(t) if key.len() <= t.prefix().len() => {
                    err(format!("{p}.key"), "has nothing after its prefix")
                }
                Some(_) => {}
            }
            if !key.bytes().all(|b| b.is_ascii_graphic()) {
                err(format!("{p}.key"), "must be printable ASCII without spaces");
            }
            Some(kikaku_filters::keys::hash_key(key))
        }
        (None, Some(hex)) => {
            if k.key_type.is_none() {
                err(
                    format!("{p}.type"),
                    "is required with key_sha256 (image or storage)",
                );
            }
            let h = parse_sha256(hex);
            if h.is_none() {
                err(format!("{p}.key_sha256"), "must be 64 hex digits");
            }
            h
        }
        _ => {
            err(p.to_string(), "needs exactly one of `key` or `key_sha256`");
            None
        }
    };
    if let Some(h) = hash {
        if !seen.insert(h) {
            err(p.to_string(), "the same key is listed twice");
        }
    }
    if k.owner.is_empty() {
        err(format!("{p}.owner"), "must not be empty");
    }
    for (field, v) in [("created_at", &k.created_at), ("expires_at", &k.expires_at)] {
        if let Some(v) = v {
            if parse_time(v).is_none() {
                err(
                    format!("{p}.{field}"),
                    "must be an RFC 3339 time or YYYY-MM-DD",
                );
            }
        }
    }
    if k.rate_limit_per_minute == Some(0) {
        err(format!("{p}.rate_limit_per_minute"), "must be > 0");
    }
    let key_type = k
        .key_type
        .or_else(|| k.key.as_deref().and_then(KeyType::from_key));
    if key_type == Some(KeyType::Image) && (k.s3.is_some() || k.bucket.is_some()) {
        err(
            p.to_string(),
            "bucket and s3 belong to storage keys (kikaku_s3_...)",
        );
    }
    if let Some(b) = &k.bucket {
        if let Err(m) = super::names::check_tenant_bucket(b) {
            err(format!("{p}.bucket"), &m);
        }
    }
    if let Some(cred) = &k.s3 {
        if cred.access_key_id.len() < 16
            || !cred
                .access_key_id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            err(
                format!("{p}.s3.access_key_id"),
                "must be at least 16 of A-Z and 0-9",
            );
        }
        if cred.secret_access_key.len() < 16 {
            err(
                format!("{p}.s3.secret_access_key"),
                "must be at least 16 characters",
            );
        }
    }
    if let (Some(q), Some(t)) = (&k.quota, key_type) {
        if let Err(m) = quota_amount(q, t) {
            err(format!("{p}.quota"), &m);
        }
    }
}

/// A SHA-256 written as 64 hex digits (`key_sha256`).
pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    kikaku_filters::keys::parse_hex32(hex)
}

/// Unix seconds from an RFC 3339 time or a `YYYY-MM-DD` date (midnight UTC).
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp());
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp())
}

/// A quota as a number: images for image keys, bytes for storage keys.
pub fn quota_amount(q: &QuotaValue, t: KeyType) -> Result<u64, String> {
    let n = match (q, t) {
        (QuotaValue::Count(n), _) => *n,
        (QuotaValue::Size(s), KeyType::Storage) => parse_size(s)?,
        (QuotaValue::Size(_), KeyType::Image) => {
            return Err("image keys count images: use a whole number".into())
        }
    };
    if n == 0 {
        return Err("must be > 0".into());
    }
    Ok(n)
}

/// `1GiB`, `500MB`, `1024` → bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 1GiB or 500MB"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        u => {
            return Err(format!(
                "unknown size unit {u:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("42").unwrap(), 42);
        assert!(parse_size("1 parsec").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-02").unwrap(), 86_400);
        assert_eq!(parse_time("1970-01-01T00:01:00Z").unwrap(), 60);
        assert!(parse_time("yesterday").is_none());
    }
}
