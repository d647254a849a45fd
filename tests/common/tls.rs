//! Certificates the TLS tests make (rcgen): one CA, leaf certificates for
//! any names and dates, client certificates, and a probe that reports which
//! certificate a listener served for an SNI name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use tokio_rustls::rustls;

pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate, as a PEM file.
    pub file: PathBuf,
}

/// A certificate and key written as PEM files, and the certificate's DER.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: Vec<u8>,
}

/// `(year, month, day)` of the date `days` from today (UTC).
fn day(days: i64) -> (i32, u8, u8) {
    use chrono::Datelike;
    let d = chrono::Utc::now().date_naive() + chrono::Duration::days(days);
    (d.year(), d.month() as u8, d.day() as u8)
}

impl Ca {
    pub fn new(dir: &Path) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            DnType::CommonName,
            format!("kikaku test CA {}", dir.display()),
        );
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let file = dir.join("ca.pem");
        std::fs::write(&file, issuer.pem()).unwrap();
        Ca { issuer, file }
    }

    /// A server certificate for `names`, valid from `from` to `to` days
    /// from today, written as `<stem>.pem` and `<stem>.key` in `dir`.
    pub fn leaf(&self, dir: &Path, stem: &str, names: &[&str], from: i64, to: i64) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or(stem));
        let ((y0, m0, d0), (y1, m1, d1)) = (day(from), day(to));
        params.not_before = rcgen::date_time_ymd(y0, m0, d0);
        params.not_after = rcgen::date_time_ymd(y1, m1, d1);
        self.write(dir, stem, params, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate for `name`.
    pub fn client(&self, dir: &Path, stem: &str, name: &str) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        self.write(dir, stem, params, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn write(
        &self,
        dir: &Path,
        stem: &str,
        mut params: CertificateParams,
        usage: ExtendedKeyUsagePurpose,
    ) -> Leaf {
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let leaf = Leaf {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
            der: cert.der().to_vec(),
        };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }
}

impl Leaf {
    /// Put this certificate and key in place of `other`'s files (each file
    /// replaced by a rename, as certbot and config managers do).
    pub fn install_as(&self, other: &Leaf) {
        for (from, to) in [(&self.cert, &other.cert), (&self.key, &other.key)] {
            let tmp = to.with_extension("tmp");
            std::fs::copy(from, &tmp).unwrap();
            std::fs::rename(&tmp, to).unwrap();
        }
    }
}

/// The leaf certificate (DER) `127.0.0.1:port` serves when asked for
/// `sni` (`None`: no SNI, as a client connecting by IP address sends),
/// verified against `ca`.
pub async fn served(port: u16, sni: Option<&str>, ca: &Path) -> Result<Vec<u8>, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = match sni {
        Some(n) => rustls::pki_types::ServerName::try_from(n.to_string()).unwrap(),
        None => {
            // An IP address: rustls sends no SNI. The certificate then
            // needs no such name: skip the name check, keep the chain's.
            config.enable_sni = false;
            rustls::pki_types::ServerName::try_from("default.test").unwrap()
        }
    };
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let certs = tls
        .get_ref()
        .1
        .peer_certificates()
        .ok_or("no certificate")?;
    Ok(certs[0].to_vec())
}
