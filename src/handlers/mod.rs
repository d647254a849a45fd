//! Local handlers: routes the gateway answers itself instead of proxying.

pub mod account;
pub mod admin;
pub mod images;

use std::collections::HashMap;
use std::sync::Arc;

use kikaku_filters::{ErrorKind, FilterChain, GatewayError, RequestCtx, StateStore};
use pingora::proxy::Session;

use crate::config::HandlerConfig;
use crate::upstreams::Upstream;

pub enum Handler {
    /// 501 with the configured message.
    NotImplemented(String),
    ImageGeneration(Arc<images::ImageGeneration>),
    ImageUsage(Arc<dyn StateStore>),
    ImageLogs(Arc<dyn StateStore>),
}

/// What handlers may capture when a snapshot is compiled.
pub struct HandlerEnv<'a> {
    pub upstreams: &'a HashMap<String, Arc<Upstream>>,
    pub state: Arc<dyn StateStore>,
    pub ca_file: Option<&'a str>,
}

impl Handler {
    pub fn from_config(cfg: &HandlerConfig, env: &HandlerEnv<'_>) -> Result<Handler, String> {
        Ok(match cfg {
            HandlerConfig::NotImplemented { message } => Handler::NotImplemented(message.clone()),
            HandlerConfig::ImageGeneration(ig) => {
                let upstream = env
                    .upstreams
                    .get(&ig.upstream)
                    .ok_or_else(|| format!("no upstream {:?}", ig.upstream))?
                    .clone();
                Handler::ImageGeneration(Arc::new(images::ImageGeneration::new(
                    ig.clone(),
                    upstream,
                    env.state.clone(),
                    env.ca_file,
                )?))
            }
            HandlerConfig::ImageUsage => Handler::ImageUsage(env.state.clone()),
            HandlerConfig::ImageLogs => Handler::ImageLogs(env.state.clone()),
        })
    }

    /// Serve the request. Errors are answered by [`crate::http_error`].
    pub async fn handle(
        &self,
        session: &mut Session,
        chain: &FilterChain,
        ctx: &mut RequestCtx,
    ) -> Result<(), GatewayError> {
        match self {
            Handler::NotImplemented(msg) => {
                Err(GatewayError::new(ErrorKind::NotImplemented, msg.clone()))
            }
            Handler::ImageGeneration(h) => h.handle(session, chain, ctx).await,
            Handler::ImageUsage(state) => account::usage(state, session, chain, ctx).await,
            Handler::ImageLogs(state) => account::logs(state, session, chain, ctx).await,
        }
    }
}
