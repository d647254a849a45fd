//! Reading a management call: JSON bodies (unknown fields, wrong types and
//! bad values refused with the field's name) and query strings.

use kikaku_filters::{ErrorKind, GatewayError};
use serde::de::DeserializeOwned;

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorKind::InvalidParameter, msg)
}

/// The body as `T`. Every error names the field it is about.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, GatewayError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::new(
            ErrorKind::MissingParameter,
            "The body must be a JSON object.",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let what = strip_position(&inner.to_string());
        if inner.is_syntax() || inner.is_eof() {
            bad(format!("The body is not valid JSON: {what}."))
        } else if matches!(path.as_str(), "" | "." | "?") {
            bad(format!("The body is not what this endpoint takes: {what}."))
        } else {
            bad(format!("{path}: {what}."))
        }
    })?;
    de.end()
        .map_err(|_| bad("The body has something after its JSON object."))?;
    Ok(value)
}

/// serde_json ends its messages with " at line 1 column 17": the field name
/// says more.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// A query string, decoded.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(query: Option<&str>) -> Result<Query, GatewayError> {
        let pairs = sigv4::parse_query(query.unwrap_or(""))
            .ok_or_else(|| bad("The query string is not valid percent-encoding."))?;
        Ok(Query(pairs))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// An integer parameter within `min..=max`, or `default` when absent.
    pub fn number(
        &self,
        name: &str,
        min: u64,
        max: u64,
        default: u64,
    ) -> Result<u64, GatewayError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    bad(format!(
                        "{name}: must be a whole number from {min} to {max}."
                    ))
                }),
        }
    }

    /// `page` (from 1) and `limit` (1–100, default 20).
    pub fn page(&self) -> Result<(u64, u64), GatewayError> {
        Ok((
            self.number("page", 1, 1_000_000, 1)?,
            self.number("limit", 1, 100, 20)?,
        ))
    }

    /// A parameter that must be one of `allowed`, if present.
    pub fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<&str>, GatewayError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v)),
            Some(v) => Err(bad(format!(
                "{name}: {v:?} is not one of {}.",
                allowed.join(", ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        owner: String,
        quota: Option<u64>,
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_body::<Body>(br#"{"owner":"a","quota":"x"}"#).unwrap_err();
        assert!(
            e.message.starts_with("quota: invalid type"),
            "{}",
            e.message
        );
        let e = parse_body::<Body>(br#"{"owner":"a","colour":1}"#).unwrap_err();
        assert!(
            e.message.contains("unknown field `colour`"),
            "{}",
            e.message
        );
        let e = parse_body::<Body>(b"").unwrap_err();
        assert_eq!(e.kind, ErrorKind::MissingParameter);
        let e = parse_body::<Body>(br#"{"owner":"a"} x"#).unwrap_err();
        assert!(e.message.contains("after"), "{}", e.message);
        assert!(parse_body::<Body>(br#"{"owner":"a"}"#).is_ok());
    }

    #[test]
    fn query_numbers_are_bounded() {
        let q = Query::parse(Some("page=2&limit=500&type=image")).unwrap();
        assert!(q.page().is_err());
        let q = Query::parse(Some("page=2&limit=50")).unwrap();
        assert_eq!(q.page().unwrap(), (2, 50));
        let q = Query::parse(Some("type=robot")).unwrap();
        assert!(q.one_of("type", &["image", "storage"]).is_err());
    }
}
