//! The web pages (DESIGN §7): the customer portal (`portal/`, `/portal` on
//! the public listener) and the operator console (`console/`, `/console` on
//! the admin listener). Each is a few static files compiled into the
//! binary (no CDN, no build step) that talk only to the gateway's own APIs.
//! Every answer carries a strict Content-Security-Policy (scripts and
//! styles of the page's own origin only, no inline code, no frames) and an
//! ETag; pages revalidate on each load (`no-cache`), so an upgrade is seen
//! at once.

pub mod console;
pub mod portal;

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// One embedded file.
pub struct Asset {
    /// The file's name under its page (`portal.js`); `""` is the page.
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

/// The styles both pages share.
pub const STYLE: &str = include_str!("style.css");
/// What both pages share in script: the API helper and page utilities.
pub const COMMON_JS: &str = include_str!("common.js");

/// The policy of every page: its own scripts, styles and API only. Images
/// may come from anywhere (generated images live at the upstream's URLs).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob: http: https:; connect-src 'self'; font-src 'self'; \
     form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// An answer for the listener to write.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

/// A page's files with their ETags, computed once.
pub struct Site {
    files: Vec<(&'static Asset, String)>,
}

impl Site {
    pub fn new(assets: &'static [Asset]) -> Site {
        let files = assets
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.body.as_bytes());
                let etag = format!("\"{}\"", kikaku_filters::keys::hex(&digest[..12]));
                (a, etag)
            })
            .collect();
        Site { files }
    }

    /// The answer for `rest` (the path under the page's root: `""`, `"/"`,
    /// `"/portal.js"`), or `None` when there is no such file.
    pub fn serve(&self, rest: &str, if_none_match: Option<&str>) -> Option<Page> {
        let name = rest.trim_start_matches('/');
        let (asset, etag) = self.files.iter().find(|(a, _)| a.name == name)?;
        let mut headers = vec![
            ("content-type", asset.content_type.to_string()),
            ("cache-control", "no-cache".to_string()),
            ("etag", etag.clone()),
            ("content-security-policy", CSP.to_string()),
            ("x-content-type-options", "nosniff".to_string()),
            ("referrer-policy", "no-referrer".to_string()),
            ("x-frame-options", "DENY".to_string()),
        ];
        let fresh = if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
        if fresh {
            return Some(Page {
                status: 304,
                headers,
                body: Bytes::new(),
            });
        }
        headers.push(("content-length", asset.body.len().to_string()));
        Some(Page {
            status: 200,
            headers,
            body: Bytes::from_static(asset.body.as_bytes()),
        })
    }
}

/// The files of a page: its HTML, its own scripts, and what both share.
macro_rules! site {
    ($name:ident, $html:literal, [$($js_name:literal => $js:literal),+ $(,)?]) => {
        pub static $name: once_cell::sync::Lazy<$crate::web::Site> =
            once_cell::sync::Lazy::new(|| {
                static ASSETS: &[$crate::web::Asset] = &[
                    $crate::web::Asset {
                        name: "",
                        content_type: "text/html; charset=utf-8",
                        body: include_str!($html),
                    },
                    $($crate::web::Asset {
                        name: $js_name,
                        content_type: "text/javascript; charset=utf-8",
                        body: include_str!($js),
                    },)+
                    $crate::web::Asset {
                        name: "common.js",
                        content_type: "text/javascript; charset=utf-8",
                        body: $crate::web::COMMON_JS,
                    },
                    $crate::web::Asset {
                        name: "style.css",
                        content_type: "text/css; charset=utf-8",
                        body: $crate::web::STYLE,
                    },
                ];
                $crate::web::Site::new(ASSETS)
            });
    };
}
pub(crate) use site;

#[cfg(test)]
mod tests {
    use super::*;

    static ASSETS: &[Asset] = &[
        Asset {
            name: "",
            content_type: "text/html; charset=utf-8",
            body: "<p>hi</p>",
        },
        Asset {
            name: "a.js",
            content_type: "text/javascript; charset=utf-8",
            body: "1",
        },
    ];

    #[test]
    fn files_etags_and_policies() {
        let site = Site::new(ASSETS);
        let page = site.serve("", None).unwrap();
        assert_eq!(page.status, 200);
        assert_eq!(&page.body[..], b"<p>hi</p>");
        let header = |p: &Page, n: &str| {
            p.headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert!(header(&page, "content-security-policy").contains("script-src 'self'"));
        let etag = header(&page, "etag");
        assert_eq!(site.serve("/", Some(&etag)).unwrap().status, 304);
        assert_eq!(
            header(&site.serve("/a.js", None).unwrap(), "content-type"),
            "text/javascript; charset=utf-8"
        );
        assert!(site.serve("/nope.js", None).is_none());
    }
}
