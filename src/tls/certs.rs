//! Certificate and key files: read, checked and indexed by host name.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::config::{Config, ConfigError, ListenerTls};

/// A certificate this close to its end is reported (a warning, not an error).
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// The certificates one listener serves.
pub struct CertSet {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Certificates that end within [`EXPIRY_WARNING_DAYS`].
    pub warnings: Vec<ConfigError>,
}

impl std::fmt::Debug for CertSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertSet")
            .field("exact", &self.exact.keys().collect::<Vec<_>>())
            .field("wildcard", &self.wildcard.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Each TLS listener's certificates, compiled with a config snapshot.
#[derive(Debug, Default, Clone)]
pub struct ListenerCerts {
    pub public: Option<Arc<CertSet>>,
    pub admin: Option<Arc<CertSet>>,
}

impl ListenerCerts {
    /// Load every listener's certificates; all problems, with their paths.
    pub fn load(config: &Config, now: i64) -> Result<ListenerCerts, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut load = |at: &str, tls: Option<&ListenerTls>| {
            tls.and_then(|t| match CertSet::load(at, t, now) {
                Ok(set) => Some(Arc::new(set)),
                Err(mut e) => {
                    errors.append(&mut e);
                    None
                }
            })
        };
        let public = load("listeners.public.tls", config.listeners.public.tls.as_ref());
        let admin = load(
            "listeners.admin.tls",
            config.listeners.admin.as_ref().and_then(|a| a.tls.as_ref()),
        );
        if errors.is_empty() {
            Ok(ListenerCerts { public, admin })
        } else {
            Err(errors)
        }
    }

    pub fn warnings(&self) -> impl Iterator<Item = &ConfigError> {
        self.public
            .iter()
            .chain(self.admin.iter())
            .flat_map(|s| s.warnings.iter())
    }
}

/// `kikaku-edge check`: every listener's certificate files, as a reload
/// would load them. `Ok` carries the warnings (certificates about to end).
pub fn check_listeners(config: &Config) -> Result<Vec<ConfigError>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let certs = ListenerCerts::load(config, now()).map_err(|e| errors.extend(e));
    for (at, ca) in [(
        "listeners.admin.tls.client_ca_file",
        config
            .listeners
            .admin
            .as_ref()
            .and_then(|a| a.tls.as_ref())
            .and_then(|t| t.client_ca_file.as_deref()),
    )] {
        if let Some(path) = ca {
            if let Err(why) = super::listener::client_roots(path) {
                errors.push(ConfigError::new(at, why));
            }
        }
    }
    match certs {
        Ok(c) if errors.is_empty() => Ok(c.warnings().cloned().collect()),
        _ => Err(errors),
    }
}

impl CertSet {
    /// Read the listener's certificates: the default, then the `sni` ones.
    pub fn load(at: &str, tls: &ListenerTls, now: i64) -> Result<CertSet, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let mut pairs = Vec::new();
        let default = load_pair(at, &tls.cert_file, &tls.key_file, now, &mut warnings)
            .map_err(|e| errors.push(e))
            .ok();
        for (i, s) in tls.sni.iter().enumerate() {
            let here = format!("{at}.sni[{i}]");
            match load_pair(&here, &s.cert_file, &s.key_file, now, &mut warnings) {
                Ok(pair) if s.names.is_empty() && pair.names.is_empty() => {
                    errors.push(ConfigError::new(
                        format!("{here}.names"),
                        "the certificate names no DNS host: list the names it answers",
                    ));
                }
                Ok(mut pair) => {
                    if !s.names.is_empty() {
                        pair.names = s.names.iter().map(|n| n.to_ascii_lowercase()).collect();
                    }
                    pairs.push(pair);
                }
                Err(e) => errors.push(e),
            }
        }
        let Some(default) = default.filter(|_| errors.is_empty()) else {
            return Err(errors);
        };
        let mut set = CertSet {
            default: default.key.clone(),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            warnings,
        };
        // The `sni` certificates first: the default keeps only names no
        // other certificate claims.
        for pair in pairs.iter().chain(std::iter::once(&default)) {
            for name in &pair.names {
                let table = match name.strip_prefix("*.") {
                    Some(_) => &mut set.wildcard,
                    None => &mut set.exact,
                };
                let name = name.strip_prefix("*.").unwrap_or(name).to_string();
                table.entry(name).or_insert_with(|| pair.key.clone());
            }
        }
        Ok(set)
    }

    /// The certificate for a client's SNI name: an exact name, then a
    /// wildcard one label up, then the default.
    pub fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = sni.map(|n| n.trim_end_matches('.').to_ascii_lowercase()) else {
            return self.default.clone();
        };
        if let Some(k) = self.exact.get(&name) {
            return k.clone();
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
            .clone()
    }
}

/// One checked certificate and key.
struct Pair {
    key: Arc<CertifiedKey>,
    /// The leaf's DNS names, lower case (`*.` kept).
    names: Vec<String>,
}

fn load_pair(
    at: &str,
    cert_file: &str,
    key_file: &str,
    now: i64,
    warnings: &mut Vec<ConfigError>,
) -> Result<Pair, ConfigError> {
    let cert_at = format!("{at}.cert_file");
    let key_at = format!("{at}.key_file");
    let chain = read_certs(cert_file).map_err(|why| ConfigError::new(&cert_at, why))?;
    let key = read_key(key_file).map_err(|why| ConfigError::new(&key_at, why))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| ConfigError::new(&key_at, format!("{key_file}: unusable key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(ConfigError::new(
                &key_at,
                format!("{key_file} is not the key of the certificate in {cert_file}"),
            ))
        }
    }
    let leaf = leaf_facts(&certified.cert[0])
        .map_err(|why| ConfigError::new(&cert_at, format!("{cert_file}: {why}")))?;
    if leaf.not_after < now {
        return Err(ConfigError::new(
            &cert_at,
            format!("{cert_file} expired on {}", day(leaf.not_after)),
        ));
    }
    if leaf.not_before > now {
        return Err(ConfigError::new(
            &cert_at,
            format!("{cert_file} is not valid before {}", day(leaf.not_before)),
        ));
    }
    let left = leaf.not_after - now;
    if left < EXPIRY_WARNING_DAYS * 86_400 {
        warnings.push(ConfigError::new(
            &cert_at,
            format!(
                "{cert_file} expires on {} (in {} days)",
                day(leaf.not_after),
                left / 86_400
            ),
        ));
    }
    Ok(Pair {
        key: Arc::new(certified),
        names: leaf.names,
    })
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{path}: bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path} holds no PEM certificate"));
    }
    Ok(certs)
}

fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("{path}: bad PEM: {e}"))?
        .ok_or_else(|| format!("{path} holds no PEM private key"))
}

struct LeafFacts {
    not_before: i64,
    not_after: i64,
    names: Vec<String>,
}

fn leaf_facts(der: &CertificateDer<'_>) -> Result<LeafFacts, String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let validity = cert.validity();
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(LeafFacts {
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        names,
    })
}

fn day(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| t.to_string())
}

pub(super) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A file's modification time and size, `None` when it cannot be read: a
/// reload is due when any certificate file's stamp changes.
pub type FileStamp = Option<(SystemTime, u64)>;

/// The stamps of every certificate and key file `config`'s listeners read.
pub fn file_stamps(config: &Config) -> Vec<FileStamp> {
    let l = &config.listeners;
    std::iter::once(&l.public)
        .chain(l.admin.iter())
        .filter_map(|l| l.tls.as_ref())
        .flat_map(|t| t.files())
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SniCertificate;

    /// A certificate for `names` (self-signed, ending in `days`), written to
    /// `dir` as `<stem>.pem` and `<stem>.key`; the file paths and its DER.
    fn cert(
        dir: &std::path::Path,
        stem: &str,
        names: &[&str],
        days: i64,
    ) -> (String, String, Vec<u8>) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let end = chrono::Utc::now() + chrono::Duration::days(days);
        use chrono::Datelike;
        params.not_after = rcgen::date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
        let key = rcgen::KeyPair::generate().unwrap();
        let c = params.self_signed(&key).unwrap();
        let (cp, kp) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&cp, c.pem()).unwrap();
        std::fs::write(&kp, key.serialize_pem()).unwrap();
        (
            cp.display().to_string(),
            kp.display().to_string(),
            c.der().to_vec(),
        )
    }

    fn tls(default: &(String, String, Vec<u8>), sni: Vec<SniCertificate>) -> ListenerTls {
        ListenerTls {
            cert_file: default.0.clone(),
            key_file: default.1.clone(),
            sni,
            http2: true,
            client_ca_file: None,
        }
    }

    fn sni(c: &(String, String, Vec<u8>), names: &[&str]) -> SniCertificate {
        SniCertificate {
            cert_file: c.0.clone(),
            key_file: c.1.clone(),
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn an_exact_name_then_a_wildcard_then_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let default = cert(d, "default", &["default.test", "api.test"], 365);
        let api = cert(d, "api", &["api.test"], 365);
        let files = cert(d, "files", &["files.test"], 365);
        let cfg = tls(
            &default,
            vec![sni(&api, &[]), sni(&files, &["*.files.test"])],
        );
        let set = CertSet::load("listeners.public.tls", &cfg, now()).unwrap();
        let served = |name: Option<&str>| set.pick(name).cert[0].to_vec();
        // The sni certificate claims api.test before the default does.
        assert_eq!(served(Some("api.test")), api.2);
        assert_eq!(served(Some("API.Test.")), api.2, "case and a trailing dot");
        assert_eq!(served(Some("eu.files.test")), files.2);
        // `names` replace the certificate's own: files.test itself is not one.
        assert_eq!(served(Some("files.test")), default.2);
        assert_eq!(served(Some("a.b.files.test")), default.2, "one label only");
        assert_eq!(served(Some("default.test")), default.2);
        assert_eq!(served(None), default.2);
        assert!(set.warnings.is_empty());
    }

    #[test]
    fn faults_name_their_field() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let good = cert(d, "good", &["good.test"], 365);
        let soon = cert(d, "soon", &["soon.test"], 3);
        let nameless = cert(d, "nameless", &[], 365);
        let load = |cfg: &ListenerTls| CertSet::load("l", cfg, now());

        let set = load(&tls(&good, vec![sni(&soon, &[])])).unwrap();
        assert_eq!(set.warnings.len(), 1);
        assert_eq!(set.warnings[0].path, "l.sni[0].cert_file");

        let errs = load(&tls(&good, vec![sni(&nameless, &[])])).unwrap_err();
        assert_eq!(errs[0].path, "l.sni[0].names", "{errs:?}");

        let mismatched = (good.0.clone(), soon.1.clone(), vec![]);
        let errs = load(&tls(&mismatched, vec![])).unwrap_err();
        assert_eq!(errs[0].path, "l.key_file", "{errs:?}");
        assert!(errs[0].message.contains("is not the key"), "{errs:?}");

        // Every fault at once, each with its path.
        let missing = (
            d.join("none.pem").display().to_string(),
            good.1.clone(),
            vec![],
        );
        let errs = load(&tls(&missing, vec![sni(&mismatched, &["x.test"])])).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["l.cert_file", "l.sni[0].key_file"]);
    }
}
