//! The filter trait and the ordered chain a route runs.

use std::sync::Arc;

use async_trait::async_trait;
use pingora_http::{RequestHeader, ResponseHeader};

use crate::context::RequestCtx;
use crate::error::GatewayError;
use crate::keys::{KeyDirectory, StoredKeys};
use crate::state::RateLimits;

/// What a filter may capture when it is built: the services of the config
/// snapshot it belongs to. Nothing is looked up by name per request.
#[derive(Clone)]
pub struct BuildEnv {
    /// The config's keys.
    pub keys: Arc<KeyDirectory>,
    /// Keys in the state store (shared by every snapshot of the process).
    pub stored_keys: Option<Arc<StoredKeys>>,
    /// Where rate limits are counted (the state backend).
    pub state: Arc<dyn RateLimits>,
    /// The region S3 clients sign for (`storage.region`).
    pub s3_region: String,
}

/// One step of a route's chain. Every hook has a no-op default, so a filter
/// implements only the phases it needs.
#[async_trait]
pub trait Filter: Send + Sync {
    /// The YAML name, for metrics and logs.
    fn name(&self) -> &'static str;

    /// Request phase, before any upstream work. An error answers the client
    /// locally and stops the chain.
    async fn on_request(
        &self,
        _req: &RequestHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<(), GatewayError> {
        Ok(())
    }

    /// Adjust the request about to be sent upstream.
    fn on_upstream_request(&self, _req: &mut RequestHeader, _ctx: &RequestCtx) {}

    /// Adjust the response header sent to the client (upstream or local,
    /// success or error).
    fn on_response(&self, _resp: &mut ResponseHeader, _ctx: &RequestCtx) {}

    /// Whether this filter changes body bytes. A chain without such filters
    /// streams bodies through untouched.
    fn changes_body(&self) -> bool {
        false
    }
}

/// A route's filters, in YAML order.
#[derive(Clone, Default)]
pub struct FilterChain {
    filters: Vec<Arc<dyn Filter>>,
}

impl FilterChain {
    pub fn new(filters: Vec<Arc<dyn Filter>>) -> Self {
        FilterChain { filters }
    }

    /// Run every request hook in order; the first error stops the chain and
    /// records which filter refused.
    pub async fn on_request(
        &self,
        req: &RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<(), GatewayError> {
        for f in &self.filters {
            if let Err(e) = f.on_request(req, ctx).await {
                ctx.rejected_by = Some(f.name());
                return Err(e);
            }
        }
        Ok(())
    }

    pub fn on_upstream_request(&self, req: &mut RequestHeader, ctx: &RequestCtx) {
        for f in &self.filters {
            f.on_upstream_request(req, ctx);
        }
    }

    pub fn on_response(&self, resp: &mut ResponseHeader, ctx: &RequestCtx) {
        for f in &self.filters {
            f.on_response(resp, ctx);
        }
    }

    pub fn changes_body(&self) -> bool {
        self.filters.iter().any(|f| f.changes_body())
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.filters.iter().map(|f| f.name()).collect()
    }

    pub fn len(&self) -> usize {
        self.filters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }
}
