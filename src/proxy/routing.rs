//! Route matching: method + path prefix (whole segments) or exact path +
//! optional host.
//!
//! The most specific route wins: one for SigV4-signed requests beats one
//! without, then one for requests without `Authorization` (anonymous),
//! then one with a host, then the longer path prefix, then an exact path
//! over a prefix, then the earlier route in the file.

use std::sync::Arc;

use http::Method;
use kikaku_filters::FilterChain;

use crate::proxy::handlers::Handler;
use crate::upstreams::Upstream;

pub enum Target {
    Upstream(Arc<Upstream>),
    Handler(Handler),
}

pub struct Route {
    pub name: String,
    /// Empty: any method.
    pub methods: Vec<Method>,
    pub path_prefix: String,
    /// The path must be `path_prefix` itself (a trailing `/` allowed).
    pub exact: bool,
    pub host: Option<String>,
    /// Only requests signed with AWS SigV4 (the S3 endpoint on the shared listener).
    pub sigv4: bool,
    /// Only requests without an `Authorization` header.
    pub anonymous: bool,
    pub chain: FilterChain,
    pub target: Target,
}

pub enum RouteMatch<'a> {
    Found(&'a Arc<Route>),
    /// A route has this path but not this method.
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

/// What a request shows of itself before any filter runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Signals {
    /// It carries an AWS SigV4 (or V2) signature.
    pub sigv4: bool,
    /// It carries an `Authorization` header.
    pub authorization: bool,
}

#[derive(Default)]
pub struct Router {
    routes: Vec<Arc<Route>>,
}

/// `/v1/images` matches `/v1/images` and `/v1/images/...`, not `/v1/imagesx`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// `/s3/files` exactly matches `/s3/files` and `/s3/files/`, nothing deeper.
fn exact_matches(exact: &str, path: &str) -> bool {
    let p = exact.strip_suffix('/').unwrap_or(exact);
    path == p || path.strip_prefix(p) == Some("/")
}

/// The host without a port, lower-cased.
pub fn host_only(host: &str) -> String {
    let h = if host.starts_with('[') {
        host.split_once(']').map(|(h, _)| &h[1..]).unwrap_or(host)
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    h.to_ascii_lowercase()
}

impl Router {
    /// Routes in file order; they are sorted by specificity here.
    pub fn new(routes: Vec<Route>) -> Router {
        let mut indexed: Vec<(usize, Route)> = routes.into_iter().enumerate().collect();
        indexed.sort_by(|(ia, a), (ib, b)| {
            b.sigv4
                .cmp(&a.sigv4)
                .then(b.anonymous.cmp(&a.anonymous))
                .then(b.host.is_some().cmp(&a.host.is_some()))
                .then(b.path_prefix.len().cmp(&a.path_prefix.len()))
                .then(b.exact.cmp(&a.exact))
                .then(ia.cmp(ib))
        });
        Router {
            routes: indexed.into_iter().map(|(_, r)| Arc::new(r)).collect(),
        }
    }

    pub fn find(
        &self,
        method: &Method,
        host: Option<&str>,
        path: &str,
        signals: Signals,
    ) -> RouteMatch<'_> {
        let host = host.map(host_only);
        let mut allowed: Vec<Method> = Vec::new();
        for r in &self.routes {
            if (r.sigv4 && !signals.sigv4) || (r.anonymous && signals.authorization) {
                continue;
            }
            if r.host
                .as_deref()
                .is_some_and(|h| Some(h) != host.as_deref())
            {
                continue;
            }
            let matched = if r.exact {
                exact_matches(&r.path_prefix, path)
            } else {
                prefix_matches(&r.path_prefix, path)
            };
            if !matched {
                continue;
            }
            if r.methods.is_empty() || r.methods.contains(method) {
                return RouteMatch::Found(r);
            }
            allowed.extend(r.methods.iter().cloned());
        }
        if allowed.is_empty() {
            RouteMatch::NotFound
        } else {
            allowed.dedup();
            RouteMatch::MethodNotAllowed(allowed)
        }
    }

    /// Would a route for SigV4-signed requests (the S3 endpoint) take this
    /// request, were it signed?
    pub fn s3_would_match(&self, method: &Method, host: Option<&str>, path: &str) -> bool {
        let signed = Signals {
            sigv4: true,
            authorization: true,
        };
        matches!(self.find(method, host, path, signed), RouteMatch::Found(r) if r.sigv4)
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, methods: &[&str], prefix: &str, host: Option<&str>) -> Route {
        Route {
            name: name.into(),
            methods: methods.iter().map(|m| m.parse().unwrap()).collect(),
            path_prefix: prefix.into(),
            exact: false,
            host: host.map(Into::into),
            sigv4: false,
            anonymous: false,
            chain: FilterChain::default(),
            target: Target::Handler(Handler::NotImplemented("x".into())),
        }
    }

    fn found(r: &Router, m: &str, host: Option<&str>, path: &str) -> Option<String> {
        match r.find(&m.parse().unwrap(), host, path, Signals::default()) {
            RouteMatch::Found(r) => Some(r.name.clone()),
            _ => None,
        }
    }

    #[test]
    fn most_specific_route_wins() {
        let r = Router::new(vec![
            route("root", &[], "/", None),
            route("images", &["POST"], "/v1/images", None),
            route(
                "images-host",
                &["POST"],
                "/v1/images",
                Some("api.example.com"),
            ),
        ]);
        assert_eq!(
            found(&r, "POST", None, "/v1/images/generations").unwrap(),
            "images"
        );
        assert_eq!(
            found(&r, "POST", Some("API.example.com:8080"), "/v1/images").unwrap(),
            "images-host"
        );
        assert_eq!(found(&r, "POST", None, "/v1/imagesx").unwrap(), "root");
        assert_eq!(found(&r, "GET", None, "/v1/images").unwrap(), "root");
    }

    #[test]
    fn wrong_method_is_distinguished_from_no_route() {
        let r = Router::new(vec![route("images", &["POST"], "/v1/images", None)]);
        assert!(
            matches!(r.find(&Method::GET, None, "/v1/images", Signals::default()), RouteMatch::MethodNotAllowed(m) if m == vec![Method::POST])
        );
        assert!(matches!(
            r.find(&Method::GET, None, "/nope", Signals::default()),
            RouteMatch::NotFound
        ));
    }

    #[test]
    fn unsigned_requests_know_the_s3_namespace() {
        let mut s3 = route("s3", &[], "/", None);
        s3.sigv4 = true;
        let r = Router::new(vec![s3, route("api", &["GET"], "/s3", None)]);
        assert!(r.s3_would_match(&Method::GET, None, "/demo/key"));
        assert_eq!(found(&r, "GET", None, "/s3/files").unwrap(), "api");
        let plain = Router::new(vec![route("api", &["GET"], "/s3", None)]);
        assert!(!plain.s3_would_match(&Method::GET, None, "/demo/key"));
    }

    #[test]
    fn an_exact_path_takes_only_itself() {
        let mut listing = route("listing", &["GET"], "/s3/files", None);
        listing.exact = true;
        let r = Router::new(vec![route("api", &[], "/s3", None), listing]);
        assert_eq!(found(&r, "GET", None, "/s3/files").unwrap(), "listing");
        assert_eq!(found(&r, "GET", None, "/s3/files/").unwrap(), "listing");
        assert_eq!(found(&r, "GET", None, "/s3/files/a.txt").unwrap(), "api");
        assert_eq!(found(&r, "GET", None, "/s3/filesx").unwrap(), "api");
        // Another method falls through to the prefix route, not 405.
        assert_eq!(found(&r, "DELETE", None, "/s3/files").unwrap(), "api");
    }

    #[test]
    fn anonymous_routes_take_only_requests_without_authorization() {
        let mut anon = route("anon", &["POST"], "/api/upload", None);
        anon.anonymous = true;
        let r = Router::new(vec![route("keyed", &[], "/api/upload", None), anon]);
        let find = |authorization| match r.find(
            &Method::POST,
            None,
            "/api/upload",
            Signals {
                sigv4: false,
                authorization,
            },
        ) {
            RouteMatch::Found(r) => r.name.clone(),
            _ => String::new(),
        };
        assert_eq!(find(false), "anon");
        assert_eq!(find(true), "keyed");
        // Another method without a key falls through to the keyed route.
        assert_eq!(found(&r, "GET", None, "/api/upload").unwrap(), "keyed");
    }

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(host_only("Example.com:80"), "example.com");
        assert_eq!(host_only("[::1]:80"), "::1");
        assert_eq!(host_only("example.com"), "example.com");
    }
}
