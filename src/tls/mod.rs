//! Listener TLS: the certificates a listener serves, chosen by SNI and
//! swapped at every config reload, and the rustls settings Pingora's
//! listeners are built from.
//!
//! - `certs`: reading and checking a certificate and key pair (readable,
//!   key matches, dates), and the set one listener serves.
//! - `resolver`: the rustls certificate resolver. It asks the serving
//!   snapshot for the listener's set at each handshake, so a reload swaps
//!   certificates without touching a connection.
//! - `listener`: `TlsSettings` for a listener (TLS 1.2/1.3, ALPN, client
//!   certificates on the admin listener).
//!
//! The config's shape and docs are `config::tls`.

mod certs;
mod listener;
mod resolver;

pub use certs::{
    check_listeners, file_stamps, CertSet, FileStamp, ListenerCerts, EXPIRY_WARNING_DAYS,
};
pub use listener::settings;
pub use resolver::SniResolver;
