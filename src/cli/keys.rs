//! `kikaku-edge keys`: manage the keys kept in the configured state store.
//! Changes reach every gateway instance within a second (their stored-key
//! cache lives at most that long). On the embedded backend the command
//! refuses to run beside a live gateway: one writer per journal.

use std::path::Path;
use std::sync::Arc;

use crate::state::StateStore;
use clap::Subcommand;
use kikaku_filters::keys::{hash_key, hex, parse_hex32};
use kikaku_filters::{ApiKey, KeyStatus, KeyStore, KeyType};

use super::CliError;
use crate::admin_api::keys::{KeyFields, Minted};
use crate::config::{load_file, parse_size, parse_time, StateBackend};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key; it is printed once and only its hash is stored.
    Create {
        #[arg(long = "type", value_enum)]
        key_type: KeyTypeArg,
        #[arg(long)]
        owner: String,
        #[arg(long, default_value = "")]
        email: String,
        /// Images (image keys) or bytes like 1GiB (storage keys).
        #[arg(long)]
        quota: Option<String>,
        #[arg(long)]
        rate_limit: Option<u32>,
        /// RFC 3339 time or YYYY-MM-DD.
        #[arg(long)]
        expires_at: Option<String>,
        /// Storage keys: the default bucket (the one `/s3/*` works in).
        #[arg(long, default_value = "default")]
        bucket: String,
    },
    /// One line per stored key.
    List,
    /// Everything about one key (by its reference, the key itself, or its SHA-256).
    Show {
        key: String,
    },
    Suspend {
        key: String,
    },
    Resume {
        key: String,
    },
    SetQuota {
        key: String,
        quota: String,
    },
    SetRateLimit {
        key: String,
        per_minute: u32,
    },
    Delete {
        key: String,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum KeyTypeArg {
    Image,
    Storage,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn quota_for(t: KeyType, q: &str) -> Result<u64, CliError> {
    let n = match t {
        KeyType::Image => q.parse::<u64>().map_err(|_| {
            CliError::Usage(format!("image quotas are a number of images, not {q:?}"))
        })?,
        KeyType::Storage => parse_size(q).map_err(CliError::Usage)?,
    };
    if n == 0 {
        return Err(CliError::Usage("quota must be > 0".into()));
    }
    Ok(n)
}

/// Refuse to write an embedded journal that a running gateway holds.
pub fn guard_embedded(data_dir: &Path) -> Result<(), CliError> {
    let pid_file = data_dir.join("kikaku-edge.pid");
    let Ok(pid) = std::fs::read_to_string(&pid_file) else {
        return Ok(());
    };
    let pid = pid.trim();
    // A killed gateway not yet reaped lingers as a zombie: that is not running.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let running = stat
        .rsplit_once(')')
        .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        .unwrap_or(false);
    if !pid.is_empty() && running {
        return Err(CliError::GatewayRunning(pid.to_string()));
    }
    Ok(())
}

async fn find(store: &dyn KeyStore, given: &str) -> Result<ApiKey, CliError> {
    let by_hash = |h: [u8; 32]| async move { store.key_get(&h).await };
    if KeyType::from_key(given).is_some() && !given.contains('~') {
        return by_hash(hash_key(given))
            .await?
            .ok_or_else(|| CliError::NoMatch("no stored key matches that key".into()));
    }
    if let Some(h) = parse_hex32(given) {
        return by_hash(h)
            .await?
            .ok_or_else(|| CliError::NoMatch("no stored key has that hash".into()));
    }
    let all = store.key_list().await?;
    let mut hits = all
        .into_iter()
        .filter(|k| k.key_ref == given || k.key_ref.ends_with(given));
    match (hits.next(), hits.next()) {
        (Some(k), None) => Ok(k),
        (None, _) => Err(CliError::NoMatch(format!(
            "no stored key {given:?} (see `keys list`)"
        ))),
        (Some(_), Some(_)) => Err(CliError::NoMatch(format!(
            "{given:?} matches more than one key; give the whole reference"
        ))),
    }
}

fn line(k: &ApiKey) -> String {
    format!(
        "{:<20} {:<8} {:<10} quota={:<12} rate/min={:<8} {} <{}>",
        k.key_ref,
        k.key_type.as_str(),
        if k.status == KeyStatus::Active {
            "active"
        } else {
            "suspended"
        },
        k.quota,
        k.rate_limit_per_minute
            .map(|r| r.to_string())
            .unwrap_or_else(|| "default".into()),
        k.owner,
        k.email
    )
}

pub fn run(config: &Path, cmd: KeysCommand) -> Result<(), CliError> {
    let cfg = load_file(config).map_err(|e| CliError::Config(config.to_path_buf(), e))?;
    if cfg.state.backend == StateBackend::Embedded {
        guard_embedded(Path::new(&cfg.data_dir))?;
    }
    // Opened outside any runtime: the Redis backend brings its own.
    let state: Arc<dyn StateStore> = crate::state::open(&cfg)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(execute(state.as_ref(), cmd))
}

async fn execute(store: &dyn StateStore, cmd: KeysCommand) -> Result<(), CliError> {
    let put = |k: ApiKey| async move { store.key_put(&k).await.map(|_| k) };
    match cmd {
        KeysCommand::Create {
            key_type,
            owner,
            email,
            quota,
            rate_limit,
            expires_at,
            bucket,
        } => {
            let t = match key_type {
                KeyTypeArg::Image => KeyType::Image,
                KeyTypeArg::Storage => KeyType::Storage,
            };
            if owner.is_empty() {
                return Err(CliError::Usage("--owner must not be empty".into()));
            }
            let quota = match quota {
                Some(q) => quota_for(t, &q)?,
                None if t == KeyType::Image => 1000,
                None => 1 << 30,
            };
            let expires_at = expires_at
                .map(|e| {
                    parse_time(&e).ok_or_else(|| {
                        CliError::Usage(format!("--expires-at {e:?} is not RFC 3339 or YYYY-MM-DD"))
                    })
                })
                .transpose()?;
            if rate_limit == Some(0) {
                return Err(CliError::Usage("--rate-limit must be > 0".into()));
            }
            let bucket = match t {
                KeyType::Image => None,
                KeyType::Storage => {
                    crate::config::names::check_tenant_bucket(&bucket)
                        .map_err(|e| CliError::Usage(format!("--bucket: {e}")))?;
                    Some(bucket)
                }
            };
            let Minted { key, secret } = Minted::new(
                KeyFields {
                    key_type: t,
                    owner,
                    email,
                    quota,
                    rate_limit_per_minute: rate_limit,
                    expires_at,
                    bucket,
                },
                now(),
            );
            let s3 = key.s3.clone();
            let k = put(key).await?;
            println!("{secret}");
            if let Some(c) = &s3 {
                println!("aws_access_key_id={}", c.access_key_id);
                println!("aws_secret_access_key={}", c.secret_access_key);
            }
            eprintln!(
                "created {} (the key above is shown once; only its hash is stored)",
                k.key_ref
            );
        }
        KeysCommand::List => {
            for k in store.key_list().await? {
                println!("{}", line(&k));
            }
        }
        KeysCommand::Show { key } => {
            let k = find(store, &key).await?;
            println!("{}", line(&k));
            println!(
                "sha256={} created_at={} expires_at={}",
                hex(&k.hash),
                k.created_at,
                k.expires_at
                    .map(|e| e.to_string())
                    .unwrap_or("never".into())
            );
        }
        KeysCommand::Suspend { key } => {
            let mut k = find(store, &key).await?;
            k.status = KeyStatus::Suspended;
            println!("{}", line(&put(k).await?));
        }
        KeysCommand::Resume { key } => {
            let mut k = find(store, &key).await?;
            k.status = KeyStatus::Active;
            println!("{}", line(&put(k).await?));
        }
        KeysCommand::SetQuota { key, quota } => {
            let mut k = find(store, &key).await?;
            k.quota = quota_for(k.key_type, &quota)?;
            println!("{}", line(&put(k).await?));
        }
        KeysCommand::SetRateLimit { key, per_minute } => {
            if per_minute == 0 {
                return Err(CliError::Usage("the rate limit must be > 0".into()));
            }
            let mut k = find(store, &key).await?;
            k.rate_limit_per_minute = Some(per_minute);
            println!("{}", line(&put(k).await?));
        }
        KeysCommand::Delete { key } => {
            let k = find(store, &key).await?;
            store.key_delete(&k.hash).await?;
            println!("deleted {}", k.key_ref);
        }
    }
    Ok(())
}
