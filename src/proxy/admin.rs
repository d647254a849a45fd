//! The admin listener: `/healthz` (alive), `/readyz` (config loaded and state
//! reachable), `/metrics` (Prometheus text), the management API under
//! `/admin/v1/` (`crate::admin_api`, which checks the admin token), and the
//! operator console at `/console` (`crate::web::console`, which uses only
//! that API).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::Response;
use kikaku_filters::{ErrorKind, GatewayError};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::admin_api::{self, Answer, Call, Env};
use crate::proxy::reload::ConfigHolder;

pub struct AdminApp {
    pub holder: Arc<ConfigHolder>,
}

fn json(status: u16, body: serde_json::Value) -> Response<Vec<u8>> {
    let body = crate::reply::json_body(&body);
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        if let Some(rest) = path.strip_prefix("/admin/v1") {
            if rest.is_empty() || rest.starts_with('/') {
                let a = self.management(session, rest.to_string()).await;
                return json(a.status, a.body);
            }
        }
        let req = session.req_header();
        let etag = req
            .headers
            .get(http::header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok());
        let head = req.method == http::Method::HEAD;
        if let Some(page) = crate::web::console::response(&path, etag, head) {
            return page;
        }
        match path.as_str() {
            "/healthz" => json(200, serde_json::json!({"status": "ok"})),
            "/readyz" => {
                let snap = self.holder.current();
                let state_ok = self.holder.state().ready().await;
                let pools = crate::proxy::health::pools(&snap);
                let pools_ok = pools.iter().all(|(_, p)| p.ready);
                let body = serde_json::json!({
                    "ready": state_ok && pools_ok,
                    "config_generation": snap.generation,
                    "state": self.holder.state().backend_name(),
                    "upstreams": pools
                        .into_iter()
                        .map(|(k, v)| (k, serde_json::to_value(v).unwrap_or_default()))
                        .collect::<serde_json::Map<_, _>>(),
                });
                json(if state_ok && pools_ok { 200 } else { 503 }, body)
            }
            "/metrics" => {
                let body = crate::proxy::metrics::render();
                Response::builder()
                    .status(200)
                    .header("content-type", "text/plain; version=0.0.4")
                    .header("content-length", body.len())
                    .body(body)
                    .unwrap_or_default()
            }
            _ => json(
                404,
                serde_json::json!({"error": {"code": "NotFound", "message": "No such admin endpoint."}}),
            ),
        }
    }
}

impl AdminApp {
    /// One management call, on the snapshot current when it arrived.
    async fn management(&self, session: &mut ServerSession, path: String) -> Answer {
        let req = session.req_header();
        let call_head = (
            req.method.clone(),
            req.uri.query().map(str::to_string),
            req.headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        );
        let body = match read_body(session).await {
            Ok(b) => b,
            Err(e) => return Answer::error(&e),
        };
        let (method, query, authorization) = call_head;
        let snap = self.holder.current();
        let env = Env {
            state: self.holder.state().clone(),
            config_keys: snap.keys.clone(),
            storage: snap.storage.clone(),
            token: snap.config.admin.as_ref().map(|a| a.token.clone()),
            public_base: snap.config.public_base(),
        };
        admin_api::handle(
            &env,
            Call {
                method,
                path,
                query,
                authorization,
                body,
            },
        )
        .await
    }
}

/// The request body, at most [`admin_api::MAX_BODY`] bytes.
async fn read_body(session: &mut ServerSession) -> Result<Bytes, GatewayError> {
    let mut body = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > admin_api::MAX_BODY {
                    return Err(GatewayError::new(
                        ErrorKind::PayloadTooLarge,
                        "A management request body is at most 1 MiB.",
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) => {
                return Err(GatewayError::new(
                    ErrorKind::BadRequest,
                    format!("The request body could not be read: {e}"),
                ))
            }
        }
    }
}
