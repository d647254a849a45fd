//! The storage backend client: every call the gateway makes to S3 (on
//! behalf of a tenant or for itself), signed with the backend's own
//! credential. Bodies stream; nothing here buffers an object.

use kikaku_filters::clock::now_unix;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;

use sigv4::{self, SigningCredential, UNSIGNED_PAYLOAD};

use crate::config::names::BucketMap;
use crate::config::S3BackendConfig;
use crate::s3_xml as xml;
use crate::upstreams::{Affinity, Endpoint, Failure, PickError, Upstream};

/// The credential the gateway signs backend requests with (and, for the
/// embedded backend, the only one that backend accepts).
#[derive(Clone, PartialEq, Eq)]
pub struct BackendCredential {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for BackendCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendCredential")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Why a backend call produced no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum BackendError {
    /// No healthy endpoint in the pool.
    NoEndpoint,
    /// The pool's circuit breaker is full; try again after this long.
    Full(std::time::Duration),
    Transport(String),
    Timeout,
    /// An answer that is not what S3 sends (e.g. unparsable XML).
    BadAnswer(String),
    /// A non-2xx answer: status and S3 error code.
    Status(u16, String),
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendError::NoEndpoint => write!(f, "no healthy storage backend endpoint"),
            BackendError::Full(_) => write!(
                f,
                "the storage backend is at its limit of requests in flight"
            ),
            BackendError::Transport(m) => write!(f, "storage backend: {m}"),
            BackendError::Timeout => write!(f, "storage backend timed out"),
            BackendError::BadAnswer(m) => write!(f, "storage backend answered badly: {m}"),
            BackendError::Status(s, c) => write!(f, "storage backend answered {s} {c}"),
        }
    }
}

/// One request to the backend. Names are the backend's (already mapped).
pub struct BackendRequest {
    pub method: http::Method,
    pub bucket: Option<String>,
    pub key: Option<String>,
    /// Decoded query pairs.
    pub query: Vec<(String, String)>,
    /// Lower-case names; `x-amz-*` and `content-md5` are signed, the rest
    /// (Range, If-*, Content-Type, ...) forwarded as they are.
    pub headers: Vec<(String, String)>,
    /// A body held in memory (sent again as it is when a retry needs it).
    pub body: Option<bytes::Bytes>,
    /// A body streamed from the client instead (`body` is then `None`).
    pub pipe: Option<PipeBody>,
    /// What the pool's `hash_on: key` hashes: the key the call is made
    /// for, so one customer's calls stick to one backend endpoint.
    pub affinity: Option<String>,
}

impl BackendRequest {
    pub fn new(method: http::Method, bucket: Option<String>, key: Option<String>) -> Self {
        BackendRequest {
            method,
            bucket,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            pipe: None,
            affinity: None,
        }
    }
}

impl BackendRequest {
    /// A request on one object.
    pub fn object(method: http::Method, bucket: &str, key: &str) -> Self {
        BackendRequest::new(method, Some(bucket.to_string()), Some(key.to_string()))
    }

    pub fn with_query(mut self, query: &[(&str, &str)]) -> Self {
        self.query = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self
    }

    /// The key the call is made for (its reference: see `affinity`).
    pub fn for_key(mut self, key_ref: &str) -> Self {
        self.affinity = Some(key_ref.to_string());
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// A body held in memory, with its length.
    pub fn with_body(mut self, body: bytes::Bytes) -> Self {
        self.headers
            .push(("content-length".into(), body.len().to_string()));
        self.body = Some(body);
        self
    }
}

/// A body the gateway streams as it reads it from its client. Until the
/// backend has read any of it, it can be sent again: a connection that
/// could not be made reads none, so such a PUT goes to another endpoint.
#[derive(Clone)]
pub struct PipeBody {
    rx: Arc<Mutex<Option<PipeReceiver>>>,
}

type PipeReceiver = tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>;

impl PipeBody {
    pub fn new(rx: PipeReceiver) -> PipeBody {
        PipeBody {
            rx: Arc::new(Mutex::new(Some(rx))),
        }
    }

    /// The body for one try: it takes the pipe when first read.
    fn body(&self) -> reqwest::Body {
        let slot = self.rx.clone();
        let stream = futures_util::stream::unfold((slot, None), |(slot, rx)| async move {
            let mut rx: PipeReceiver = match rx {
                Some(rx) => rx,
                None => slot.lock().take()?,
            };
            rx.recv().await.map(|item| (item, (slot, Some(rx))))
        });
        reqwest::Body::wrap_stream(stream)
    }

    /// Whether a try has begun reading it.
    fn started(&self) -> bool {
        self.rx.lock().is_none()
    }
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    pub last_modified: String,
    pub etag: String,
}

/// A page of ListObjectsV2.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    pub next_token: Option<String>,
}

pub struct S3Backend {
    upstream: Arc<Upstream>,
    clients: HashMap<SocketAddr, reqwest::Client>,
    region: String,
    access_key_id: String,
    secret_access_key: String,
    pub buckets: BucketMap,
}

fn transport(e: reqwest::Error) -> BackendError {
    if e.is_timeout() {
        return BackendError::Timeout;
    }
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    BackendError::Transport(msg)
}

impl S3Backend {
    pub fn new(
        cfg: &S3BackendConfig,
        credential: BackendCredential,
        upstream: Arc<Upstream>,
        ca_file: Option<&str>,
    ) -> Result<S3Backend, String> {
        Ok(S3Backend {
            clients: upstream.http_clients(ca_file)?,
            upstream,
            region: cfg.region.clone(),
            access_key_id: credential.access_key_id,
            secret_access_key: credential.secret_access_key,
            buckets: BucketMap {
                prefix: cfg.bucket_prefix.clone(),
            },
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Send one signed request; the answer's body is left to the caller.
    /// The endpoint is the pool's pick (`hash_on: key` hashes
    /// `req.affinity`); a connection that cannot be made is retried on
    /// another endpoint when the body can be sent again (none, in memory,
    /// or a pipe nothing has read yet).
    pub async fn send(&self, mut req: BackendRequest) -> Result<reqwest::Response, BackendError> {
        let affinity = req.affinity.take();
        let aff = Affinity {
            key: affinity.as_deref(),
            ..Affinity::default()
        };
        let mut tried = Vec::new();
        let body = req.body.take();
        let pipe = req.pipe.take();
        loop {
            let mut attempt = self.upstream.pick(&aff, &tried).map_err(|e| match e {
                PickError::Full => BackendError::Full(self.upstream.retry_after()),
                PickError::NoEndpoint => BackendError::NoEndpoint,
            })?;
            let this_try = match &pipe {
                Some(p) => Some(p.body()),
                // A second reference to the same bytes, not a copy.
                None => body.clone().map(reqwest::Body::from),
            };
            let builder = self.signed(&req, attempt.endpoint(), this_try)?;
            attempt.sending();
            match builder.send().await {
                Ok(resp) => {
                    attempt.answered(resp.status().as_u16());
                    return Ok(resp);
                }
                Err(e) => {
                    let why = if e.is_timeout() {
                        Failure::Timeout
                    } else if e.is_connect() {
                        Failure::Connect
                    } else {
                        Failure::Broken
                    };
                    attempt.failed(why);
                    tried.push(attempt.index());
                    let resendable = pipe.as_ref().is_none_or(|p| !p.started());
                    let retry = why == Failure::Connect
                        && self.upstream.config.retry.retries > 0
                        && resendable
                        && self.upstream.may_retry(&tried, why);
                    if !retry {
                        return Err(transport(e));
                    }
                }
            }
        }
    }

    /// The request for one endpoint, signed.
    fn signed(
        &self,
        req: &BackendRequest,
        ep: &Endpoint,
        body: Option<reqwest::Body>,
    ) -> Result<reqwest::RequestBuilder, BackendError> {
        let client = self.clients.get(&ep.addr).ok_or(BackendError::NoEndpoint)?;
        let mut path = String::from("/");
        if let Some(b) = &req.bucket {
            path.push_str(b);
            if let Some(k) = &req.key {
                path.push('/');
                path.push_str(k);
            }
        }
        let mut signed: Vec<(String, String)> = vec![("host".into(), ep.host_header.clone())];
        let mut unsigned: Vec<(String, String)> = Vec::new();
        for (name, value) in &req.headers {
            if name.starts_with("x-amz-") || name == "content-md5" {
                signed.push((name.clone(), value.clone()));
            } else {
                unsigned.push((name.clone(), value.clone()));
            }
        }
        let authorization = sigv4::sign_request(
            req.method.as_str(),
            path.as_bytes(),
            &req.query,
            &mut signed,
            UNSIGNED_PAYLOAD,
            &SigningCredential {
                access_key_id: &self.access_key_id,
                secret_access_key: &self.secret_access_key,
                region: &self.region,
            },
            now_unix(),
        );
        let mut url = self.upstream.base_url(ep);
        url.push_str(&sigv4::uri_encode(path.as_bytes(), true));
        if !req.query.is_empty() {
            url.push('?');
            let q: Vec<String> = req
                .query
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() {
                        sigv4::uri_encode(k.as_bytes(), false)
                    } else {
                        format!(
                            "{}={}",
                            sigv4::uri_encode(k.as_bytes(), false),
                            sigv4::uri_encode(v.as_bytes(), false)
                        )
                    }
                })
                .collect();
            url.push_str(&q.join("&"));
        }
        let mut builder = client.request(req.method.clone(), url);
        for (name, value) in signed.iter().chain(unsigned.iter()) {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder = builder.header("authorization", authorization);
        if let Some(body) = body {
            builder = builder.body(body);
        }
        Ok(builder)
    }

    /// Send, and turn a non-2xx answer into [`BackendError::Status`].
    pub async fn call(&self, req: BackendRequest) -> Result<reqwest::Response, BackendError> {
        let resp = self.send(req).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap_or_default();
        let code = xml::texts_at(&body, &["Error", "Code"])
            .and_then(|mut v| v.pop())
            .unwrap_or_default();
        Err(BackendError::Status(status, code))
    }

    /// Create a bucket; one that exists already is fine.
    pub async fn ensure_bucket(&self, bucket: &str) -> Result<(), BackendError> {
        match self
            .call(BackendRequest::new(
                http::Method::PUT,
                Some(bucket.to_string()),
                None,
            ))
            .await
        {
            Ok(_) => Ok(()),
            Err(BackendError::Status(409, c))
                if c == "BucketAlreadyOwnedByYou" || c == "BucketAlreadyExists" =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The size of an object, `None` when it does not exist.
    pub async fn object_size(&self, bucket: &str, key: &str) -> Result<Option<u64>, BackendError> {
        let resp = self
            .send(BackendRequest::new(
                http::Method::HEAD,
                Some(bucket.to_string()),
                Some(key.to_string()),
            ))
            .await?;
        match resp.status().as_u16() {
            404 => Ok(None),
            s if (200..300).contains(&s) => Ok(resp
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok()?.parse().ok())),
            s => Err(BackendError::Status(s, String::new())),
        }
    }

    /// The names (as the tenant sees them) of `key`'s buckets.
    pub async fn tenant_buckets(
        &self,
        key: &kikaku_filters::ApiKey,
    ) -> Result<Vec<String>, BackendError> {
        let tenant = key.tenant_id();
        Ok(self
            .list_buckets()
            .await?
            .into_iter()
            .filter_map(|(name, _)| self.buckets.to_tenant(&tenant, &name).map(str::to_string))
            .collect())
    }

    /// Every bucket of the backend with its creation date.
    pub async fn list_buckets(&self) -> Result<Vec<(String, String)>, BackendError> {
        let body = self
            .call(BackendRequest::new(http::Method::GET, None, None))
            .await?
            .bytes()
            .await
            .map_err(transport)?;
        let groups = xml::groups_at(
            &body,
            &["ListAllMyBucketsResult", "Buckets", "Bucket"],
            &["Name", "CreationDate"],
        )
        .ok_or_else(|| BackendError::BadAnswer("ListBuckets is not XML".into()))?;
        Ok(groups
            .into_iter()
            .filter_map(|mut g| {
                let created = g.pop()?.1.unwrap_or_default();
                Some((g.pop()?.1?, created))
            })
            .collect())
    }

    /// One page of ListObjectsV2.
    pub async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, BackendError> {
        let mut req = BackendRequest::new(http::Method::GET, Some(bucket.to_string()), None);
        req.query = vec![
            ("list-type".into(), "2".into()),
            ("max-keys".into(), max_keys.to_string()),
        ];
        if !prefix.is_empty() {
            req.query.push(("prefix".into(), prefix.to_string()));
        }
        if let Some(t) = token {
            req.query.push(("continuation-token".into(), t.to_string()));
        }
        let body = self.call(req).await?.bytes().await.map_err(transport)?;
        let bad = || BackendError::BadAnswer("ListObjectsV2 is not XML".into());
        let groups = xml::groups_at(
            &body,
            &["ListBucketResult", "Contents"],
            &["Key", "Size", "LastModified", "ETag"],
        )
        .ok_or_else(bad)?;
        let objects = groups
            .into_iter()
            .filter_map(|g| {
                let mut it = g.into_iter().map(|(_, v)| v);
                Some(ListedObject {
                    key: it.next()??,
                    size: it.next()??.parse().ok()?,
                    last_modified: it.next()?.unwrap_or_default(),
                    etag: it.next()?.unwrap_or_default(),
                })
            })
            .collect();
        let truncated = xml::texts_at(&body, &["ListBucketResult", "IsTruncated"])
            .ok_or_else(bad)?
            .first()
            .is_some_and(|t| t == "true");
        let next_token = if truncated {
            xml::texts_at(&body, &["ListBucketResult", "NextContinuationToken"])
                .ok_or_else(bad)?
                .pop()
        } else {
            None
        };
        Ok(ListPage {
            objects,
            next_token,
        })
    }

    /// Every part of an open multipart upload, by number: `(ETag, size)`,
    /// from ListParts (paged). `None` when the backend has no such upload.
    pub async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<std::collections::BTreeMap<u32, (String, u64)>>, BackendError> {
        let mut out = std::collections::BTreeMap::new();
        let mut marker = String::new();
        loop {
            let mut query = vec![("uploadId", upload_id), ("max-parts", "1000")];
            if !marker.is_empty() {
                query.push(("part-number-marker", marker.as_str()));
            }
            let req = BackendRequest::object(http::Method::GET, bucket, key).with_query(&query);
            let resp = self.send(req).await?;
            let status = resp.status().as_u16();
            let body = resp.bytes().await.map_err(transport)?;
            match status {
                200..=299 => {}
                404 => return Ok(None),
                s => {
                    let code = xml::texts_at(&body, &["Error", "Code"])
                        .and_then(|mut v| v.pop())
                        .unwrap_or_default();
                    return Err(BackendError::Status(s, code));
                }
            }
            // AWS names the root ListPartsResult; moto, ListPartsResponse.
            let root = ["ListPartsResult", "ListPartsResponse"]
                .into_iter()
                .find(|r| xml::texts_at(&body, &[r, "UploadId"]).is_some_and(|v| !v.is_empty()))
                .unwrap_or("ListPartsResult");
            let parts = xml::groups_at(&body, &[root, "Part"], &["PartNumber", "ETag", "Size"])
                .ok_or_else(|| BackendError::BadAnswer("ListParts is not XML".into()))?;
            for g in parts {
                if let (Some(n), Some(e), Some(size)) = (&g[0].1, &g[1].1, &g[2].1) {
                    if let (Ok(n), Ok(size)) = (n.trim().parse::<u32>(), size.trim().parse::<u64>())
                    {
                        out.insert(n, (e.clone(), size));
                    }
                }
            }
            let text = |field: &str| {
                xml::texts_at(&body, &[root, field])
                    .and_then(|mut v| v.pop())
                    .unwrap_or_default()
            };
            let next = text("NextPartNumberMarker");
            if text("IsTruncated").trim() != "true" || next.is_empty() || next == marker {
                return Ok(Some(out));
            }
            marker = next;
        }
    }
}
