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
//!     target/release/pingora-baseline 127.0.0.1:8090 127.0.0.1:9100 2

use std::net::SocketAddr;
use std::process::ExitCode;

use async_trait::async_trait;
use pingora::http::RequestHeader;
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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let usage = || {
        eprintln!("usage: pingora-baseline LISTEN_ADDR UPSTREAM_ADDR THREADS");
        ExitCode::from(2)
    };
    let [_, listen, upstream, threads] = args.as_slice() else {
        return usage();
    };
    let (Ok(upstream), Ok(threads)) = (upstream.parse::<SocketAddr>(), threads.parse::<usize>())
    else {
        return usage();
    };
    let conf = ServerConf {
        threads,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(
        &server.configuration,
        Baseline {
            upstream,
            host: upstream.to_string(),
        },
    );
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever()
}
