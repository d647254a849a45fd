//! The `kikaku-edge` command: `serve`, `check`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kikaku_edge::config::ConfigErrors;

/// glibc's allocator took ~14% of the gateway's CPU on the proxy path
/// (Pingora allocates and frees buffers per request); mimalloc serves those
/// from thread-local pages: 19% fewer instructions per image request. See
/// BENCHMARKS.md, "Profile", and `kikaku_edge::alloc` for its settings.
/// `--features system-allocator` keeps glibc's, for heap profilers that
/// hook malloc (heaptrack): BENCHMARKS.md, "What a connection holds".
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "kikaku-edge",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("KIKAKU_COMMIT"), ")"),
    about = "Edge gateway for SeedDream image generation and S3 storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The YAML config file.
        #[arg(short, long)]
        config: PathBuf,
        /// Run in the background (Pingora daemon mode; logs go to <data_dir>/error.log).
        #[arg(short, long)]
        daemon: bool,
        /// Take the listening sockets over from a running instance (graceful upgrade).
        #[arg(short, long)]
        upgrade: bool,
    },
    /// Validate a config file: print every error with its YAML path.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Run the Ark (SeedDream) simulator alone, for tests and benchmarks.
    SimArk(kikaku_edge::standins::ark_sim::SimConfig),
    /// Storage maintenance: `reconcile` recomputes usage from the backend.
    Storage {
        #[arg(short, long)]
        config: PathBuf,
        #[command(subcommand)]
        command: kikaku_edge::cli::storage::StorageCommand,
    },
    /// Manage the keys kept in the configured state store.
    Keys {
        #[arg(short, long)]
        config: PathBuf,
        #[command(subcommand)]
        command: kikaku_edge::cli::keys::KeysCommand,
    },
}

/// mimalloc reads its options once, when it starts (a constructor of its
/// own, before `main`); arenas made by then keep the defaults. Setting them
/// from an earlier constructor (priority 101, before the default ones) is
/// what the `MIMALLOC_*` environment variables would do.
#[used]
#[link_section = ".init_array.00101"]
static CONFIGURE_ALLOCATOR: extern "C" fn() = {
    extern "C" fn configure() {
        kikaku_edge::alloc::configure();
    }
    configure
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    match cli.command {
        Command::Check { config } => match kikaku_edge::config::load_file(&config).and_then(|c| {
            // The listeners' certificate files, as start and reload read them.
            let warnings = kikaku_edge::tls::check_listeners(&c).map_err(ConfigErrors)?;
            for w in warnings {
                eprintln!("  warning: {w}");
            }
            Ok(c)
        }) {
            Ok(c) => {
                println!(
                    "{}: ok ({} routes, {} upstreams, {} keys)",
                    config.display(),
                    c.routes.len(),
                    c.upstreams.len(),
                    c.keys.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{}: {} error(s)", config.display(), errors.0.len());
                for e in &errors.0 {
                    eprintln!("  {e}");
                }
                ExitCode::from(1)
            }
        },
        Command::Storage { config, command } => {
            match kikaku_edge::cli::storage::run(&config, command) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kikaku-edge storage: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Keys { config, command } => match kikaku_edge::cli::keys::run(&config, command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kikaku-edge keys: {e}");
                ExitCode::from(1)
            }
        },
        Command::SimArk(sim) => match kikaku_edge::standins::ark_sim::run_standalone(sim) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sim-ark: {e}");
                ExitCode::from(1)
            }
        },
        Command::Serve {
            config,
            daemon,
            upgrade,
        } => {
            let args = kikaku_edge::proxy::server::ServeArgs {
                config: &config,
                daemon,
                upgrade,
            };
            match kikaku_edge::proxy::server::serve(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kikaku-edge: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
