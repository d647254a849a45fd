//! `kikaku-edge storage reconcile`: recompute every storage key's usage from
//! what the backend really holds (DESIGN §4), after a crash between a write
//! and its ledger entry, objects changed behind the gateway's back, or a
//! restore. It lists each key's buckets and objects at the backend and
//! restates the ledger; parts of multipart uploads in progress keep counting.

use std::path::Path;
use std::sync::Arc;

use crate::state::StateStore;
use clap::Subcommand;
use kikaku_filters::{ApiKey, KeyType};

use super::CliError;
use crate::config::StateBackend;
use crate::storage::reconcile::reconcile;

#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Recompute storage usage from the backend, for every storage key (or one).
    Reconcile {
        /// One key (its reference `kikaku_s3_~abcd1234`, the key, or its SHA-256).
        #[arg(long)]
        key: Option<String>,
    },
}

pub fn run(config: &Path, cmd: StorageCommand) -> Result<(), CliError> {
    let cfg =
        crate::config::load_file(config).map_err(|e| CliError::Config(config.to_path_buf(), e))?;
    if cfg.state.backend == StateBackend::Embedded {
        crate::cli::keys::guard_embedded(Path::new(&cfg.data_dir))?;
    }
    let storage_cfg = cfg
        .storage
        .clone()
        .ok_or(CliError::Missing("storage section"))?;
    let state: Arc<dyn StateStore> = crate::state::open(&cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // With the embedded backend and the gateway stopped, nobody serves
        // the objects: serve them here for the length of the command.
        if let Some(e) = &storage_cfg.embedded {
            let server = crate::standins::embedded_s3::EmbeddedS3 {
                listen: e.listen.clone(),
                root: e
                    .root
                    .clone()
                    .map(std::path::PathBuf::from)
                    .unwrap_or_else(|| Path::new(&cfg.data_dir).join("s3")),
                credential: crate::standins::embedded_s3::backend_credential(
                    &storage_cfg,
                    Path::new(&cfg.data_dir),
                )
                .map_err(CliError::Setup)?,
            };
            if tokio::net::TcpStream::connect(&e.listen).await.is_err() {
                tokio::spawn(async move {
                    if let Err(e) = server.serve().await {
                        eprintln!("embedded S3 backend: {e}");
                    }
                });
                for _ in 0..100 {
                    if tokio::net::TcpStream::connect(&e.listen).await.is_ok() {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        }
        let snap = crate::proxy::snapshot::Snapshot::compile(cfg, state.clone(), None, None, 1)
            .map_err(|e| CliError::Config(config.to_path_buf(), e))?;
        let storage = snap
            .storage
            .clone()
            .ok_or_else(|| CliError::Setup("storage did not start".into()))?;
        let mut keys: Vec<ApiKey> = snap
            .keys
            .all()
            .into_iter()
            .map(|k| (*k).clone())
            .chain(state.key_list().await?)
            .filter(|k| k.key_type == KeyType::Storage)
            .collect();
        let StorageCommand::Reconcile { key } = cmd;
        if let Some(given) = key {
            keys.retain(|k| matches_key(k, &given));
            if keys.is_empty() {
                return Err(CliError::NoMatch(format!(
                    "no storage key matches {given:?}"
                )));
            }
        }
        for k in keys {
            let (before, after, objects) = reconcile(&storage, &k).await?;
            println!(
                "{} used {before} -> {after} bytes ({objects} objects)",
                k.key_ref
            );
        }
        Ok(())
    })
}

fn matches_key(k: &ApiKey, given: &str) -> bool {
    k.key_ref == given
        || k.hash == kikaku_filters::keys::hash_key(given)
        || kikaku_filters::keys::parse_hex32(given) == Some(k.hash)
}
