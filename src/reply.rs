//! The one way a handler answers: an [`Exchange`] holds the request (its
//! session and typed context) and writes the answer, running the route's
//! response filters on its header exactly there, so a handler never sees
//! the filter chain. Errors a handler returns are answered by
//! [`crate::http_error`], through the same filters, by the proxy.

use bytes::Bytes;
use kikaku_filters::{FilterChain, GatewayError, RequestCtx};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use serde_json::Value;

pub struct Exchange<'a> {
    pub session: &'a mut Session,
    pub ctx: &'a mut RequestCtx,
    chain: &'a FilterChain,
}

impl<'a> Exchange<'a> {
    /// Made by the proxy for the route's handler.
    pub(crate) fn new(
        session: &'a mut Session,
        chain: &'a FilterChain,
        ctx: &'a mut RequestCtx,
    ) -> Exchange<'a> {
        Exchange {
            session,
            ctx,
            chain,
        }
    }

    /// The route's response filters on a header about to be sent (rate
    /// limit headers, request id, ...). Call it once per answer, just
    /// before its header goes out.
    pub fn filter_response(&self, resp: &mut ResponseHeader) {
        self.chain.on_response(resp, self.ctx);
    }

    /// Answer with a JSON body the gateway made, through the response filters.
    pub async fn respond_json(&mut self, status: u16, body: Bytes) -> pingora::Result<()> {
        crate::http_error::respond_json(self.session, status, body, Some(self.chain), self.ctx)
            .await
    }

    /// `v` as the JSON answer (a `Value` always serializes), through the
    /// response filters; `Err` only when the client could not be written to.
    pub async fn send_json(&mut self, status: u16, v: &Value) -> pingora::Result<()> {
        self.respond_json(status, Bytes::from(v.to_string())).await
    }

    /// `send_json`, for handlers with nothing left to do when the client
    /// has gone (noted at debug level).
    pub async fn json(&mut self, status: u16, v: Value) -> Result<(), GatewayError> {
        if let Err(e) = self.send_json(status, &v).await {
            log::debug!("answer not delivered: {e}");
        }
        Ok(())
    }
}
