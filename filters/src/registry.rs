//! The filter registry: the YAML name of each filter mapped to its typed
//! config and its constructor. Adding a filter = one file + one variant here.

use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use crate::filter::{BuildEnv, Filter, FilterChain};
use crate::{ip_guard, key_auth, key_type, rate_limit, request_id, s3_auth};

/// One entry of a route's `filters:` list, e.g. `- rate_limit: {per_minute: 10}`.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterConfig {
    RequestId(request_id::RequestIdConfig),
    IpGuard(ip_guard::IpGuardConfig),
    KeyAuth(key_auth::KeyAuthConfig),
    S3Auth(s3_auth::S3AuthConfig),
    KeyType(key_type::KeyTypeConfig),
    RateLimit(rate_limit::RateLimitConfig),
}

/// The YAML names, in the order the docs list them.
pub const NAMES: &[&str] = &[
    "request_id",
    "ip_guard",
    "key_auth",
    "s3_auth",
    "key_type",
    "rate_limit",
];

/// Each entry is a one-key map: the filter's name, then its config.
impl<'de> Deserialize<'de> for FilterConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = FilterConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map with one filter name, e.g. `rate_limit: {per_minute: 10}`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FilterConfig, A::Error> {
                let name: String = map.next_key()?.ok_or_else(|| {
                    de::Error::custom("empty filter entry; expected one filter name")
                })?;
                let cfg = match name.as_str() {
                    "request_id" => FilterConfig::RequestId(map.next_value()?),
                    "ip_guard" => FilterConfig::IpGuard(map.next_value()?),
                    "key_auth" => FilterConfig::KeyAuth(map.next_value()?),
                    "s3_auth" => FilterConfig::S3Auth(map.next_value()?),
                    "key_type" => FilterConfig::KeyType(map.next_value()?),
                    "rate_limit" => FilterConfig::RateLimit(map.next_value()?),
                    other => return Err(de::Error::unknown_variant(other, NAMES)),
                };
                if map.next_key::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom(
                        "one filter per list entry; start another entry with '- '",
                    ));
                }
                Ok(cfg)
            }
        }
        d.deserialize_map(EntryVisitor)
    }
}

/// A config error inside a filter entry: the path below the entry and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterConfigError {
    pub path: String,
    pub message: String,
}

impl FilterConfig {
    pub fn name(&self) -> &'static str {
        match self {
            FilterConfig::RequestId(_) => "request_id",
            FilterConfig::IpGuard(_) => "ip_guard",
            FilterConfig::KeyAuth(_) => "key_auth",
            FilterConfig::S3Auth(_) => "s3_auth",
            FilterConfig::KeyType(_) => "key_type",
            FilterConfig::RateLimit(_) => "rate_limit",
        }
    }

    /// Check the values serde cannot: ranges, non-empty strings.
    /// Paths are relative to the entry (`rate_limit.per_minute`).
    pub fn validate(&self) -> Vec<FilterConfigError> {
        let errs: Vec<(&str, String)> = match self {
            FilterConfig::RequestId(c) => c.validate(),
            FilterConfig::IpGuard(c) => c.validate(),
            FilterConfig::KeyAuth(_) | FilterConfig::S3Auth(_) | FilterConfig::KeyType(_) => {
                vec![]
            }
            FilterConfig::RateLimit(c) => c.validate(),
        };
        errs.into_iter()
            .map(|(field, message)| FilterConfigError {
                path: format!("{}.{field}", self.name()),
                message,
            })
            .collect()
    }

    pub fn build(&self, env: &BuildEnv) -> Arc<dyn Filter> {
        match self {
            FilterConfig::RequestId(c) => Arc::new(request_id::RequestId::new(c)),
            FilterConfig::IpGuard(c) => Arc::new(ip_guard::IpGuard::new(c)),
            FilterConfig::KeyAuth(c) => Arc::new(key_auth::KeyAuth::new(
                c,
                env.keys.clone(),
                env.stored_keys.clone(),
            )),
            FilterConfig::S3Auth(c) => Arc::new(s3_auth::S3Auth::new(
                c,
                env.keys.clone(),
                env.stored_keys.clone(),
                env.s3_region.clone(),
            )),
            FilterConfig::KeyType(c) => Arc::new(key_type::KeyTypeCheck::new(c)),
            FilterConfig::RateLimit(c) => {
                Arc::new(rate_limit::RateLimit::new(c, env.state.clone()))
            }
        }
    }

    /// Filters that read the authenticated key must come after `key_auth`.
    fn needs_key(&self) -> bool {
        matches!(self, FilterConfig::KeyType(_) | FilterConfig::RateLimit(_))
    }
}

/// Validate a whole chain (each entry, then their order). Errors carry the
/// index of the entry they belong to.
pub fn validate_chain(chain: &[FilterConfig]) -> Vec<(usize, FilterConfigError)> {
    let mut errors = Vec::new();
    let mut seen_auth = false;
    for (i, f) in chain.iter().enumerate() {
        for e in f.validate() {
            errors.push((i, e));
        }
        if matches!(f, FilterConfig::KeyAuth(_) | FilterConfig::S3Auth(_)) {
            seen_auth = true;
        }
        if f.needs_key() && !seen_auth {
            errors.push((
                i,
                FilterConfigError {
                    path: f.name().to_string(),
                    message:
                        "must come after key_auth or s3_auth in the chain (it reads the authenticated key)"
                            .into(),
                },
            ));
        }
    }
    errors
}

/// Build a validated chain.
pub fn build_chain(chain: &[FilterConfig], env: &BuildEnv) -> FilterChain {
    FilterChain::new(chain.iter().map(|f| f.build(env)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_names_map_to_typed_configs() {
        let chain: Vec<FilterConfig> = serde_yaml::from_str(
            "- request_id: {}\n- key_auth: {}\n- key_type: {require: image}\n- rate_limit: {per_minute: 5}\n",
        )
        .unwrap();
        assert_eq!(
            chain.iter().map(|f| f.name()).collect::<Vec<_>>(),
            ["request_id", "key_auth", "key_type", "rate_limit"]
        );
        assert!(validate_chain(&chain).is_empty());
    }

    #[test]
    fn unknown_filter_and_unknown_field_are_rejected() {
        assert!(serde_yaml::from_str::<Vec<FilterConfig>>("- rot13: {}\n").is_err());
        assert!(serde_yaml::from_str::<Vec<FilterConfig>>(
            "- rate_limit: {per_minute: 5, burst: 2}\n"
        )
        .is_err());
    }

    #[test]
    fn key_filters_before_auth_are_an_error() {
        let chain: Vec<FilterConfig> =
            serde_yaml::from_str("- rate_limit: {}\n- key_auth: {}\n").unwrap();
        let errs = validate_chain(&chain);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, 0);
        assert!(errs[0].1.message.contains("after key_auth"));
    }

    #[test]
    fn zero_rate_is_reported_with_its_path() {
        let chain: Vec<FilterConfig> =
            serde_yaml::from_str("- key_auth: {}\n- rate_limit: {per_minute: 0}\n").unwrap();
        let errs = validate_chain(&chain);
        assert_eq!(errs[0].0, 1);
        assert_eq!(errs[0].1.path, "rate_limit.per_minute");
        assert_eq!(errs[0].1.message, "must be > 0");
    }
}
