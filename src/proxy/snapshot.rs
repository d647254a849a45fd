//! The immutable runtime snapshot compiled from a config: routes with built
//! filter chains, upstream pools, the key directory. Reloads build a new one
//! and swap it in atomically; requests keep the snapshot they started with.

use std::collections::HashMap;
use std::sync::Arc;

use crate::state::StateStore;
use http::Method;
use kikaku_filters::keys::{hash_key, key_ref};
use kikaku_filters::registry::build_chain;
use kikaku_filters::{ApiKey, BuildEnv, KeyDirectory, KeyType, StoredKeys};

use crate::config::ConfigError;
use crate::config::{parse_sha256, parse_time, quota_amount, Config, ConfigErrors, KeyConfig};
use crate::gallery::Gallery;
use crate::proxy::handlers::{Handler, HandlerEnv};
use crate::proxy::routing::{Route, Router, Target};
use crate::storage::backend::S3Backend;
use crate::storage::Storage;
use crate::tls::ListenerCerts;
use crate::upstreams::Upstream;

pub struct Snapshot {
    /// Counts successful loads, starting at 1.
    pub generation: u64,
    pub config: Config,
    pub router: Router,
    pub upstreams: HashMap<String, Arc<Upstream>>,
    pub keys: Arc<KeyDirectory>,
    /// The storage backend and ledger, when `storage` is configured.
    pub storage: Option<Arc<Storage>>,
    /// The TLS listeners' certificates, read from their files with this
    /// config (the listeners' resolvers serve the current snapshot's).
    pub tls: ListenerCerts,
}

/// Defaults from DESIGN §2 and the issue: 1000 images, 1 GiB.
const DEFAULT_IMAGE_QUOTA: u64 = 1000;
const DEFAULT_STORAGE_QUOTA: u64 = 1 << 30;

impl Snapshot {
    /// Compile a validated config. `previous` lends its upstream pools to
    /// upstreams whose config did not change, so health state carries over.
    pub fn compile(
        config: Config,
        state: Arc<dyn StateStore>,
        stored_keys: Option<Arc<StoredKeys>>,
        previous: Option<&Snapshot>,
        generation: u64,
    ) -> Result<Snapshot, ConfigErrors> {
        let mut errors = Vec::new();
        let tls = ListenerCerts::load(&config, chrono::Utc::now().timestamp())
            .map_err(|mut e| errors.append(&mut e))
            .unwrap_or_default();
        for w in tls.warnings() {
            log::warn!("{w}");
        }

        let mut upstreams = HashMap::new();
        for (name, ucfg) in &config.upstreams {
            let before = previous.and_then(|p| p.upstreams.get(name));
            let reused = before.filter(|u| u.config == *ucfg).cloned();
            match reused
                .map(Ok)
                .unwrap_or_else(|| Upstream::build(name, ucfg, before.map(|u| &**u)).map(Arc::new))
            {
                Ok(u) => {
                    upstreams.insert(name.clone(), u);
                }
                Err(e) => errors.push(e),
            }
        }

        let keys = Arc::new(KeyDirectory::new(
            config.keys.iter().filter_map(|k| compile_key(k).ok()),
        ));
        let env = BuildEnv {
            keys: keys.clone(),
            stored_keys: stored_keys.clone(),
            state: state.clone(),
            s3_region: config
                .storage
                .as_ref()
                .map_or_else(|| "us-east-1".to_string(), |s| s.region.clone()),
        };
        let storage = match &config.storage {
            Some(sc) => match upstreams.get(&sc.backend.upstream) {
                Some(up) => {
                    let data_dir = std::path::Path::new(&config.data_dir);
                    match crate::standins::embedded_s3::backend_credential(sc, data_dir).and_then(
                        |cred| {
                            S3Backend::new(
                                &sc.backend,
                                cred,
                                up.clone(),
                                config.server.ca_file.as_deref(),
                            )
                        },
                    ) {
                        Ok(b) => Some(Arc::new(Storage::new(
                            b,
                            state.clone(),
                            sc,
                            &config.file_host.bucket,
                        ))),
                        Err(e) => {
                            errors.push(ConfigError::new("storage.backend", e));
                            None
                        }
                    }
                }
                None => {
                    errors.push(ConfigError::new(
                        "storage.backend.upstream",
                        format!("no upstream {:?}", sc.backend.upstream),
                    ));
                    None
                }
            },
            None => None,
        };
        let gallery = storage
            .as_ref()
            .zip(config.storage.as_ref())
            .map(|(s, sc)| {
                Arc::new(Gallery::new(
                    sc.gallery.clone(),
                    s.backend.clone(),
                    state.clone(),
                ))
            });
        let handler_env = HandlerEnv {
            upstreams: &upstreams,
            state,
            ca_file: config.server.ca_file.as_deref(),
            storage: storage.clone(),
            gallery,
            config_keys: keys.clone(),
            stored_keys,
            uploads: &config.uploads,
            file_host: &config.file_host,
            public_base: config.public_base(),
        };

        let mut routes = Vec::new();
        for (i, r) in config.routes.iter().enumerate() {
            let target = match (&r.upstream, &r.handler) {
                (Some(u), _) => match upstreams.get(u) {
                    Some(u) => Target::Upstream(u.clone()),
                    None => continue, // reported above (resolution) or by validation
                },
                (None, Some(h)) => match Handler::from_config(h, &handler_env) {
                    Ok(h) => Target::Handler(h),
                    Err(e) => {
                        errors.push(ConfigError::new(format!("routes[{i}].handler"), e));
                        continue;
                    }
                },
                (None, None) => continue,
            };
            routes.push(Route {
                name: r.name.clone(),
                methods: r
                    .matcher
                    .methods
                    .iter()
                    .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                    .collect(),
                path_prefix: r.matcher.path_prefix.clone(),
                exact: r.matcher.exact,
                host: r
                    .matcher
                    .host
                    .as_deref()
                    .map(crate::proxy::routing::host_only),
                sigv4: r.matcher.sigv4,
                anonymous: r.matcher.anonymous,
                chain: build_chain(&r.filters, &env),
                target,
            });
        }

        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Snapshot {
            generation,
            config,
            router: Router::new(routes),
            upstreams,
            keys,
            storage,
            tls,
        })
    }
}

/// A key entry as the directory holds it (validation has already vouched for it).
fn compile_key(k: &KeyConfig) -> Result<ApiKey, ()> {
    let (hash, key_type) = match (&k.key, &k.key_sha256) {
        (Some(key), _) => (hash_key(key), KeyType::from_key(key).ok_or(())?),
        (None, Some(hex)) => (parse_sha256(hex).ok_or(())?, k.key_type.ok_or(())?),
        (None, None) => return Err(()),
    };
    let quota = match &k.quota {
        Some(q) => quota_amount(q, key_type).map_err(|_| ())?,
        None if key_type == KeyType::Image => DEFAULT_IMAGE_QUOTA,
        None => DEFAULT_STORAGE_QUOTA,
    };
    Ok(ApiKey {
        hash,
        key_ref: key_ref(key_type, &hash),
        key_type,
        owner: k.owner.clone(),
        email: k.email.clone(),
        status: k.status,
        created_at: k.created_at.as_deref().and_then(parse_time).unwrap_or(0),
        expires_at: k.expires_at.as_deref().and_then(parse_time),
        quota,
        rate_limit_per_minute: k.rate_limit_per_minute,
        bucket: k.bucket.clone(),
        s3: k.s3.clone(),
        more_s3: Vec::new(),
        account: None,
    })
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("generation", &self.generation)
            .field("routes", &self.router.routes().len())
            .field("keys", &self.keys.len())
            .finish()
    }
}
