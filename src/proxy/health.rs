//! Upstream health checks, a background service of their own: every second
//! it looks at the serving snapshot's upstreams and checks each one whose
//! `health_check.interval_seconds` has passed (a reload's new pools are
//! picked up at the next tick; unchanged upstreams keep their state).
//! Each tick also brings the endpoints' availability gauges up to date
//! (an ejection ends by time alone).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::proxy::reload::ConfigHolder;

pub struct HealthChecks {
    pub holder: Arc<ConfigHolder>,
}

#[async_trait]
impl BackgroundService for HealthChecks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut since_check: HashMap<String, Duration> = HashMap::new();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {
                    let snap = self.holder.current();
                    for (name, up) in &snap.upstreams {
                        let Some(every) = up.health_interval else {
                            up.refresh_gauges();
                            continue;
                        };
                        let waited = since_check.entry(name.clone()).or_insert(every);
                        if *waited >= every {
                            *waited = Duration::ZERO;
                            up.check_health().await;
                        }
                        *waited += Duration::from_secs(1);
                    }
                }
            }
        }
    }
}

/// A pool as `/readyz` shows it.
#[derive(serde::Serialize)]
pub struct PoolReadiness {
    pub required: bool,
    /// Not required, or some endpoint takes requests.
    pub ready: bool,
    /// Each endpoint (as written) and whether it takes requests now.
    pub endpoints: std::collections::BTreeMap<String, bool>,
}

/// Every pool's readiness, by name.
pub fn pools(snap: &crate::proxy::snapshot::Snapshot) -> Vec<(String, PoolReadiness)> {
    let mut out: Vec<_> = snap
        .upstreams
        .iter()
        .map(|(name, up)| {
            let endpoints: std::collections::BTreeMap<_, _> =
                up.endpoint_states().into_iter().collect();
            let any = endpoints.values().any(|&a| a);
            let required = up.config.required;
            (
                name.clone(),
                PoolReadiness {
                    required,
                    ready: !required || any,
                    endpoints,
                },
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
