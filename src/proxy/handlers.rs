//! The handler registry: the routes the gateway answers itself instead of
//! proxying, built from their config when a snapshot is compiled. A new
//! handler is one variant here, its room, and its config type.

use crate::reply::Exchange;
use std::collections::HashMap;
use std::sync::Arc;

use crate::state::StateStore;
use kikaku_filters::{ErrorKind, GatewayError};

use crate::account;
use crate::config::HandlerConfig;
use crate::gallery::{self, Gallery};
use crate::images;
use crate::storage::{s3_endpoint, storage_api};
use crate::upstreams::Upstream;

pub enum Handler {
    /// 501 with the configured message.
    NotImplemented(String),
    ImageGeneration(Arc<images::ImageGeneration>),
    ImageUsage(Arc<dyn StateStore>),
    ImageLogs(Arc<dyn StateStore>),
    S3Endpoint(Arc<s3_endpoint::S3Endpoint>),
    StorageApi(Arc<storage_api::StorageApi>),
    ImageGallery(Arc<Gallery>),
    GalleryFile(Arc<Gallery>),
    /// The public API's OpenAPI document.
    Openapi,
    RotateKey(Arc<account::rotate::RotateKey>),
    Uploads(Arc<crate::uploads::Uploads>),
    UploadedFiles(Arc<crate::uploads::serve::UploadedFiles>),
    FileHost(Arc<crate::file_host::FileHost>),
    /// The customer portal's page and files.
    Portal,
}

/// What handlers may capture when a snapshot is compiled.
pub struct HandlerEnv<'a> {
    pub upstreams: &'a HashMap<String, Arc<Upstream>>,
    pub state: Arc<dyn StateStore>,
    pub ca_file: Option<&'a str>,
    pub storage: Option<Arc<crate::storage::Storage>>,
    /// The image gallery, kept in storage when `storage` is configured.
    pub gallery: Option<Arc<Gallery>>,
    /// The config file's keys.
    pub config_keys: Arc<kikaku_filters::KeyDirectory>,
    /// The cache of keys kept in the state store.
    pub stored_keys: Option<Arc<kikaku_filters::StoredKeys>>,
    pub uploads: &'a crate::config::UploadsConfig,
    pub file_host: &'a crate::config::FileHostConfig,
    /// `public_url` (or its default), without a trailing slash.
    pub public_base: String,
}

impl Handler {
    pub fn from_config(cfg: &HandlerConfig, env: &HandlerEnv<'_>) -> Result<Handler, String> {
        Ok(match cfg {
            HandlerConfig::NotImplemented { message } => Handler::NotImplemented(message.clone()),
            HandlerConfig::ImageGeneration(ig) => {
                let upstream = env
                    .upstreams
                    .get(&ig.upstream)
                    .ok_or_else(|| format!("no upstream {:?}", ig.upstream))?
                    .clone();
                Handler::ImageGeneration(Arc::new(images::ImageGeneration::new(
                    ig.clone(),
                    upstream,
                    env.state.clone(),
                    env.ca_file,
                    env.gallery.clone(),
                )?))
            }
            HandlerConfig::ImageUsage => Handler::ImageUsage(env.state.clone()),
            HandlerConfig::ImageLogs => Handler::ImageLogs(env.state.clone()),
            HandlerConfig::S3Endpoint => Handler::S3Endpoint(Arc::new(
                s3_endpoint::S3Endpoint::new(env.storage.clone().ok_or_else(needs_storage)?),
            )),
            HandlerConfig::ImageGallery => {
                Handler::ImageGallery(env.gallery.clone().ok_or_else(needs_storage)?)
            }
            HandlerConfig::Openapi => Handler::Openapi,
            HandlerConfig::Uploads => Handler::Uploads(Arc::new(crate::uploads::Uploads::new(
                env.storage.clone().ok_or_else(needs_storage)?,
                env.uploads.clone(),
                env.public_base.clone(),
            )?)),
            HandlerConfig::UploadedFiles => {
                Handler::UploadedFiles(Arc::new(crate::uploads::serve::UploadedFiles::new(
                    env.storage.clone().ok_or_else(needs_storage)?,
                )))
            }
            HandlerConfig::FileHost => {
                Handler::FileHost(Arc::new(crate::file_host::FileHost::new(
                    env.storage.clone().ok_or_else(needs_storage)?,
                    env.file_host.clone(),
                    env.public_base.clone(),
                )))
            }
            HandlerConfig::Portal => Handler::Portal,
            HandlerConfig::RotateKey => {
                Handler::RotateKey(Arc::new(account::rotate::RotateKey::new(
                    env.state.clone(),
                    env.config_keys.clone(),
                    env.stored_keys.clone(),
                )))
            }
            HandlerConfig::GalleryFile => {
                Handler::GalleryFile(env.gallery.clone().ok_or_else(needs_storage)?)
            }
            HandlerConfig::StorageApi => Handler::StorageApi(Arc::new(
                storage_api::StorageApi::new(env.storage.clone().ok_or_else(needs_storage)?),
            )),
        })
    }

    /// The error format of the handler's route, when not the gateway's
    /// JSON: the upload API answers in seed 003's envelope and the file
    /// host in seed 001's (plain text with `?api=1`) from the first check
    /// on (a missing key included).
    pub fn error_format(
        &self,
        req: &pingora::http::RequestHeader,
    ) -> Option<kikaku_filters::ErrorFormat> {
        match self {
            Handler::Uploads(_) => Some(kikaku_filters::ErrorFormat::Upload),
            Handler::FileHost(_) => Some(crate::file_host::FileHost::error_format(req)),
            _ => None,
        }
    }

    /// Whether the handler counts the route's rate limit itself (the image
    /// handler does, in one state round trip with its quota reservation).
    pub fn counts_rate_limit(&self) -> bool {
        matches!(self, Handler::ImageGeneration(_))
    }

    /// A filter refused the request before the handler ran. The image
    /// handler logs it, so a key's logs show every request; the others
    /// have nothing to record.
    pub async fn refused_by_filter(
        &self,
        key: &kikaku_filters::ApiKey,
        started: std::time::Instant,
        err: &GatewayError,
    ) {
        if let Handler::ImageGeneration(h) = self {
            h.record_refusal(key, started, err).await;
        }
    }

    /// Serve the request. Errors are answered by [`crate::reply::error`].
    pub async fn handle(&self, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
        // Each handler's future is boxed on its own: inline, every request
        // (even a proxied one) would move a future as large as the largest
        // handler's (the S3 streaming ones) each time it is pinned.
        match self {
            Handler::NotImplemented(msg) => {
                Err(GatewayError::new(ErrorKind::NotImplemented, msg.clone()))
            }
            Handler::ImageGeneration(h) => Box::pin(h.handle(ex)).await,
            Handler::ImageUsage(state) => Box::pin(account::usage(state, ex)).await,
            Handler::ImageLogs(state) => Box::pin(account::logs(state, ex)).await,
            Handler::S3Endpoint(h) => Box::pin(h.handle(ex)).await,
            Handler::StorageApi(h) => Box::pin(h.handle(ex)).await,
            Handler::ImageGallery(g) => Box::pin(gallery::routes::list(g, ex)).await,
            Handler::GalleryFile(g) => Box::pin(gallery::routes::file(g, ex)).await,
            Handler::Openapi => crate::openapi::serve(ex).await,
            Handler::RotateKey(h) => Box::pin(h.handle(ex)).await,
            Handler::Uploads(h) => Box::pin(h.handle(ex)).await,
            Handler::UploadedFiles(h) => Box::pin(h.handle(ex)).await,
            Handler::FileHost(h) => Box::pin(h.handle(ex)).await,
            Handler::Portal => Box::pin(crate::web::portal::serve(ex)).await,
        }
    }
}

fn needs_storage() -> String {
    "this handler needs the `storage` section (an S3 backend)".into()
}
