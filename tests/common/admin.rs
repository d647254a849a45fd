//! Calls to the management API (`/admin/v1/...` on the admin listener).

use serde_json::Value;

use super::{client, Gateway};

/// `method /admin/v1<path>` with this bearer token (none: no header) and
/// JSON body; the status and the JSON answer.
pub async fn admin_call(
    gw: &Gateway,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut req = client().request(
        method.parse().unwrap(),
        gw.admin_url(&format!("/admin/v1{path}")),
    );
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}
