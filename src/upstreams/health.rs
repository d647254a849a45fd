//! Active health checks (`health_check`): Pingora's TCP or HTTP checks run
//! over the pool's endpoints; their verdict goes into each endpoint's
//! state, where it combines with passive ejection.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::FutureExt;
use pingora::lb::discovery::Static;
use pingora::lb::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora::lb::{Backend, Backends};

use crate::config::{ConfigError, HealthCheckConfig, HealthCheckKind};

use super::endpoint::now_ms;
use super::Upstream;

/// Pingora's checker for these backends.
pub(super) fn checker(
    path: &str,
    hc: &HealthCheckConfig,
    backends: BTreeSet<Backend>,
    host: &str,
    tls: bool,
) -> Result<Backends, ConfigError> {
    let mut discovered = Backends::new(Static::new(backends));
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
            let mut check = HttpHealthCheck::new(host, tls);
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
    // Static discovery answers at once.
    if let Some(Err(e)) = discovered.update(|_| {}).now_or_never() {
        log::error!("upstream discovery failed: {e}");
    }
    Ok(discovered)
}

impl Upstream {
    /// Run one round of health checks (no-op without a configured check)
    /// and hand each verdict to its endpoint.
    pub async fn check_health(&self) {
        let Some(backends) = &self.checker else {
            return;
        };
        backends.run_health_check(true).await;
        let now = now_ms();
        for m in &self.members {
            let healthy = backends.ready(&m.backend);
            if healthy != m.state.active_healthy() {
                log::warn!(
                    "upstream {}: endpoint {} is {} by its health check",
                    self.name,
                    m.state.label,
                    if healthy { "back" } else { "down" }
                );
            }
            m.state.set_active_healthy(healthy, now);
        }
        self.refresh_gauges();
    }

    /// The endpoints' gauges brought up to date, once a second:
    /// `available` (an ejection ends by time alone) and `in_flight` (read
    /// from the count the picks keep, rather than kept twice).
    pub fn refresh_gauges(&self) {
        let now = now_ms();
        for m in &self.members {
            let metrics = &m.state.metrics;
            metrics.available.set(m.state.available(now) as i64);
            metrics
                .in_flight
                .set(m.state.in_flight.load(std::sync::atomic::Ordering::Relaxed) as i64);
        }
    }
}
