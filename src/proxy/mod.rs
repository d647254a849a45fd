//! The request path: the Pingora server and its services (`server`), the
//! public listener's sockets, one per thread (`public_listener`), the
//! proxy phases (`phases`), route matching (`routing`), the compiled config
//! (`snapshot`) and its hot reloads (`reload`), the handler registry
//! (`handlers`), a proxied request's tries over its upstream's endpoints
//! (`tries`), upstream health checks (`health`), the access log,
//! metrics, the admin listener (`admin`) and the binary upgrade on
//! SIGUSR2 (`upgrade`).

pub mod access_log;
pub mod admin;
pub mod handlers;
pub mod health;
pub mod jobs;
pub mod metrics;
pub mod phases;
pub mod public_listener;
pub mod reload;
pub mod routing;
pub mod server;
pub mod snapshot;
pub mod tries;
pub mod upgrade;
