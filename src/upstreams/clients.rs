//! HTTP clients for the calls the gateway makes itself (Ark, the storage
//! backend): one per endpoint, pinned to its address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::{Endpoint, Upstream};

impl Upstream {
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
}
