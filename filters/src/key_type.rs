//! `key_type`: a route serves either image keys or storage keys. The wrong
//! type gets a 403 with the customer portal's own sentences (DESIGN §2).

use async_trait::async_trait;
use pingora_http::RequestHeader;
use serde::Deserialize;

use crate::context::RequestCtx;
use crate::error::{ErrorKind, GatewayError};
use crate::filter::Filter;
use crate::keys::KeyType;

pub const NEEDS_IMAGE_KEY: &str = "You are logged in with an S3 Storage key. Please login with an AI Image API key (kikaku_xxx) to access this feature.";
/// Both sentences are verbatim from the customer portal (seed 000).
pub const NEEDS_STORAGE_KEY: &str = "You are logged in with an AI Image key. Please login with an S3 Storage API key (kikaku_s3_xxx) to access this feature.";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyTypeConfig {
    pub require: KeyType,
}

pub struct KeyTypeCheck {
    require: KeyType,
}

impl KeyTypeCheck {
    pub fn new(cfg: &KeyTypeConfig) -> Self {
        KeyTypeCheck {
            require: cfg.require,
        }
    }
}

#[async_trait]
impl Filter for KeyTypeCheck {
    fn name(&self) -> &'static str {
        "key_type"
    }

    async fn on_request(
        &self,
        _req: &RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<(), GatewayError> {
        let key = ctx.require_key("key_type")?;
        if key.key_type == self.require {
            return Ok(());
        }
        let msg = match self.require {
            KeyType::Image => NEEDS_IMAGE_KEY,
            KeyType::Storage => NEEDS_STORAGE_KEY,
        };
        Err(GatewayError::new(ErrorKind::WrongKeyType, msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{test_key, KeyStatus};
    use std::sync::Arc;

    async fn check(require: KeyType, key: &str) -> Result<(), GatewayError> {
        let f = KeyTypeCheck::new(&KeyTypeConfig { require });
        let mut ctx = RequestCtx {
            key: Some(Arc::new(test_key(key, KeyStatus::Active, None))),
            ..RequestCtx::default()
        };
        let req = RequestHeader::build("GET", b"/", None).unwrap();
        f.on_request(&req, &mut ctx).await
    }

    #[tokio::test]
    async fn matching_type_passes() {
        assert!(check(KeyType::Image, "kikaku_a").await.is_ok());
        assert!(check(KeyType::Storage, "kikaku_s3_a").await.is_ok());
    }

    #[tokio::test]
    async fn wrong_type_gets_the_portal_sentence() {
        let e = check(KeyType::Image, "kikaku_s3_a").await.unwrap_err();
        assert_eq!((e.status(), e.message.as_str()), (403, NEEDS_IMAGE_KEY));
        let e = check(KeyType::Storage, "kikaku_a").await.unwrap_err();
        assert_eq!((e.status(), e.message.as_str()), (403, NEEDS_STORAGE_KEY));
    }
}
