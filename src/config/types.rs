//! The config file's shape. Field docs here are the reference for operators.

use std::collections::BTreeMap;

use kikaku_filters::{FilterConfig, KeyStatus, KeyType};
use serde::Deserialize;

use super::upstream::UpstreamConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listeners: Listeners,
    #[serde(default)]
    pub server: ServerSettings,
    /// Where durable state, the pid file and the upgrade socket live.
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub logging: LoggingConfig,
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// Built-in stand-ins for upstreams, started with the gateway (offline use, tests).
    #[serde(default)]
    pub simulators: Simulators,
    /// The S3 backend behind storage keys and the gallery.
    pub storage: Option<StorageConfig>,
    /// The base of every absolute URL the gateway hands out (presigned URLs,
    /// and later uploaded files), e.g. `https://gateway.example.com`.
    /// Default (also when empty): `http://` + the public listener's address.
    pub public_url: Option<String>,
    /// The management API (`/admin/v1/*` on the admin listener).
    pub admin: Option<super::AdminConfig>,
    /// The upload API (`/api/file-*-upload`, `/files`, `/download`).
    #[serde(default)]
    pub uploads: super::UploadsConfig,
    /// The content-addressed file host (`/api/upload`, `/upload`, `/f`).
    #[serde(default)]
    pub file_host: super::FileHostConfig,
}

impl Config {
    /// [`Config::public_url`] or its default, without a trailing slash.
    pub fn public_base(&self) -> String {
        match self.public_url.as_deref().filter(|u| !u.is_empty()) {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.listeners.public.address),
        }
    }
}

/// Where objects live. The gateway signs to the backend with its own
/// credentials; tenants never see them.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub backend: S3BackendConfig,
    /// The region S3 clients sign for: a SigV4 credential scope naming
    /// another region is refused (`AuthorizationHeaderMalformed`), and
    /// `/s3/credentials` hands this one out. Independent of the backend's.
    #[serde(default = "default_region")]
    pub region: String,
    /// An S3 server on local disk, started in-process (the offline default).
    /// Point `backend.upstream` at its `listen` address.
    pub embedded: Option<EmbeddedS3Config>,
    /// Where generated images are copied for the gallery.
    #[serde(default)]
    pub gallery: GalleryConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3BackendConfig {
    /// An entry of `upstreams` (endpoints, TLS, timeouts, health checks).
    pub upstream: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// The credential the gateway signs backend requests with. Both empty
    /// (or absent) with `storage.embedded`: the embedded backend's own,
    /// generated at first start into `<data_dir>/embedded-s3-credential.env`
    /// (mode 0600) and used from then on.
    #[serde(default)]
    pub access_key_id: String,
    #[serde(default)]
    pub secret_access_key: String,
    /// Backend bucket names are `<prefix><tenant>-<bucket>`; the tenant part
    /// keeps every storage key inside its own buckets.
    #[serde(default = "default_bucket_prefix")]
    pub bucket_prefix: String,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_bucket_prefix() -> String {
    "kk-".into()
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedS3Config {
    /// `IP:PORT` for the in-process S3 server.
    pub listen: String,
    /// Directory of the objects; default `<data_dir>/s3`.
    pub root: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GalleryConfig {
    pub enabled: bool,
    /// The backend bucket holding every gallery image (not a tenant bucket).
    pub bucket: String,
    /// Copies in flight at once.
    pub concurrency: usize,
    /// Attempts per image before it is given up (and logged).
    pub attempts: u32,
    /// Records kept per key; the oldest go first (their objects too).
    pub max_images_per_key: u64,
    /// Base of the gallery URLs (`https://img.example.com`); default: the
    /// scheme and Host of the request listing them.
    pub public_url: Option<String>,
}

impl Default for GalleryConfig {
    fn default() -> Self {
        GalleryConfig {
            enabled: true,
            bucket: "kk-gallery".into(),
            concurrency: 4,
            attempts: 5,
            max_images_per_key: 10_000,
            public_url: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Simulators {
    /// The Ark (SeedDream) simulator; point an upstream at its `listen` address.
    pub ark: Option<super::SimConfig>,
}

fn default_data_dir() -> String {
    "./data".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listeners {
    /// Customer traffic.
    pub public: ListenerConfig,
    /// Operators: `/healthz`, `/readyz`, `/metrics`.
    pub admin: Option<ListenerConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `IP:PORT` to bind.
    pub address: String,
    /// Serve HTTPS (see `config::tls`): certificates by SNI, HTTP/2 by ALPN.
    pub tls: Option<super::ListenerTls>,
    /// Plain-text HTTP/2 with prior knowledge (h2c) beside HTTP/1.1, for a
    /// listener without `tls` behind a load balancer that speaks h2c.
    #[serde(default)]
    pub h2c: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Worker threads of the public listener.
    pub threads: usize,
    /// Each thread of the public listener has its own listening socket
    /// (`SO_REUSEPORT`, the kernel spreads new connections over them) and its
    /// own single-threaded runtime, like nginx's workers with `reuseport`.
    /// `false`: one socket whose connections the threads share through one
    /// runtime (see `work_stealing`).
    pub reuse_port: bool,
    /// With `reuse_port: false`: let idle worker threads take tasks from
    /// busy ones (one shared tokio runtime). `false` gives each thread its
    /// own runtime.
    pub work_stealing: bool,
    /// Seconds to keep serving after SIGTERM/SIGQUIT before closing listeners.
    pub grace_period_seconds: u64,
    /// Seconds to let in-flight requests finish after the grace period.
    pub graceful_shutdown_timeout_seconds: u64,
    /// Larger request headers (all of them together) get 431.
    pub max_request_header_bytes: usize,
    /// More request headers than this get 431 (Pingora itself refuses more
    /// than 256 with a bare 400 before the gateway sees the request).
    pub max_request_headers: usize,
    /// Poll interval of the config file watcher (0 turns watching off; SIGHUP still reloads).
    pub watch_interval_ms: u64,
    /// PEM bundle of extra CAs trusted for TLS upstreams (besides the system's).
    /// Read at start.
    pub ca_file: Option<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            threads: 2,
            reuse_port: true,
            work_stealing: true,
            grace_period_seconds: 0,
            graceful_shutdown_timeout_seconds: 10,
            max_request_header_bytes: 32 * 1024,
            max_request_headers: 100,
            watch_interval_ms: 500,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    #[serde(default)]
    pub backend: StateBackend,
    /// Embedded backend: the journal file (default `<data_dir>/state.journal`).
    pub path: Option<String>,
    /// Redis backend: where and how (see `src/state/redis.rs`).
    pub redis: Option<super::RedisConfig>,
    /// Request logs kept per key, newest first, on either backend (the
    /// `/v1/usage` stats keep counting past it).
    #[serde(default = "default_logs_per_key")]
    pub logs_per_key: u64,
}

fn default_logs_per_key() -> u64 {
    10_000
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: StateBackend::default(),
            path: None,
            redis: None,
            logs_per_key: default_logs_per_key(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StateBackend {
    /// Single node, durable on local disk.
    #[default]
    Embedded,
    /// Many instances sharing one Redis (or Redis Cluster).
    Redis,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// `stdout`, `off`, or a file path for the JSON access log.
    pub access_log: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            access_log: "stdout".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: MatchConfig,
    #[serde(default)]
    pub filters: Vec<FilterConfig>,
    /// Proxy to this upstream...
    pub upstream: Option<String>,
    /// ...or answer locally.
    pub handler: Option<HandlerConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Empty: any method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Matches whole path segments: `/v1/images` matches `/v1/images/x`, not `/v1/imagesx`.
    pub path_prefix: String,
    /// Only the path `path_prefix` itself (with or without a trailing `/`),
    /// nothing under it: `/s3/files` (the listing) but not `/s3/files/x`.
    /// Beats a prefix route of the same length.
    #[serde(default)]
    pub exact: bool,
    /// Exact `Host` (port ignored); absent matches any host.
    pub host: Option<String>,
    /// Match only requests signed with AWS SigV4 (`Authorization:
    /// AWS4-HMAC-SHA256 ...` or `X-Amz-Algorithm` in the query): the S3
    /// endpoint sharing the public listener.
    #[serde(default)]
    pub sigv4: bool,
    /// Match only requests with no `Authorization` header: `/api/upload`
    /// without a key goes to the file host's anonymous route, with one to
    /// the keyed route. Beats a route without it for such requests.
    #[serde(default)]
    pub anonymous: bool,
}

/// Local handlers, chosen by `type`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HandlerConfig {
    /// 501 with a message: a route that is planned but not served yet.
    NotImplemented { message: String },
    /// `POST /v1/images/generations` against an Ark upstream.
    ImageGeneration(super::ImageGenerationConfig),
    /// `GET /v1/usage` for the authenticated image key.
    ImageUsage,
    /// `GET /v1/logs` for the authenticated image key.
    ImageLogs,
    /// The S3-compatible endpoint for storage keys (needs `storage`).
    S3Endpoint,
    /// `/s3/upload`, `/s3/files`, `/s3/usage` for storage keys (needs `storage`).
    StorageApi,
    /// `GET /v1/gallery` for the authenticated image key (needs `storage`).
    ImageGallery,
    /// `GET /gallery/<token>.jpeg`, no key: the token is unguessable (needs `storage`).
    GalleryFile,
    /// `GET /openapi.json`, no key: the public API's OpenAPI 3.1 document.
    Openapi,
    /// `POST /account/rotate-key`: the key's holder resets it (either type).
    RotateKey,
    /// `POST /api/file-{stream,base64,url}-upload` for storage keys (needs `storage`).
    Uploads,
    /// `GET /files/{tenant}/...` and `/download/{fileId}`, no key, until
    /// the file expires (needs `storage`).
    UploadedFiles,
    /// The customer portal: `GET /portal` (and its files), and `/`, which
    /// redirects there. No key: the page logs in itself.
    Portal,
    /// The content-addressed file host (seed 001, needs `storage`):
    /// `POST /api/upload` with a storage key (or without one when
    /// `file_host.anonymous.enabled`), `GET /api/upload` (the key's files),
    /// `DELETE /api/upload/{hash}`, the form URL `POST /upload` (always
    /// anonymous), and `GET|HEAD /f/{hash}...` (no key).
    FileHost,
}

impl HandlerConfig {
    /// Handlers that serve a customer's own data need `key_auth` first.
    pub fn needs_key(&self) -> bool {
        !matches!(
            self,
            HandlerConfig::NotImplemented { .. }
                | HandlerConfig::GalleryFile
                | HandlerConfig::Openapi
                | HandlerConfig::UploadedFiles
                | HandlerConfig::FileHost
                | HandlerConfig::Portal
        )
    }

    /// Handlers that work on the storage backend.
    pub fn needs_storage(&self) -> bool {
        matches!(
            self,
            HandlerConfig::S3Endpoint
                | HandlerConfig::StorageApi
                | HandlerConfig::ImageGallery
                | HandlerConfig::GalleryFile
                | HandlerConfig::Uploads
                | HandlerConfig::UploadedFiles
                | HandlerConfig::FileHost
        )
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The key itself (`kikaku_...` / `kikaku_s3_...`); kept only as its hash.
    pub key: Option<String>,
    /// Or its SHA-256 in hex, so the file need not hold the secret; needs `type`.
    pub key_sha256: Option<String>,
    #[serde(rename = "type")]
    pub key_type: Option<KeyType>,
    pub owner: String,
    #[serde(default)]
    pub email: String,
    #[serde(default = "active")]
    pub status: KeyStatus,
    /// RFC 3339 time or `YYYY-MM-DD`.
    pub created_at: Option<String>,
    pub expires_at: Option<String>,
    /// Images for image keys; bytes for storage keys (`1GiB`, `500MB`, or a number).
    pub quota: Option<QuotaValue>,
    /// Requests per minute (default 10).
    pub rate_limit_per_minute: Option<u32>,
    /// Storage keys: the default bucket (`/s3/*` works in it). Default `default`.
    pub bucket: Option<String>,
    /// Storage keys: the S3 credential for the S3-compatible endpoint.
    pub s3: Option<kikaku_filters::keys::S3Credential>,
}

fn active() -> KeyStatus {
    KeyStatus::Active
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum QuotaValue {
    Count(u64),
    Size(String),
}
