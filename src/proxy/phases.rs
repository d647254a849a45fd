//! The public listener's request path, one Pingora phase per method:
//! match a route, run its filter chain, then proxy (streamed) or answer
//! locally. Every request runs on the snapshot it started with.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kikaku_filters::{ErrorKind, GatewayError, RequestCtx};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};

use crate::proxy::access_log::{AccessLog, AccessRecord, Timestamp};
use crate::proxy::metrics;
use crate::proxy::reload::ConfigHolder;
use crate::proxy::routing::{Route, RouteMatch, Signals, Target};
use crate::proxy::snapshot::Snapshot;
use crate::proxy::tries::{self, Tries};
use crate::reply::error;
use crate::reply::Exchange;
use crate::upstreams::Upstream;

#[derive(Clone)]
pub struct Gateway {
    pub holder: Arc<ConfigHolder>,
    pub access_log: AccessLog,
}

/// Per-request context of the gateway: the filters' typed context plus what
/// the proxy itself tracks.
pub struct Ctx {
    pub req: RequestCtx,
    pub snapshot: Option<Arc<Snapshot>>,
    pub route: Option<Arc<Route>>,
    /// The error answered locally, for the log.
    pub error: Option<GatewayError>,
    /// `Host` header for the endpoint `upstream_peer` chose.
    pub upstream_host: Option<String>,
    pub upstream_sent: Option<Instant>,
    pub upstream_latency: Option<Duration>,
    /// The route's handler ran (it records its own refusals).
    pub handler_ran: bool,
    /// A proxied request's tries on its upstream's endpoints.
    pub tries: Tries,
}

/// The route's upstream, when it proxies. (A function of the field, not
/// of `Ctx`, so the tries can be borrowed beside it.)
fn upstream_of(route: &Option<Arc<Route>>) -> Option<&Arc<Upstream>> {
    match route.as_ref().map(|r| &r.target) {
        Some(Target::Upstream(up)) => Some(up),
        _ => None,
    }
}

/// A path with `.` or `..` segments (also percent-encoded) is refused before
/// routing, so no prefix check can be walked around. No allocation: this runs
/// on every request.
fn has_dot_segments(path: &str) -> bool {
    path.split('/').any(is_dot_segment)
}

/// `.`, `..`, or either with dots written as `%2e`/`%2E`.
fn is_dot_segment(seg: &str) -> bool {
    let b = seg.as_bytes();
    let (mut i, mut dots) = (0, 0);
    while i < b.len() {
        if b[i] == b'.' {
            i += 1;
        } else if b.len() - i >= 3
            && b[i] == b'%'
            && b[i + 1] == b'2'
            && b[i + 2].eq_ignore_ascii_case(&b'e')
        {
            i += 3;
        } else {
            return false;
        }
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    dots > 0
}

fn header_bytes(req: &RequestHeader) -> usize {
    req.headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum()
}

impl Gateway {
    async fn answer(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        err: GatewayError,
        extra: &[(&'static str, String)],
    ) -> pingora::Result<bool> {
        let chain = ctx.route.as_ref().map(|r| &r.chain);
        let filter = ctx.req.rejected_by.unwrap_or("router");
        metrics::REJECTIONS
            .with_label_values(&[filter, err.kind.reason()])
            .inc();
        // An image key refused by a filter still gets a line in its logs
        // (written first, so it is there when the client looks).
        let by_filter = ctx.req.rejected_by.is_some() && !ctx.handler_ran;
        if let (Some(route), Some(key), true) = (&ctx.route, &ctx.req.key, by_filter) {
            if let Target::Handler(h) = &route.target {
                h.refused_by_filter(key, ctx.req.started, &err).await;
            }
        }
        error::respond(session, &err, chain, &ctx.req, extra).await?;
        ctx.error = Some(err);
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            req: RequestCtx::default(),
            snapshot: None,
            route: None,
            error: None,
            upstream_host: None,
            upstream_sent: None,
            upstream_latency: None,
            handler_ran: false,
            tries: Tries::default(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> pingora::Result<bool> {
        let snapshot = self.holder.current();
        ctx.req.client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let req = session.req_header();

        let max = snapshot.config.server.max_request_header_bytes;
        let max_count = snapshot.config.server.max_request_headers;
        let too_large = if header_bytes(req) > max {
            Some(format!("Request headers exceed {max} bytes."))
        } else if req.headers.len() > max_count {
            Some(format!("More than {max_count} request headers."))
        } else {
            None
        };
        if let Some(msg) = too_large {
            let err = GatewayError::new(ErrorKind::HeadersTooLarge, msg);
            ctx.snapshot = Some(snapshot);
            return self.answer(session, ctx, err, &[]).await;
        }
        let path = req.uri.path();
        let sigv4 = sigv4::is_aws_signed(
            req.headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
            req.uri.query(),
        );
        if sigv4 {
            // S3 clients get S3 XML errors from the first check on.
            ctx.req.error_format = kikaku_filters::ErrorFormat::S3Xml;
        }
        if has_dot_segments(path) {
            let err = GatewayError::new(
                ErrorKind::BadRequest,
                "The path may not contain '.' or '..' segments.",
            );
            ctx.snapshot = Some(snapshot);
            return self.answer(session, ctx, err, &[]).await;
        }
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or(req.uri.host());
        let signals = Signals {
            sigv4,
            authorization: req.headers.contains_key(http::header::AUTHORIZATION),
        };
        let found = match snapshot.router.find(&req.method, host, path, signals) {
            RouteMatch::Found(r) => Ok(r.clone()),
            RouteMatch::MethodNotAllowed(allowed) => Err((
                GatewayError::new(
                    ErrorKind::MethodNotAllowed,
                    format!("{} is not allowed here.", req.method),
                ),
                vec![(
                    "allow",
                    allowed
                        .iter()
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                )],
            )),
            RouteMatch::NotFound
                if !sigv4 && snapshot.router.s3_would_match(&req.method, host, path) =>
            {
                // This namespace is the S3 endpoint's: an unsigned S3 client
                // gets S3's answer, in S3's format.
                ctx.req.error_format = kikaku_filters::ErrorFormat::S3Xml;
                Err((
                    GatewayError::new(
                        ErrorKind::Forbidden,
                        "Anonymous access is not allowed: sign the request with your \
                         S3 credential (AWS Signature V4 or V2).",
                    )
                    .with_s3(403, "AccessDenied"),
                    vec![],
                ))
            }
            RouteMatch::NotFound => Err((
                GatewayError::new(
                    ErrorKind::NotFound,
                    format!("No route for {} {path}.", req.method),
                ),
                vec![],
            )),
        };
        ctx.snapshot = Some(snapshot);
        let route = match found {
            Ok(r) => r,
            Err((err, extra)) => return self.answer(session, ctx, err, &extra).await,
        };
        ctx.route = Some(route.clone());
        if let Target::Handler(h) = &route.target {
            if let Some(format) = h.error_format(session.req_header()) {
                ctx.req.error_format = format;
            }
        }
        ctx.req.defer_rate_limit =
            matches!(&route.target, Target::Handler(h) if h.counts_rate_limit());

        if let Err(err) = route
            .chain
            .on_request(session.req_header(), &mut ctx.req)
            .await
        {
            return self.answer(session, ctx, err, &[]).await;
        }
        match &route.target {
            Target::Upstream(up) => {
                tries::prepare(session, up);
                Ok(false)
            }
            Target::Handler(h) => {
                ctx.handler_ran = true;
                let mut ex = Exchange::new(session, &route.chain, &mut ctx.req);
                let handled = h.handle(&mut ex).await;
                match handled {
                    Ok(()) => Ok(true),
                    Err(err) => self.answer(session, ctx, err, &[]).await,
                }
            }
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let up = upstream_of(&ctx.route)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "route has no upstream"))?;
        match ctx.tries.pick(session, up, &ctx.req) {
            Ok((peer, host)) => {
                ctx.upstream_host = Some(host);
                Ok(peer)
            }
            Err(err) => {
                ctx.error = Some(err);
                Error::e_explain(
                    ErrorType::HTTPStatus(503),
                    "no upstream endpoint to send to",
                )
            }
        }
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        e: Box<Error>,
    ) -> Box<Error> {
        let up = upstream_of(&ctx.route).map(|u| &**u);
        ctx.tries.connect_failed(up, e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let e = e.more_context(format!("Peer: {peer}"));
        let up = upstream_of(&ctx.route).map(|u| &**u);
        ctx.tries.broke(session, up, e, client_reused)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        if let Some(Target::Upstream(up)) = ctx.route.as_ref().map(|r| &r.target) {
            if !up.keepalive() {
                upstream.insert_header(http::header::CONNECTION, "close")?;
            }
        }
        if let Some(host) = &ctx.upstream_host {
            upstream.insert_header(http::header::HOST, host.as_str())?;
        }
        if let Some(ip) = ctx.req.client_ip {
            let xff = match session
                .req_header()
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(prev) => format!("{prev}, {ip}"),
                None => ip.to_string(),
            };
            upstream.insert_header("x-forwarded-for", xff)?;
        }
        if let Some(route) = &ctx.route {
            route.chain.on_upstream_request(upstream, &ctx.req);
        }
        ctx.upstream_sent = Some(Instant::now());
        ctx.tries.sending();
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        ctx.upstream_latency = ctx.upstream_sent.map(|t| t.elapsed());
        let up = upstream_of(&ctx.route).map(|u| &**u);
        ctx.tries.answered(session, up, resp)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        if let Some(route) = &ctx.route {
            route.chain.on_response(resp, &ctx.req);
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let err = ctx.error.clone().unwrap_or_else(|| classify(e));
        let code = if error::answered(session) || is_downstream_gone(e) {
            0 // headers already went out, or the client left: nothing to answer
        } else {
            let chain = ctx.route.as_ref().map(|r| &r.chain);
            if let Err(write_err) = error::respond(session, &err, chain, &ctx.req, &[]).await {
                log::debug!("could not send error response: {write_err}");
            }
            err.status()
        };
        ctx.error = Some(err);
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .filter(|_| error::answered(session))
            .map(|r| r.status.as_u16())
            .or(ctx.error.as_ref().map(|e| e.status()))
            .unwrap_or(0);
        let route = ctx.route.as_ref().map(|r| r.name.as_str());
        let route_label = route.unwrap_or("-");
        metrics::REQUESTS
            .with_label_values(&[route_label, itoa::Buffer::new().format(status)])
            .inc();
        let total = ctx.req.started.elapsed();
        metrics::REQUEST_DURATION
            .with_label_values(&[route_label])
            .observe(total.as_secs_f64());
        let upstream = ctx.route.as_ref().and_then(|r| match &r.target {
            Target::Upstream(u) => Some(u.name.as_str()),
            Target::Handler(_) => None,
        });
        if let (Some(lat), Some(up)) = (ctx.upstream_latency, upstream) {
            metrics::UPSTREAM_LATENCY
                .with_label_values(&[route_label, up])
                .observe(lat.as_secs_f64());
        }
        if !self.access_log.enabled() {
            return;
        }
        let req = session.req_header();
        self.access_log.write(&AccessRecord {
            ts: Timestamp(std::time::SystemTime::now()),
            request_id: ctx.req.request_id.as_deref(),
            client_ip: ctx.req.client_ip,
            method: req.method.as_str(),
            path: req.uri.path(),
            route,
            upstream,
            status,
            key: ctx.req.key.as_ref().map(|k| k.key_ref.as_str()),
            total_ms: ms(total),
            upstream_ms: ctx.upstream_latency.map(ms),
            rejected_by: ctx.req.rejected_by,
            error: ctx.error.as_ref().map(|e| e.message.as_str()),
        });
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn is_downstream_gone(e: &Error) -> bool {
    e.esource() == &ErrorSource::Downstream
        && matches!(
            e.etype(),
            ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed
        )
}

/// Map a Pingora error to what the client is told.
fn classify(e: &Error) -> GatewayError {
    use ErrorType::*;
    match e.etype() {
        HTTPStatus(503) => GatewayError::new(
            ErrorKind::ServiceUnavailable,
            "The upstream is unavailable.",
        ),
        ConnectTimedout | ReadTimedout | WriteTimedout => GatewayError::new(
            ErrorKind::GatewayTimeout,
            "The upstream did not answer in time.",
        ),
        _ if e.esource() == &ErrorSource::Upstream => {
            GatewayError::new(ErrorKind::BadGateway, "The upstream connection failed.")
        }
        _ if e.esource() == &ErrorSource::Downstream => {
            GatewayError::new(ErrorKind::BadRequest, "The request could not be read.")
        }
        _ => GatewayError::new(ErrorKind::Internal, "Internal error."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_spotted_encoded_or_not() {
        assert!(has_dot_segments("/v1/../admin"));
        assert!(has_dot_segments("/v1/%2E%2e/admin"));
        assert!(has_dot_segments("/./x"));
        assert!(!has_dot_segments("/v1/file.name/..x"));
        assert!(!has_dot_segments("/"));
        assert!(has_dot_segments("/a/.%2E/b"));
        assert!(!has_dot_segments("/a/.../b"));
        assert!(!has_dot_segments("/a/%2e%2e%2e/b"));
        assert!(!has_dot_segments("/a/%2f/b"));
    }
}
