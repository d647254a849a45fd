//! The gallery's routes (DESIGN §3): `GET /v1/gallery` for image keys, and
//! `GET /gallery/<token>.jpeg` serving the kept copies.

use crate::reply::Exchange;
use std::sync::Arc;

use kikaku_filters::{ErrorKind, GatewayError};
use serde_json::{json, Value};

use super::Gallery;
use crate::account::{parse_log_query, rfc3339, unavailable};
use crate::reply::public_base;
use crate::storage::s3_endpoint::relay::{relay, Relay};

/// `GET /v1/gallery?page&limit`: the key's kept images, newest first, each
/// with a gateway URL that outlives the upstream's.
pub async fn list(gallery: &Arc<Gallery>, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
    let key = ex.ctx.require_key("image_gallery")?;
    // Same paging rules as the logs (page ≥ 1, limit 1–100, default 20).
    let q = parse_log_query(ex.session.req_header().uri.query())?;
    let (records, total) = gallery
        .state
        .gallery_page(&key.subject(), q.page, q.limit)
        .await
        .map_err(unavailable)?;
    let base = public_base(ex.session, gallery.cfg.public_url.as_deref());
    let images: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "prompt": r.prompt,
                "model": r.model,
                "s3_url": format!("{base}/gallery/{}", super::object_name(&r.token)),
                "image_size": r.image_size,
                "created_at": rfc3339(r.created_at_ms),
            })
        })
        .collect();
    let v = json!({
        "images": images,
        "pagination": {"page": q.page, "limit": q.limit, "total": total},
    });
    ex.json(200, v).await
}

/// `GET /gallery/<token>.jpeg`: a kept image. The token is the credential
/// (128 random bits), so the URL works in an `<img>` without a key.
pub async fn file(gallery: &Arc<Gallery>, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
    let path = ex.session.req_header().uri.path().to_string();
    let not_found = || GatewayError::new(ErrorKind::NotFound, "No such gallery image.");
    let token = path
        .rsplit('/')
        .next()
        .and_then(|f| f.strip_suffix(".jpeg"))
        .filter(|t| super::valid_token(t))
        .ok_or_else(not_found)?;
    let mut req = crate::storage::backend::BackendRequest::new(
        ex.session.req_header().method.clone(),
        Some(gallery.bucket().to_string()),
        Some(super::object_name(token)),
    );
    if let Some(r) = ex
        .session
        .req_header()
        .headers
        .get("range")
        .and_then(|v| v.to_str().ok())
    {
        req.headers.push(("range".into(), r.to_string()));
    }
    let resp = gallery
        .backend
        .send(req)
        .await
        .map_err(crate::storage::backend_unavailable)?;
    if resp.status().as_u16() == 404 {
        return Err(not_found());
    }
    relay(ex, resp, Relay::plain()).await
}
