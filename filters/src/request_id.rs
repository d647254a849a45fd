//! `request_id`: keep a well-formed client `X-Request-Id`, otherwise mint one;
//! send it upstream and back to the client.

use async_trait::async_trait;
use pingora_http::{RequestHeader, ResponseHeader};
use rand::Rng;
use serde::Deserialize;

use crate::context::RequestCtx;
use crate::error::GatewayError;
use crate::filter::Filter;

pub const HEADER: &str = "x-request-id";
const MAX_LEN: usize = 128;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RequestIdConfig {
    /// Keep a valid incoming `X-Request-Id` (default true). Off: always mint.
    #[serde(default = "default_true")]
    pub trust_incoming: bool,
}

fn default_true() -> bool {
    true
}

impl RequestIdConfig {
    pub(crate) fn validate(&self) -> Vec<(&'static str, String)> {
        vec![]
    }
}

pub struct RequestId {
    trust_incoming: bool,
}

impl RequestId {
    pub fn new(cfg: &RequestIdConfig) -> Self {
        RequestId {
            trust_incoming: cfg.trust_incoming,
        }
    }
}

/// A client id is kept only when short and made of safe characters, so it
/// cannot inject anything into logs or headers.
fn acceptable(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// 128 random bits as 32 hex digits.
pub fn mint() -> String {
    format!("{:032x}", rand::thread_rng().gen::<u128>())
}

#[async_trait]
impl Filter for RequestId {
    fn name(&self) -> &'static str {
        "request_id"
    }

    async fn on_request(
        &self,
        req: &RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<(), GatewayError> {
        let incoming = req
            .headers
            .get(HEADER)
            .map(|v| v.as_bytes())
            .filter(|v| self.trust_incoming && acceptable(v));
        ctx.request_id = Some(match incoming {
            // acceptable() admits ASCII only, so this cannot fail.
            Some(v) => String::from_utf8_lossy(v).into_owned(),
            None => mint(),
        });
        Ok(())
    }

    fn on_upstream_request(&self, req: &mut RequestHeader, ctx: &RequestCtx) {
        if let Some(id) = &ctx.request_id {
            let _ = req.insert_header(HEADER, id.as_str());
        }
    }

    fn on_response(&self, resp: &mut ResponseHeader, ctx: &RequestCtx) {
        if let Some(id) = &ctx.request_id {
            let _ = resp.insert_header(HEADER, id.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        if let Some(id) = id {
            r.insert_header(HEADER, id).unwrap();
        }
        r
    }

    async fn run(cfg: RequestIdConfig, id: Option<&str>) -> String {
        let f = RequestId::new(&cfg);
        let mut ctx = RequestCtx::default();
        f.on_request(&req(id), &mut ctx).await.unwrap();
        ctx.request_id.unwrap()
    }

    #[tokio::test]
    async fn keeps_a_valid_client_id() {
        let cfg = RequestIdConfig {
            trust_incoming: true,
        };
        assert_eq!(run(cfg, Some("abc-123_x.y:z")).await, "abc-123_x.y:z");
    }

    #[tokio::test]
    async fn replaces_unsafe_or_long_ids() {
        let cfg = RequestIdConfig {
            trust_incoming: true,
        };
        let bad = run(cfg.clone(), Some("a b\"c")).await;
        assert_eq!(bad.len(), 32);
        let long = "a".repeat(200);
        assert_eq!(run(cfg, Some(&long)).await.len(), 32);
    }

    #[tokio::test]
    async fn mints_when_not_trusting() {
        let cfg = RequestIdConfig {
            trust_incoming: false,
        };
        assert_ne!(run(cfg, Some("client-id")).await, "client-id");
    }

    #[tokio::test]
    async fn id_goes_upstream_and_back() {
        let f = RequestId::new(&RequestIdConfig {
            trust_incoming: true,
        });
        let mut ctx = RequestCtx::default();
        f.on_request(&req(Some("rid-1")), &mut ctx).await.unwrap();
        let mut up = req(None);
        f.on_upstream_request(&mut up, &ctx);
        assert_eq!(up.headers.get(HEADER).unwrap(), "rid-1");
        let mut resp = ResponseHeader::build(200, None).unwrap();
        f.on_response(&mut resp, &ctx);
        assert_eq!(resp.headers.get(HEADER).unwrap(), "rid-1");
    }
}
