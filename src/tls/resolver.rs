//! The rustls certificate resolver of a TLS listener.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::CertSet;

/// Picks the certificate by SNI from whatever set `current` returns at the
/// handshake: the serving snapshot's, so a reload's new certificates serve
/// the next handshake while open connections keep theirs.
pub struct SniResolver {
    current: Box<dyn Fn() -> Option<Arc<CertSet>> + Send + Sync>,
}

impl SniResolver {
    pub fn new(current: impl Fn() -> Option<Arc<CertSet>> + Send + Sync + 'static) -> Self {
        SniResolver {
            current: Box::new(current),
        }
    }
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SniResolver")
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some((self.current)()?.pick(hello.server_name()))
    }
}
