//! The public listener: one service per thread, each with its own
//! `SO_REUSEPORT` socket (`server.reuse_port`, the default), or one service
//! whose threads share one socket.
//!
//! One single-threaded service per socket is nginx's model of workers with
//! `reuseport`: a connection stays on the thread the kernel gave it, and no
//! thread wakes another. On this machine it cut the CPU per pass-through
//! request to 0.60× of one two-thread service (25.8 against 42.7 µs; bare
//! Pingora: 0.63×, BENCHMARKS.md section 10).
//!
//! Pingora keys its listening sockets by their address string: services on
//! the same string share one socket (one file descriptor, owned twice), and a
//! graceful upgrade hands each socket over under its string. So socket `i`
//! is bound under the address with `i` zeros before the port (`:08080` is
//! port 8080): one socket per string, each handed over to the new process
//! under the same string.

use pingora::apps::HttpServerOptions;
use pingora::listeners::TcpSocketOptions;
use pingora::server::Server;

use super::phases::Gateway;
use crate::config::Config;
use crate::tls::SniResolver;

/// A listener that could not be set up: where in the config, and why.
#[derive(Debug)]
pub struct ListenerError {
    pub at: String,
    pub why: String,
}

/// Add the public listener's services to `server`.
pub fn add(server: &mut Server, cfg: &Config, gateway: Gateway) -> Result<(), ListenerError> {
    let listener = &cfg.listeners.public;
    let sockets = if cfg.server.reuse_port {
        cfg.server.threads.max(1)
    } else {
        1
    };
    for i in 0..sockets {
        let mut service = pingora::proxy::http_proxy_service_with_name(
            &server.configuration,
            gateway.clone(),
            "kikaku-edge public",
        );
        let address = socket_address(&listener.address, i);
        let mut options = TcpSocketOptions::default();
        if cfg.server.reuse_port {
            service.threads = Some(1);
            options.so_reuseport = Some(true);
        }
        match &listener.tls {
            Some(tls) => {
                let holder = gateway.holder.clone();
                let resolver = SniResolver::new(move || holder.current().tls.public.clone());
                let settings =
                    crate::tls::settings(tls, resolver).map_err(|why| ListenerError {
                        at: "listeners.public.tls".into(),
                        why,
                    })?;
                service.add_tls_with_settings(&address, Some(options), settings);
            }
            None => service.add_tcp_with_settings(&address, options),
        }
        if listener.h2c {
            let mut h2c = HttpServerOptions::default();
            h2c.h2c = true;
            if let Some(app) = service.app_logic_mut() {
                app.server_options = Some(h2c);
            }
        }
        server.add_service(service);
    }
    Ok(())
}

/// `address` with `i` zeros before its port: the same socket address under
/// a string of its own.
pub fn socket_address(address: &str, i: usize) -> String {
    match address.rsplit_once(':') {
        Some((host, port)) if i > 0 => format!("{host}:{}{port}", "0".repeat(i)),
        _ => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::socket_address;
    use std::net::SocketAddr;

    #[test]
    fn each_socket_has_its_own_string_for_the_same_address() {
        for addr in ["127.0.0.1:8080", "0.0.0.0:80", "[::]:8443"] {
            let strings: Vec<String> = (0..4).map(|i| socket_address(addr, i)).collect();
            assert_eq!(strings[0], addr);
            let want: SocketAddr = addr.parse().unwrap();
            for s in &strings {
                assert_eq!(s.parse::<SocketAddr>().unwrap(), want, "{s}");
            }
            let mut unique = strings.clone();
            unique.dedup();
            assert_eq!(unique.len(), 4, "{strings:?}");
        }
    }
}
