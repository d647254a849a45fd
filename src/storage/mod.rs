//! Storage for storage keys (DESIGN §4): the S3-compatible endpoint
//! (`s3_endpoint`), the simple storage API (`storage_api`), and what they
//! share — the signed client for the backend (`backend`), payload
//! verification of client uploads (`payload`), streaming uploads under
//! the byte quota (`upload`), and a form's file of known size as one PUT
//! (`form_put`).

pub mod backend;
pub mod capped;
pub mod form_put;
pub mod mime;
pub mod payload;
pub mod reconcile;
pub mod s3_endpoint;
pub mod staged;
pub mod storage_api;
pub mod upload;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::state::StateStore;
use kikaku_filters::{ApiKey, GatewayError};

use backend::{BackendError, S3Backend};

/// What every storage handler works with: the backend and the ledger.
pub struct Storage {
    pub backend: Arc<S3Backend>,
    pub state: Arc<dyn StateStore>,
    /// The region S3 clients sign for (`storage.region`).
    pub region: String,
    /// The file host's bucket (`file_host.bucket`): where its content and
    /// the parts of its uploads in progress live.
    pub file_host_bucket: String,
    /// Backend buckets seen to exist, and when.
    existing: parking_lot::Mutex<HashMap<String, Instant>>,
}

/// How long a bucket seen to exist is trusted without asking again. A bucket
/// deleted through another instance stays "existing" here at most this long;
/// the backend still refuses writes into it.
const EXISTS_TTL: Duration = Duration::from_secs(5);

impl Storage {
    pub fn new(
        backend: S3Backend,
        state: Arc<dyn StateStore>,
        cfg: &crate::config::StorageConfig,
        file_host_bucket: &str,
    ) -> Storage {
        Storage {
            backend: Arc::new(backend),
            region: cfg.region.clone(),
            file_host_bucket: file_host_bucket.to_string(),
            state,
            existing: Default::default(),
        }
    }

    /// Whether a backend bucket exists: the tenant owns it exactly when it
    /// does (names are per tenant). Every bucket-scoped operation asks, so
    /// isolation does not depend on how a backend treats missing buckets.
    pub async fn bucket_exists(&self, backend_bucket: &str) -> Result<bool, GatewayError> {
        if self.seen_recently(backend_bucket) {
            return Ok(true);
        }
        let resp = self
            .backend
            .send(backend::BackendRequest::new(
                http::Method::HEAD,
                Some(backend_bucket.to_string()),
                None,
            ))
            .await
            .map_err(backend_unavailable)?;
        let exists = resp.status().is_success();
        let mut cache = self.existing.lock();
        if exists {
            if cache.len() > 100_000 {
                cache.clear();
            }
            cache.insert(backend_bucket.to_string(), Instant::now());
        } else {
            cache.remove(backend_bucket);
        }
        Ok(exists)
    }

    /// A bucket was created (`true`) or deleted (`false`) through this instance.
    pub fn bucket_changed(&self, backend_bucket: &str, exists: bool) {
        let mut cache = self.existing.lock();
        if exists {
            cache.insert(backend_bucket.to_string(), Instant::now());
        } else {
            cache.remove(backend_bucket);
        }
    }

    /// Send to the backend; a backend that cannot answer becomes 502/503/504.
    pub async fn send(
        &self,
        req: backend::BackendRequest,
    ) -> Result<reqwest::Response, GatewayError> {
        self.backend.send(req).await.map_err(backend_unavailable)
    }

    /// Send, and read the (small) answer whole: status and body.
    pub async fn send_read(
        &self,
        req: backend::BackendRequest,
    ) -> Result<(u16, bytes::Bytes), GatewayError> {
        let resp = self.send(req).await?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| {
            GatewayError::new(
                kikaku_filters::ErrorKind::BadGateway,
                format!("storage backend: {e}"),
            )
        })?;
        Ok((status, body))
    }

    /// The backend name of one of `key`'s buckets.
    pub fn backend_bucket(&self, key: &ApiKey, bucket: &str) -> String {
        self.backend.buckets.to_backend(&key.tenant_id(), bucket)
    }

    /// How an object is named in the ledger.
    pub fn ledger_name(bucket: &str, object: &str) -> String {
        format!("{bucket}/{object}")
    }

    /// Make sure the key's default bucket exists: created on first use,
    /// then trusted like any bucket seen to exist.
    pub async fn ensure_default_bucket(&self, key: &ApiKey) -> Result<(), GatewayError> {
        let name = self.backend_bucket(key, key.default_bucket());
        if self.seen_recently(&name) {
            return Ok(());
        }
        self.backend
            .ensure_bucket(&name)
            .await
            .map_err(backend_unavailable)?;
        self.bucket_changed(&name, true);
        Ok(())
    }

    /// Delete one of `key`'s objects; the bytes it held return to the
    /// key's quota. `None` when there was no such object.
    pub async fn delete_object(
        &self,
        key: &ApiKey,
        bucket: &str,
        object: &str,
    ) -> Result<Option<u64>, GatewayError> {
        let backend_bucket = self.backend_bucket(key, bucket);
        if self
            .backend
            .object_size(&backend_bucket, object)
            .await
            .map_err(backend_unavailable)?
            .is_none()
        {
            return Ok(None);
        }
        self.backend
            .call(backend::BackendRequest::new(
                http::Method::DELETE,
                Some(backend_bucket),
                Some(object.to_string()),
            ))
            .await
            .map_err(backend_unavailable)?;
        let freed = self
            .state
            .storage_remove(&key.subject(), &Storage::ledger_name(bucket, object))
            .await
            .map_err(|e| GatewayError::unavailable("The storage ledger", e))?;
        Ok(Some(freed))
    }

    /// GET or HEAD one object for a client, with the client's Range and
    /// conditional headers: the backend's answer when it is one to relay
    /// (2xx, 304, 412), else `not_found` (404), 416 as a bad range, or 502.
    pub async fn read_object(
        &self,
        req: &pingora::http::RequestHeader,
        backend_bucket: String,
        object: String,
        not_found: impl FnOnce() -> GatewayError,
    ) -> Result<reqwest::Response, GatewayError> {
        use kikaku_filters::ErrorKind;
        const PASSED: &[&str] = &[
            "range",
            "if-match",
            "if-none-match",
            "if-modified-since",
            "if-unmodified-since",
            "if-range",
        ];
        let mut breq =
            backend::BackendRequest::new(req.method.clone(), Some(backend_bucket), Some(object));
        for h in PASSED {
            if let Some(v) = req.headers.get(*h).and_then(|v| v.to_str().ok()) {
                breq.headers.push((h.to_string(), v.to_string()));
            }
        }
        let resp = self.send(breq).await?;
        match resp.status().as_u16() {
            404 => Err(not_found()),
            416 => Err(GatewayError::new(
                ErrorKind::InvalidParameter,
                "The requested range is not satisfiable.",
            )),
            s if s >= 400 && s != 412 => Err(GatewayError::new(
                ErrorKind::BadGateway,
                format!("storage backend answered {s}"),
            )),
            _ => Ok(resp),
        }
    }

    fn seen_recently(&self, backend_bucket: &str) -> bool {
        self.existing
            .lock()
            .get(backend_bucket)
            .is_some_and(|at| at.elapsed() < EXISTS_TTL)
    }
}

/// A backend that could not answer, as the client sees it.
pub fn backend_unavailable(e: BackendError) -> GatewayError {
    use kikaku_filters::ErrorKind;
    match e {
        BackendError::Timeout => GatewayError::new(ErrorKind::GatewayTimeout, e.to_string()),
        BackendError::NoEndpoint => GatewayError::new(ErrorKind::ServiceUnavailable, e.to_string()),
        BackendError::Full(after) => {
            GatewayError::new(ErrorKind::ServiceUnavailable, e.to_string()).with_retry_after(after)
        }
        _ => GatewayError::new(ErrorKind::BadGateway, e.to_string()),
    }
}
