//! The operator console (DESIGN §7, seed 002): `GET /console` on the admin
//! listener. One page (`index.html`) with its script (`console.js`: log in
//! with the admin token, kept in the tab's sessionStorage; stats, keys,
//! buckets and objects, presigned URLs). It calls only the management API.

use http::Response;

super::site!(
    SITE,
    "index.html",
    ["console.js" => "console.js", "keys.js" => "keys.js"]
);

/// The answer for `path` (`/console` or `/console/<file>`), or `None` when
/// it is not the console's.
pub fn response(path: &str, if_none_match: Option<&str>, head: bool) -> Option<Response<Vec<u8>>> {
    let rest = path.strip_prefix("/console")?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let page = SITE.serve(rest, if_none_match)?;
    let mut resp = Response::builder().status(page.status);
    for (name, value) in &page.headers {
        resp = resp.header(*name, value.as_str());
    }
    let body = if head { Vec::new() } else { page.body.to_vec() };
    resp.body(body).ok()
}
