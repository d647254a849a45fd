//! Pingora `TlsSettings` for one listener.

use std::sync::Arc;

use pingora::listeners::tls::TlsSettings;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use super::SniResolver;
use crate::config::ListenerTls;

/// TLS 1.2 and 1.3 (Pingora's rustls acceptor allows no other), the
/// certificate picked by `resolver`, `h2` offered by ALPN when
/// `tls.http2`, and client certificates required when `tls.client_ca_file`.
pub fn settings(tls: &ListenerTls, resolver: SniResolver) -> Result<TlsSettings, String> {
    // Paths are ignored once a resolver is set.
    let mut s = TlsSettings::intermediate("", "").map_err(|e| e.to_string())?;
    s.set_cert_resolver(Arc::new(resolver));
    if tls.http2 {
        s.enable_h2();
    }
    if let Some(ca) = &tls.client_ca_file {
        let roots = client_roots(ca)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| format!("{ca}: {e}"))?;
        s.set_client_cert_verifier(verifier);
    }
    Ok(s)
}

/// The CAs of a `client_ca_file`.
pub(super) fn client_roots(path: &str) -> Result<RootCertStore, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("{path}: bad PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("{path}: not a CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{path} holds no PEM certificate"));
    }
    Ok(roots)
}
