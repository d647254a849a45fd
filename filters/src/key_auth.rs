//! `key_auth`: authenticate `Authorization: Bearer <key>` against the key
//! directory. Missing, malformed or unknown → 401; suspended or expired → 403.
//! The client's key is not forwarded upstream unless asked for.

use std::sync::Arc;

use async_trait::async_trait;
use pingora_http::{RequestHeader, ResponseHeader};
use serde::Deserialize;

use crate::clock::now_unix;
use crate::context::RequestCtx;
use crate::error::{ErrorKind, GatewayError};
use crate::filter::Filter;
use crate::keys::{KeyDirectory, KeyStatus, StoredKeys};

/// Longest key accepted; anything longer cannot be a key of ours.
const MAX_KEY_LEN: usize = 256;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyAuthConfig {
    /// Send the client's `Authorization` header upstream (default false: the
    /// upstream gets the gateway's own credentials, never the customer key).
    #[serde(default)]
    pub forward_key: bool,
}

pub struct KeyAuth {
    keys: Arc<KeyDirectory>,
    stored: Option<Arc<StoredKeys>>,
    forward_key: bool,
}

impl KeyAuth {
    pub fn new(
        cfg: &KeyAuthConfig,
        keys: Arc<KeyDirectory>,
        stored: Option<Arc<StoredKeys>>,
    ) -> Self {
        KeyAuth {
            keys,
            stored,
            forward_key: cfg.forward_key,
        }
    }
}

fn unauthorized(msg: &str) -> GatewayError {
    GatewayError::new(ErrorKind::Unauthorized, msg)
}

/// The key from an `Authorization` header value, or why it is not usable.
pub fn bearer_key(value: &[u8]) -> Result<&str, GatewayError> {
    let value = std::str::from_utf8(value)
        .map_err(|_| unauthorized("Malformed Authorization header: it must be ASCII."))?;
    let (scheme, rest) = value.split_once(' ').ok_or_else(|| {
        unauthorized("Malformed Authorization header: expected 'Bearer <api key>'.")
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthorized(
            "Unsupported Authorization scheme: expected 'Bearer <api key>'.",
        ));
    }
    let key = rest.trim();
    if key.is_empty() {
        return Err(unauthorized(
            "Malformed Authorization header: the API key is empty.",
        ));
    }
    if key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(unauthorized("Invalid API key."));
    }
    Ok(key)
}

/// A known key may still be refused: suspended (403) or expired (403).
pub fn check_usable(key: &crate::keys::ApiKey) -> Result<(), GatewayError> {
    if key.status == KeyStatus::Suspended {
        return Err(GatewayError::new(
            ErrorKind::KeySuspended,
            "This API key is suspended. Please contact an administrator.",
        ));
    }
    if let Some(exp) = key.expires_at {
        if now_unix() >= exp {
            return Err(GatewayError::new(
                ErrorKind::KeyExpired,
                "This API key has expired. Please contact an administrator.",
            ));
        }
    }
    Ok(())
}

#[async_trait]
impl Filter for KeyAuth {
    fn name(&self) -> &'static str {
        "key_auth"
    }

    async fn on_request(
        &self,
        req: &RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<(), GatewayError> {
        let mut values = req.headers.get_all(http::header::AUTHORIZATION).iter();
        let value = values.next().ok_or_else(|| {
            unauthorized("Missing API key. Send it as 'Authorization: Bearer kikaku_...'.")
        })?;
        if values.next().is_some() {
            return Err(unauthorized(
                "Malformed request: more than one Authorization header.",
            ));
        }
        let presented = bearer_key(value.as_bytes())?;
        // The config's keys first, then the state store's (cached ≤ 1 s).
        let key = match self.keys.lookup(presented) {
            Some(k) => Some(k),
            None => match &self.stored {
                Some(stored) => stored
                    .lookup(presented)
                    .await
                    .map_err(|e| GatewayError::unavailable("Key lookup", e))?,
                None => None,
            },
        };
        let key = key.ok_or_else(|| unauthorized("Invalid API key."))?;
        check_usable(&key)?;
        ctx.key = Some(key);
        Ok(())
    }

    fn on_upstream_request(&self, req: &mut RequestHeader, _ctx: &RequestCtx) {
        if !self.forward_key {
            req.remove_header(&http::header::AUTHORIZATION);
        }
    }

    /// RFC 6750: a 401 names the scheme the client should use.
    fn on_response(&self, resp: &mut ResponseHeader, ctx: &RequestCtx) {
        if resp.status == 401 && ctx.rejected_by == Some("key_auth") {
            let _ = resp.insert_header("www-authenticate", "Bearer realm=\"kikaku\"");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::test_key;

    fn filter() -> KeyAuth {
        let dir = KeyDirectory::new([
            test_key("kikaku_good", KeyStatus::Active, None),
            test_key("kikaku_paused", KeyStatus::Suspended, None),
            test_key("kikaku_old", KeyStatus::Active, Some(1)),
            test_key("kikaku_s3_future", KeyStatus::Active, Some(i64::MAX)),
        ]);
        KeyAuth::new(&KeyAuthConfig::default(), Arc::new(dir), None)
    }

    async fn auth(value: Option<&[u8]>) -> Result<RequestCtx, GatewayError> {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        if let Some(v) = value {
            req.insert_header("authorization", pingora_http::header_value_from_slice(v))
                .unwrap();
        }
        let mut ctx = RequestCtx::default();
        filter().on_request(&req, &mut ctx).await.map(|_| ctx)
    }

    #[tokio::test]
    async fn good_key_is_admitted() {
        let ctx = auth(Some(b"Bearer kikaku_good")).await.unwrap();
        assert_eq!(ctx.key.unwrap().owner, "test");
        assert!(auth(Some(b"bearer kikaku_s3_future")).await.is_ok());
    }

    #[tokio::test]
    async fn outcomes_by_kind() {
        let kind = |r: Result<RequestCtx, GatewayError>| r.unwrap_err().kind;
        assert_eq!(kind(auth(None).await), ErrorKind::Unauthorized);
        assert_eq!(
            kind(auth(Some(b"Bearer kikaku_nope")).await),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            kind(auth(Some(b"Bearer kikaku_paused")).await),
            ErrorKind::KeySuspended
        );
        assert_eq!(
            kind(auth(Some(b"Bearer kikaku_old")).await),
            ErrorKind::KeyExpired
        );
    }

    #[tokio::test]
    async fn malformed_headers_are_401_not_panics() {
        for v in [
            &b"kikaku_good"[..],
            b"Basic a2lrYWt1",
            b"Bearer ",
            b"Bearer\xff\xfe",
            b"Bearer kikaku_good extra",
            &[b'x'; 5000][..],
        ] {
            let e = auth(Some(v)).await.unwrap_err();
            assert_eq!(
                e.kind,
                ErrorKind::Unauthorized,
                "{:?}",
                String::from_utf8_lossy(v)
            );
        }
    }

    #[test]
    fn refusals_name_the_bearer_scheme() {
        let ctx = RequestCtx {
            rejected_by: Some("key_auth"),
            ..RequestCtx::default()
        };
        let mut resp = ResponseHeader::build(401, None).unwrap();
        filter().on_response(&mut resp, &ctx);
        assert_eq!(resp.headers["www-authenticate"], "Bearer realm=\"kikaku\"");
        let mut ok = ResponseHeader::build(200, None).unwrap();
        filter().on_response(&mut ok, &RequestCtx::default());
        assert!(ok.headers.get("www-authenticate").is_none());
    }

    #[test]
    fn client_key_is_stripped_upstream_by_default() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("authorization", "Bearer kikaku_good")
            .unwrap();
        filter().on_upstream_request(&mut req, &RequestCtx::default());
        assert!(req.headers.get("authorization").is_none());
    }
}
