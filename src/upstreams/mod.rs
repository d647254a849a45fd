//! Upstream pools: endpoints, the choice among them (`pick`: round robin,
//! random, least connections, peak-EWMA, consistent hashing), passive and
//! active health with slow start (`endpoint`, `health`), retries under a
//! budget (`budget`, `attempt`), the circuit breaker, TLS with SNI and
//! certificate checks, timeouts and keepalive.
//!
//! An endpoint's live state and a pool's counters outlive reloads: a pool
//! rebuilt from a changed config takes them over for the endpoints it keeps.

mod attempt;
mod budget;
mod clients;
pub mod endpoint;
mod health;
mod metrics;
mod pick;

use std::collections::BTreeSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pingora::lb::{Backend, Backends};
use pingora::protocols::l4::socket::SocketAddr as PSocketAddr;
use pingora::upstreams::peer::HttpPeer;

use crate::config::split_host_port;
use crate::config::{ConfigError, UpstreamConfig};

pub use attempt::Attempt;
use budget::RetryBudget;
pub use endpoint::Failure;
use endpoint::{now_ms, EndpointState};
use metrics::PoolMetrics;
pub use metrics::LATENCY_BUCKETS;
pub use pick::{Affinity, PickError};
use pick::{Candidates, Picker};

/// What a request needs to reach one endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// `Host` header to send.
    pub host_header: String,
    /// Server name for SNI and certificate checks.
    pub sni: String,
}

/// An endpoint in its pool.
pub(crate) struct Member {
    pub endpoint: Endpoint,
    pub weight: u32,
    pub state: Arc<EndpointState>,
    backend: Backend,
}

/// A pool's counters, kept across reloads.
struct Shared {
    turn: AtomicUsize,
    in_flight: AtomicU32,
    budget: RetryBudget,
    /// Held while deciding an ejection (the ejected share is counted).
    eject: Mutex<()>,
    metrics: PoolMetrics,
}

pub struct Upstream {
    pub name: String,
    /// The config it was built from; an unchanged upstream survives reloads
    /// whole.
    pub config: UpstreamConfig,
    members: Vec<Member>,
    picker: Picker,
    shared: Arc<Shared>,
    checker: Option<Backends>,
    pub tls: bool,
    pub verify: bool,
    pub health_interval: Option<Duration>,
}

impl Upstream {
    /// Resolve endpoints and build the pool. Name resolution happens here,
    /// off the request path. Endpoints also in `previous` keep their state.
    pub fn build(
        name: &str,
        cfg: &UpstreamConfig,
        previous: Option<&Upstream>,
    ) -> Result<Upstream, ConfigError> {
        let path = format!("upstreams.{name}");
        let tls = cfg.tls.is_some();
        let now = now_ms();
        let mut members = Vec::new();
        for (i, ep) in cfg.endpoints.iter().enumerate() {
            let at = format!("{path}.endpoints[{i}].address");
            let (host, port) = split_host_port(&ep.address)
                .ok_or_else(|| ConfigError::new(&at, "must be HOST:PORT"))?;
            let addr = (host, port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| ConfigError::new(&at, format!("cannot resolve {host:?}")))?;
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
            let kept = previous.and_then(|p| {
                p.members
                    .iter()
                    .find(|m| m.state.addr == addr && m.state.label == ep.address)
            });
            let state = match kept {
                Some(m) => m.state.clone(),
                None => {
                    let s = Arc::new(EndpointState::new(name, &ep.address, addr));
                    if previous.is_some() {
                        s.came_back(now); // added by a reload: slow start
                    }
                    s
                }
            };
            members.push(Member {
                endpoint: Endpoint {
                    addr,
                    host_header,
                    sni,
                },
                weight: ep.weight,
                state,
                backend: Backend {
                    addr: PSocketAddr::Inet(addr),
                    weight: ep.weight as usize,
                    ext: Default::default(),
                },
            });
        }
        let checker = match &cfg.health_check {
            Some(hc) => {
                let set: BTreeSet<Backend> = members.iter().map(|m| m.backend.clone()).collect();
                let host = members
                    .first()
                    .map(|m| m.endpoint.host_header.as_str())
                    .unwrap_or_default();
                Some(health::checker(&path, hc, set, host, tls)?)
            }
            None => {
                // Without active checks, no endpoint is held down by them.
                for m in &members {
                    m.state.set_active_healthy(true, now);
                }
                None
            }
        };
        let shared = match previous {
            Some(p) => p.shared.clone(),
            None => Arc::new(Shared {
                turn: AtomicUsize::new(0),
                in_flight: AtomicU32::new(0),
                budget: RetryBudget::default(),
                eject: Mutex::new(()),
                metrics: metrics::for_pool(name),
            }),
        };
        let verify = cfg.tls.as_ref().is_none_or(|t| t.verify);
        if tls && !verify {
            log::warn!("upstream {name}: TLS certificate verification is OFF (tls.verify: false)");
        }
        let up = Upstream {
            name: name.to_string(),
            config: cfg.clone(),
            picker: Picker::build(cfg.balance, cfg.hash_on.as_ref(), &members),
            members,
            shared,
            checker,
            tls,
            verify,
            health_interval: cfg
                .health_check
                .as_ref()
                .map(|h| Duration::from_secs(h.interval_seconds)),
        };
        up.refresh_gauges();
        Ok(up)
    }

    /// Choose an endpoint for a try, leaving out the `tried` ones; the
    /// returned [`Attempt`] holds its place in flight until dropped.
    pub fn pick(self: &Arc<Self>, aff: &Affinity, tried: &[usize]) -> Result<Attempt, PickError> {
        let s = &self.shared;
        let limits = &self.config.limits;
        // Places are taken with one atomic step each, so two threads cannot
        // both take the last one. The pool's count is kept only under a
        // limit: every count is a cache line the worker threads share.
        if let Some(max) = limits.max_in_flight {
            if s.in_flight.fetch_add(1, Relaxed) >= max {
                s.in_flight.fetch_sub(1, Relaxed);
                s.metrics.overflow.inc();
                return Err(PickError::Full);
            }
        }
        let now = now_ms();
        let mut passed = tried.to_vec();
        loop {
            let view = Candidates {
                up: self,
                now,
                tried: &passed,
            };
            let index = match view.pick(&self.picker, &s.turn, aff) {
                Ok(i) => i,
                Err(e) => {
                    // Endpoints passed over for filling up make it a full pool.
                    let e = if passed.len() > tried.len() {
                        PickError::Full
                    } else {
                        e
                    };
                    if limits.max_in_flight.is_some() {
                        s.in_flight.fetch_sub(1, Relaxed);
                    }
                    if e == PickError::Full {
                        s.metrics.overflow.inc();
                    }
                    return Err(e);
                }
            };
            let state = &self.members[index].state;
            let on_it = state.in_flight.fetch_add(1, Relaxed);
            if limits
                .max_in_flight_per_endpoint
                .is_some_and(|max| on_it >= max)
            {
                // Filled up since it was looked at: pass it over.
                state.in_flight.fetch_sub(1, Relaxed);
                passed.push(index);
                continue;
            }
            // The budget counts requests only where retries can draw on it.
            if tried.is_empty() && self.config.retry.retries > 0 {
                s.budget.request(now);
            }
            return Ok(Attempt::start(self.clone(), index));
        }
    }

    /// Whether a retry after `tries` tries may go out now, for a failure of
    /// this kind: tries left, an endpoint not yet tried, and room in the
    /// budget (counted when granted).
    pub fn may_retry(&self, tried: &[usize], why: Failure) -> bool {
        let s = &self.shared;
        if tried.len() > self.config.retry.retries as usize {
            return false;
        }
        let now = now_ms();
        let untried = (0..self.members.len())
            .any(|i| !tried.contains(&i) && self.members[i].state.available(now));
        if !untried {
            s.metrics.refused_no_endpoint.inc();
            return false;
        }
        if !s.budget.try_retry(now, &self.config.retry.budget) {
            s.metrics.refused_budget.inc();
            return false;
        }
        s.metrics.retries[why as usize].inc();
        if let Some(m) = tried.last().and_then(|&i| self.members.get(i)) {
            m.state.metrics.retries.inc();
        }
        true
    }

    /// A retry that would have been allowed but for a request body that
    /// already went upstream (and was not kept).
    pub fn retry_refused_for_body(&self) {
        self.shared.metrics.refused_body_sent.inc();
    }

    /// Whether requests of this method are retried once they reached an
    /// endpoint.
    pub fn retries_method(&self, method: &http::Method) -> bool {
        self.config.retry.retries > 0
            && self
                .config
                .retry
                .methods
                .iter()
                .any(|m| m == method.as_str())
    }

    /// Whether an answer with this status is retried (for `retries_method`).
    pub fn retries_status(&self, status: u16) -> bool {
        self.config.retry.on_status.contains(&status)
    }

    /// The circuit breaker's `Retry-After`.
    pub fn retry_after(&self) -> Duration {
        Duration::from_secs(self.config.limits.retry_after_seconds.max(1) as u64)
    }

    /// Whether some endpoint could take a request now (for `/readyz`).
    pub fn has_available(&self) -> bool {
        let now = now_ms();
        self.members.iter().any(|m| m.state.available(now))
    }

    /// Every endpoint, available or not.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.members.iter().map(|m| &m.endpoint)
    }

    /// Each endpoint's label and whether it takes requests now (for `/readyz`).
    pub fn endpoint_states(&self) -> Vec<(String, bool)> {
        let now = now_ms();
        self.members
            .iter()
            .map(|m| (m.state.label.clone(), m.state.available(now)))
            .collect()
    }

    /// How Pingora reaches this endpoint.
    pub fn peer(&self, ep: &Endpoint) -> HttpPeer {
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
        peer
    }

    /// HTTP/2 is offered (TLS upstreams with `tls.http2`, the default).
    pub fn http2(&self) -> bool {
        self.config.tls.as_ref().is_some_and(|t| t.http2)
    }

    pub fn keepalive(&self) -> bool {
        self.config.keepalive.enabled
    }
}
