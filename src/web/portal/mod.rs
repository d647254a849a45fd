//! The customer portal (DESIGN §7, seed 000): `GET /portal` on the public
//! listener, and `/` redirects there. One page (`index.html`) with its
//! script (`portal.js`: log in with a key, kept in the tab's
//! sessionStorage and sent only as the Bearer header; image keys: usage,
//! generation, gallery, logs; storage keys: usage, files, credentials and
//! snippets; both: key reset). It calls only the public API.

use kikaku_filters::{ErrorKind, GatewayError};

use crate::reply::Exchange;

super::site!(
    SITE,
    "index.html",
    [
        "portal.js" => "portal.js",
        "image.js" => "image.js",
        "storage.js" => "storage.js",
    ]
);

/// `GET|HEAD /portal[/file]`, and `/` (a redirect to `/portal`).
pub async fn serve(ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
    let req = ex.session.req_header();
    let path = req.uri.path().to_string();
    let page = if path == "/" {
        super::Page {
            status: 302,
            headers: vec![
                ("location", "/portal".to_string()),
                ("content-length", "0".to_string()),
                ("cache-control", "no-cache".to_string()),
            ],
            body: bytes::Bytes::new(),
        }
    } else {
        let rest = path.strip_prefix("/portal").unwrap_or("");
        let etag = req
            .headers
            .get(http::header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok());
        SITE.serve(rest, etag).ok_or_else(|| {
            GatewayError::new(ErrorKind::NotFound, format!("No portal file {path}."))
        })?
    };
    ex.send(page.status, page.headers, page.body).await
}
