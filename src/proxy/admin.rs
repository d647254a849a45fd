//! The admin listener: `/healthz` (alive), `/readyz` (config loaded and state
//! reachable), `/metrics` (Prometheus text).

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::proxy::reload::ConfigHolder;

pub struct AdminApp {
    pub holder: Arc<ConfigHolder>,
}

fn json(status: u16, body: serde_json::Value) -> Response<Vec<u8>> {
    // A `Value` always serializes.
    let body = body.to_string().into_bytes();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/healthz" => json(200, serde_json::json!({"status": "ok"})),
            "/readyz" => {
                let snap = self.holder.current();
                let state_ok = self.holder.state().ready().await;
                let body = serde_json::json!({
                    "ready": state_ok,
                    "config_generation": snap.generation,
                    "state": self.holder.state().backend_name(),
                });
                json(if state_ok { 200 } else { 503 }, body)
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
