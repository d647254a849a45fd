//! Upstream health checks, a background service of their own: every second
//! it looks at the serving snapshot's upstreams and checks each one whose
//! `health_check.interval_seconds` has passed (a reload's new pools are
//! picked up at the next tick; unchanged upstreams keep their state).

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
                        let Some(every) = up.health_interval else { continue };
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
