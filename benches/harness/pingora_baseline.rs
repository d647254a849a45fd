//! A bare Pingora proxy: the harness's baseline for what Pingora itself
//! costs per request, under the same build (release profile, LTO) and
//! allocator as kikaku-edge, so that the gap between nginx and kikaku-edge
//! splits into Pingora's share and ours.
//!
//! It does what every Pingora proxy must and nothing else: one upstream
//! peer (plain HTTP, keep-alive pool) and its `Host` header, like Pingora's
//! own `load_balancer` example without the balancer.
//!
//!     cargo build --release --features harness-baseline
//!     target/release/pingora-baseline 127.0.0.1:8090 127.0.0.1:9100 2 [KNOB=VALUE ...]
//!
//! Knobs, for the harness's knob scenario (`benches/harness/knobs.py`):
//! - `steal=false`: one runtime per thread instead of one shared
//!   work-stealing runtime (`ServerConf.work_stealing`);
//! - `pool=N`: the upstream keep-alive pool's size
//!   (`ServerConf.upstream_keepalive_pool_size`, default 128);
//! - `reuseport=true`: THREADS services of one thread each, every one with
//!   its own `SO_REUSEPORT` listening socket on the address (the kernel
//!   spreads connections over them, as over nginx's workers).

use std::net::SocketAddr;
use std::process::ExitCode;

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::listeners::TcpSocketOptions;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::upstreams::peer::HttpPeer;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Baseline {
    upstream: SocketAddr,
    host: String,
}

#[async_trait]
impl ProxyHttp for Baseline {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        _ctx: &mut (),
    ) -> pingora::Result<()> {
        upstream.insert_header(http::header::HOST, self.host.as_str())
    }
}

/// The knobs given after the three positional arguments.
#[derive(Default)]
struct Knobs {
    no_steal: bool,
    pool: Option<usize>,
    reuseport: bool,
}

fn knobs(args: &[String]) -> Option<Knobs> {
    let mut k = Knobs::default();
    for arg in args {
        match arg.split_once('=')? {
            ("steal", v) => k.no_steal = !v.parse::<bool>().ok()?,
            ("pool", v) => k.pool = Some(v.parse().ok()?),
            ("reuseport", v) => k.reuseport = v.parse().ok()?,
            _ => return None,
        }
    }
    Some(k)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let usage = || {
        eprintln!(
            "usage: pingora-baseline LISTEN_ADDR UPSTREAM_ADDR THREADS \
             [steal=false] [pool=N] [reuseport=true]"
        );
        ExitCode::from(2)
    };
    let [_, listen, upstream, threads, rest @ ..] = args.as_slice() else {
        return usage();
    };
    let (Ok(upstream), Ok(threads), Some(knobs)) = (
        upstream.parse::<SocketAddr>(),
        threads.parse::<usize>(),
        knobs(rest),
    ) else {
        return usage();
    };
    let mut conf = ServerConf {
        threads,
        work_stealing: !knobs.no_steal,
        ..ServerConf::default()
    };
    if let Some(pool) = knobs.pool {
        conf.upstream_keepalive_pool_size = pool;
    }
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let services = if knobs.reuseport { threads } else { 1 };
    for i in 0..services {
        let mut proxy = pingora::proxy::http_proxy_service(
            &server.configuration,
            Baseline {
                upstream,
                host: upstream.to_string(),
            },
        );
        if knobs.reuseport {
            proxy.threads = Some(1);
            let mut opts = TcpSocketOptions::default();
            opts.so_reuseport = Some(true);
            // Its own socket under its own address string (Pingora shares
            // sockets of equal strings): the gateway's own helper.
            let address = kikaku_edge::proxy::public_listener::socket_address(listen, i);
            proxy.add_tcp_with_settings(&address, opts);
        } else {
            proxy.add_tcp(listen);
        }
        server.add_service(proxy);
    }
    server.run_forever()
}
