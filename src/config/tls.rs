//! `listeners.*.tls`: HTTPS on a listener.
//!
//! ```yaml
//! listeners:
//!   public:
//!     address: 0.0.0.0:443
//!     tls:
//!       cert_file: /etc/kikaku/tls/default.pem   # the default certificate
//!       key_file: /etc/kikaku/tls/default.key
//!       sni:                                      # more, chosen by the client's SNI name
//!         - {cert_file: /etc/kikaku/tls/s3.pem, key_file: /etc/kikaku/tls/s3.key}
//!   admin:
//!     address: 10.0.0.5:9443
//!     tls: {cert_file: ..., key_file: ..., client_ca_file: /etc/kikaku/tls/ops-ca.pem}
//! ```
//!
//! TLS 1.2 and 1.3 only, with rustls's modern cipher list (AES-GCM and
//! ChaCha20-Poly1305, forward-secret key exchange only). Certificate files
//! are read again at every reload (SIGHUP, or a change of the config file or
//! of any certificate file): a file that cannot be read, a key that does not
//! match its certificate, or an expired certificate refuses the reload and
//! the old certificates keep serving. The listener's address, whether it has
//! TLS, `http2` and `client_ca_file` are bound at start.

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// The default certificate (PEM chain, leaf first): served to a client
    /// that sends no SNI name, or one no `sni` certificate covers.
    pub cert_file: String,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// More certificates, each served to clients asking for one of its names.
    #[serde(default)]
    pub sni: Vec<SniCertificate>,
    /// Offer HTTP/2 by ALPN (`h2`, then `http/1.1`). Default true.
    #[serde(default = "yes")]
    pub http2: bool,
    /// Admin listener only: require a client certificate that chains to one
    /// of these CAs (PEM); a client without one fails the handshake.
    pub client_ca_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SniCertificate {
    pub cert_file: String,
    pub key_file: String,
    /// Host names this certificate answers (`api.example.com`,
    /// `*.example.com` for one label). Default: the certificate's own DNS
    /// names (subjectAltName).
    #[serde(default)]
    pub names: Vec<String>,
}

fn yes() -> bool {
    true
}

impl ListenerTls {
    /// Every certificate and key file this listener reads at a reload.
    pub fn files(&self) -> Vec<&str> {
        let mut files = vec![self.cert_file.as_str(), self.key_file.as_str()];
        for s in &self.sni {
            files.extend([s.cert_file.as_str(), s.key_file.as_str()]);
        }
        files
    }
}

/// Shape checks (the files themselves are checked by the runtime's `tls`
/// module, at start, reload and `kikaku-edge check`).
pub(super) fn validate(at: &str, tls: &ListenerTls, admin: bool, errs: &mut Vec<ConfigError>) {
    if tls.client_ca_file.is_some() && !admin {
        errs.push(ConfigError::new(
            format!("{at}.client_ca_file"),
            "only the admin listener verifies client certificates",
        ));
    }
    for (i, s) in tls.sni.iter().enumerate() {
        for (j, name) in s.names.iter().enumerate() {
            if !valid_sni_name(name) {
                errs.push(ConfigError::new(
                    format!("{at}.sni[{i}].names[{j}]"),
                    "must be a DNS name, optionally `*.` and a domain",
                ));
            }
        }
    }
}

/// `api.example.com` or `*.example.com`: letters, digits, `-` and dots.
fn valid_sni_name(name: &str) -> bool {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    !rest.is_empty()
        && rest.len() <= 253
        && rest.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_names_are_dns_names_or_one_label_wildcards() {
        for ok in ["api.example.com", "*.example.com", "localhost", "a-b.c"] {
            assert!(valid_sni_name(ok), "{ok}");
        }
        for bad in [
            "",
            "*.",
            "a..b",
            "*.*.example.com",
            "ex ample.com",
            "a.*.com",
        ] {
            assert!(!valid_sni_name(bad), "{bad}");
        }
    }
}
