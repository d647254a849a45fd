//! Assembling the Pingora server: the public proxy service, the admin
//! listener, and the background watcher.

use std::path::Path;
use std::sync::Arc;

use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

pub use super::phases::{Ctx, Gateway};

use crate::config::ConfigErrors;
use crate::proxy::access_log::AccessLog;
use crate::proxy::admin::AdminApp;
use crate::proxy::health;
use crate::proxy::reload::{ConfigHolder, Watcher};
use crate::tls::SniResolver;

/// Bind a loopback service's port before the server starts, so that the
/// first health check (which runs at once) never finds it closed.
fn bind_now(addr: &str) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// A listener bound in `serve`, handed to the runtime of the service using
/// it; `None` when the port was busy at start (a graceful upgrade, where the
/// old process still holds it): then the service keeps trying to bind.
type Bound = std::sync::Mutex<Option<std::net::TcpListener>>;

async fn adopt_or_bind(bound: &Bound, addr: &str) -> tokio::net::TcpListener {
    let early = bound.lock().ok().and_then(|mut b| b.take());
    if let Some(l) = early.and_then(|l| tokio::net::TcpListener::from_std(l).ok()) {
        return l;
    }
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) => {
                log::debug!("waiting to bind {addr}: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

/// The in-process Ark simulator, bound at start (not reloadable).
struct SimService(crate::standins::ark_sim::SimConfig, Bound);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for SimService {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let sim = crate::standins::ark_sim::Simulator::new(self.0.clone());
        tokio::select! {
            r = async { sim.serve_on(adopt_or_bind(&self.1, &self.0.listen).await).await } => if let Err(e) = r {
                log::error!("ark simulator on {} failed: {e}", self.0.listen);
            },
            _ = shutdown.changed() => {}
        }
    }
}

/// The embedded S3 backend, bound at start (not reloadable).
struct EmbeddedS3Service(crate::standins::embedded_s3::EmbeddedS3, Bound);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for EmbeddedS3Service {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        tokio::select! {
            r = async { self.0.serve_on(adopt_or_bind(&self.1, &self.0.listen).await).await } => if let Err(e) = r {
                log::error!("embedded S3 backend failed: {e}");
            },
            _ = shutdown.changed() => {}
        }
    }
}

pub struct ServeArgs<'a> {
    pub config: &'a Path,
    pub daemon: bool,
    pub upgrade: bool,
}

/// Why the gateway did not start.
#[derive(Debug)]
pub enum ServeError {
    /// The config does not load, or state does not open: every error with
    /// its YAML path.
    Config(std::path::PathBuf, ConfigErrors),
    /// A file or directory the gateway needs.
    File {
        what: &'static str,
        path: String,
        error: std::io::Error,
    },
    /// A listener could not be set up: its YAML path, and why.
    Listener { at: String, why: String },
    /// The embedded backend could not be set up.
    Embedded(String),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Config(path, errors) => write!(f, "{}:\n{errors}", path.display()),
            ServeError::File { what, path, error } => {
                write!(f, "cannot open {what} {path}: {error}")
            }
            ServeError::Listener { at, why } => write!(f, "{at}: {why}"),
            ServeError::Embedded(why) => write!(f, "embedded S3 backend: {why}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// Load the config, open state, and run until told to stop.
pub fn serve(args: ServeArgs<'_>) -> Result<(), ServeError> {
    crate::proxy::metrics::init();
    let holder = ConfigHolder::open(args.config, crate::state::open)
        .map_err(|e| ServeError::Config(args.config.to_path_buf(), e))?;
    let holder = Arc::new(holder);
    let snap = holder.current();
    let cfg = &snap.config;

    let data_dir = Path::new(&cfg.data_dir);
    std::fs::create_dir_all(data_dir).map_err(|error| ServeError::File {
        what: "data_dir",
        path: data_dir.display().to_string(),
        error,
    })?;
    let in_data = |name: &str| data_dir.join(name).to_string_lossy().into_owned();

    let conf = ServerConf {
        threads: cfg.server.threads,
        work_stealing: cfg.server.work_stealing,
        daemon: args.daemon,
        pid_file: in_data("kikaku-edge.pid"),
        upgrade_sock: in_data("kikaku-edge-upgrade.sock"),
        error_log: args.daemon.then(|| in_data("error.log")),
        grace_period_seconds: Some(cfg.server.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(cfg.server.graceful_shutdown_timeout_seconds),
        ca_file: cfg.server.ca_file.clone(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: args.upgrade,
        daemon: args.daemon,
        ..Opt::default()
    };
    let pid_file = conf.pid_file.clone();
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    // Pingora writes the pid file only when daemonizing; `keys` and
    // operators look for it in the foreground too.
    if !args.daemon {
        if let Err(e) = std::fs::write(&pid_file, std::process::id().to_string()) {
            log::warn!("cannot write pid file {pid_file}: {e}");
        }
    }

    let access_log =
        AccessLog::open(&cfg.logging.access_log).map_err(|error| ServeError::File {
            what: "access log",
            path: cfg.logging.access_log.clone(),
            error,
        })?;
    let gateway = Gateway {
        holder: holder.clone(),
        access_log,
    };
    super::public_listener::add(&mut server, cfg, gateway).map_err(|e| ServeError::Listener {
        at: e.at,
        why: e.why,
    })?;

    if let Some(admin) = &cfg.listeners.admin {
        let app = pingora::apps::http_app::HttpServer::new_app(AdminApp {
            holder: holder.clone(),
        });
        let mut svc = Service::new("kikaku-edge admin".to_string(), app);
        match &admin.tls {
            Some(tls) => {
                let h = holder.clone();
                let resolver = SniResolver::new(move || h.current().tls.admin.clone());
                let settings =
                    crate::tls::settings(tls, resolver).map_err(|why| ServeError::Listener {
                        at: "listeners.admin.tls".into(),
                        why,
                    })?;
                svc.add_tls_with_settings(&admin.address, None, settings);
            }
            None => svc.add_tcp(&admin.address),
        }
        if admin.h2c {
            let mut h2c = pingora::apps::HttpServerOptions::default();
            h2c.h2c = true;
            if let Some(app) = svc.app_logic_mut() {
                app.server_options = Some(h2c);
            }
        }
        server.add_service(svc);
    }
    server.add_service(background_service(
        "config watcher",
        Watcher {
            holder: holder.clone(),
        },
    ));
    server.add_service(background_service(
        "health checks",
        health::HealthChecks {
            holder: holder.clone(),
        },
    ));
    if let Some(upgrader) = super::upgrade::Upgrader::here(args.config, args.daemon) {
        server.add_service(background_service("upgrader", upgrader));
    }
    server.add_service(background_service(
        "upload sweeper",
        crate::proxy::jobs::UploadSweeper {
            holder: holder.clone(),
        },
    ));
    if let Some(sim) = &cfg.simulators.ark {
        let bound = bind_now(&sim.listen)
            .map_err(|e| log::warn!("simulators.ark.listen {}: {e}; retrying", sim.listen))
            .ok();
        server.add_service(background_service(
            "ark simulator",
            SimService(sim.clone(), Bound::new(bound)),
        ));
    }
    if let Some(storage) = &cfg.storage {
        if let Some(embedded) = &storage.embedded {
            let root = embedded
                .root
                .clone()
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| data_dir.join("s3"));
            // Busy at start: another gateway on this machine serves the same
            // offline config (or the old process of a graceful upgrade). Use
            // that server, and take the port over once it is free.
            let bound = match bind_now(&embedded.listen) {
                Ok(l) => Some(l),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    log::info!(
                        "embedded S3 backend: {} is already served, using that server",
                        embedded.listen
                    );
                    None
                }
                Err(e) => {
                    return Err(ServeError::Listener {
                        at: format!("storage.embedded.listen {}", embedded.listen),
                        why: e.to_string(),
                    })
                }
            };
            server.add_service(background_service(
                "embedded s3",
                EmbeddedS3Service(
                    crate::standins::embedded_s3::EmbeddedS3 {
                        listen: embedded.listen.clone(),
                        root,
                        credential: crate::standins::embedded_s3::backend_credential(
                            storage, data_dir,
                        )
                        .map_err(ServeError::Embedded)?,
                    },
                    Bound::new(bound),
                ),
            ));
        }
    }

    log::info!(
        "kikaku-edge serving {} (admin {}), config generation {}",
        cfg.listeners.public.address,
        cfg.listeners
            .admin
            .as_ref()
            .map(|a| a.address.as_str())
            .unwrap_or("off"),
        snap.generation
    );
    drop(snap);
    server.run(pingora::server::RunArgs::default());
    // Shut down cleanly: the pid file goes, unless it already names the
    // process that took over (a graceful upgrade's new one).
    if std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == std::process::id().to_string())
    {
        if let Err(e) = std::fs::remove_file(&pid_file) {
            log::warn!("cannot remove pid file {pid_file}: {e}");
        }
    }
    std::process::exit(0)
}
