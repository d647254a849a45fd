//! Upstream pools: several endpoints, weighted round-robin or random choice
//! (pingora-load-balancing), optional health checks, TLS with SNI and
//! certificate verification, timeouts and keepalive.

use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use futures_util::FutureExt;
use pingora::lb::discovery::Static;
use pingora::lb::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::{Random, RoundRobin};
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::protocols::l4::socket::SocketAddr as PSocketAddr;
use pingora::upstreams::peer::HttpPeer;

use crate::config::split_host_port;
use crate::config::{Balance, ConfigError, HealthCheckKind, UpstreamConfig};

enum Balancer {
    RoundRobin(LoadBalancer<RoundRobin>),
    Random(LoadBalancer<Random>),
}

/// What a request needs to reach one endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// `Host` header to send.
    pub host_header: String,
    /// Server name for SNI and certificate checks.
    pub sni: String,
}

pub struct Upstream {
    pub name: String,
    /// The config it was built from; an unchanged upstream survives reloads
    /// with its health state.
    pub config: UpstreamConfig,
    balancer: Balancer,
    endpoints: HashMap<SocketAddr, Endpoint>,
    pub tls: bool,
    pub verify: bool,
    pub health_interval: Option<Duration>,
}

impl Upstream {
    /// Resolve endpoints and build the pool. Name resolution happens here,
    /// off the request path.
    pub fn build(name: &str, cfg: &UpstreamConfig) -> Result<Upstream, ConfigError> {
        let path = format!("upstreams.{name}");
        let mut backends = BTreeSet::new();
        let mut endpoints = HashMap::new();
        for (i, ep) in cfg.endpoints.iter().enumerate() {
            let (host, port) = split_host_port(&ep.address).ok_or_else(|| {
                ConfigError::new(
                    format!("{path}.endpoints[{i}].address"),
                    "must be HOST:PORT",
                )
            })?;
            let addr = (host, port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| {
                    ConfigError::new(
                        format!("{path}.endpoints[{i}].address"),
                        format!("cannot resolve {host:?}"),
                    )
                })?;
            let tls = cfg.tls.is_some();
            let default_port = if tls { 443 } else { 80 };
            let host_header = cfg.host.clone().unwrap_or_else(|| {
                if port == default_port {
                    host.to_string()
                } else {
                    ep.address.clone()
                }
            });
            let sni = cfg
                .tls
                .as_ref()
                .and_then(|t| t.sni.clone())
                .unwrap_or_else(|| host.to_string());
            endpoints.insert(
                addr,
                Endpoint {
                    addr,
                    host_header,
                    sni,
                },
            );
            backends.insert(Backend {
                addr: PSocketAddr::Inet(addr),
                weight: ep.weight as usize,
                ext: Default::default(),
            });
        }
        let mut discovered = Backends::new(Static::new(backends));
        if let Some(hc) = &cfg.health_check {
            let timeout = Duration::from_millis(hc.timeout_ms);
            match hc.kind {
                HealthCheckKind::Tcp => {
                    let mut check = TcpHealthCheck::new();
                    check.peer_template.options.connection_timeout = Some(timeout);
                    check.consecutive_failure = hc.unhealthy_after as usize;
                    check.consecutive_success = hc.healthy_after as usize;
                    discovered.set_health_check(check);
                }
                HealthCheckKind::Http => {
                    let first = endpoints
                        .values()
                        .next()
                        .map(|m| m.host_header.clone())
                        .unwrap_or_default();
                    let mut check = HttpHealthCheck::new(&first, cfg.tls.is_some());
                    check.req.set_uri(hc.path.parse().map_err(|_| {
                        ConfigError::new(format!("{path}.health_check.path"), "is not a valid path")
                    })?);
                    check.peer_template.options.connection_timeout = Some(timeout);
                    check.peer_template.options.read_timeout = Some(timeout);
                    check.consecutive_failure = hc.unhealthy_after as usize;
                    check.consecutive_success = hc.healthy_after as usize;
                    check.validator = Some(Box::new(|resp| {
                        if resp.status.is_success() {
                            Ok(())
                        } else {
                            pingora::Error::e_explain(
                                pingora::ErrorType::InternalError,
                                "health check: status not 2xx",
                            )
                        }
                    }));
                    discovered.set_health_check(Box::new(check));
                }
            }
        }
        let balancer = match cfg.balance {
            Balance::RoundRobin => Balancer::RoundRobin(ready_lb(discovered)),
            Balance::Random => Balancer::Random(ready_lb(discovered)),
        };
        let verify = cfg.tls.as_ref().is_none_or(|t| t.verify);
        if cfg.tls.is_some() && !verify {
            log::warn!("upstream {name}: TLS certificate verification is OFF (tls.verify: false)");
        }
        Ok(Upstream {
            name: name.to_string(),
            config: cfg.clone(),
            balancer,
            endpoints,
            tls: cfg.tls.is_some(),
            verify,
            health_interval: cfg
                .health_check
                .as_ref()
                .map(|h| Duration::from_secs(h.interval_seconds)),
        })
    }

    /// Pick a healthy endpoint by the pool's balancing, or `None` when none is.
    pub fn select_endpoint(&self) -> Option<&Endpoint> {
        let backend = match &self.balancer {
            Balancer::RoundRobin(lb) => lb.select(b"", 256),
            Balancer::Random(lb) => lb.select(b"", 256),
        }?;
        self.endpoints.get(backend.addr.as_inet()?)
    }

    /// Every endpoint, healthy or not.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.values()
    }

    /// Pick a healthy endpoint and describe how Pingora reaches it.
    pub fn select(&self) -> Option<(HttpPeer, &str)> {
        let ep = self.select_endpoint()?;
        let mut peer = HttpPeer::new(ep.addr, self.tls, ep.sni.clone());
        let t = &self.config.timeouts;
        peer.options.connection_timeout = Some(Duration::from_millis(t.connect_ms));
        peer.options.read_timeout = Some(Duration::from_millis(t.read_ms));
        peer.options.write_timeout = Some(Duration::from_millis(t.write_ms));
        peer.options.idle_timeout = Some(Duration::from_secs(self.config.keepalive.idle_seconds));
        if self.tls && !self.verify {
            peer.options.verify_cert = false;
            peer.options.verify_hostname = false;
        }
        if self.http2() {
            peer.options.alpn = pingora::protocols::ALPN::H2H1;
        }
        Some((peer, ep.host_header.as_str()))
    }

    /// HTTP/2 is offered (TLS upstreams with `tls.http2`, the default).
    pub fn http2(&self) -> bool {
        self.config.tls.as_ref().is_some_and(|t| t.http2)
    }

    pub fn keepalive(&self) -> bool {
        self.config.keepalive.enabled
    }

    /// HTTP clients for calls the gateway makes itself (Ark, the storage
    /// backend), one per endpoint and pinned to its address, with the pool's
    /// timeouts, keepalive, SNI and certificate verification.
    pub fn http_clients(
        &self,
        ca_file: Option<&str>,
    ) -> Result<HashMap<SocketAddr, reqwest::Client>, String> {
        let ca = match ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
                Some(
                    reqwest::Certificate::from_pem_bundle(&pem)
                        .map_err(|e| format!("{path}: {e}"))?,
                )
            }
            None => None,
        };
        let t = &self.config.timeouts;
        let mut clients = HashMap::new();
        for ep in self.endpoints() {
            let mut b = reqwest::Client::builder()
                .no_proxy()
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_millis(t.connect_ms))
                .read_timeout(Duration::from_millis(t.read_ms))
                .pool_idle_timeout(Duration::from_secs(self.config.keepalive.idle_seconds))
                .resolve(&ep.sni, ep.addr);
            for cert in ca.iter().flatten() {
                b = b.add_root_certificate(cert.clone());
            }
            if self.tls && !self.verify {
                b = b.danger_accept_invalid_certs(true);
            }
            if !self.config.keepalive.enabled {
                b = b.pool_max_idle_per_host(0);
            }
            if !self.http2() {
                b = b.http1_only();
            }
            clients.insert(ep.addr, b.build().map_err(|e| e.to_string())?);
        }
        Ok(clients)
    }

    /// `scheme://authority` for a client from [`Upstream::http_clients`].
    pub fn base_url(&self, ep: &Endpoint) -> String {
        if self.tls {
            format!("https://{}:{}", ep.sni, ep.addr.port())
        } else {
            format!("http://{}", ep.addr)
        }
    }

    /// Run one round of health checks (no-op without a configured check).
    pub async fn check_health(&self) {
        match &self.balancer {
            Balancer::RoundRobin(lb) => lb.backends().run_health_check(true).await,
            Balancer::Random(lb) => lb.backends().run_health_check(true).await,
        }
    }
}

fn ready_lb<S>(backends: Backends) -> LoadBalancer<S>
where
    S: pingora::lb::selection::BackendSelection + 'static,
    S::Iter: pingora::lb::selection::BackendIter,
{
    let lb = LoadBalancer::from_backends(backends);
    // Static discovery answers at once.
    if let Some(Err(e)) = lb.update().now_or_never() {
        log::error!("upstream discovery failed: {e}");
    }
    lb
}
