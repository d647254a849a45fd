//! Local handlers: routes the gateway answers itself instead of proxying.

pub mod admin;

use kikaku_filters::{ErrorKind, GatewayError};

use crate::config::HandlerConfig;

pub enum Handler {
    /// 501 with the configured message.
    NotImplemented(String),
}

impl Handler {
    pub fn from_config(cfg: &HandlerConfig) -> Handler {
        match cfg {
            HandlerConfig::NotImplemented { message } => Handler::NotImplemented(message.clone()),
        }
    }

    /// Serve the request. Errors are answered by [`crate::http_error`].
    pub async fn handle(&self, _session: &mut pingora::proxy::Session) -> Result<(), GatewayError> {
        match self {
            Handler::NotImplemented(msg) => {
                Err(GatewayError::new(ErrorKind::NotImplemented, msg.clone()))
            }
        }
    }
}
