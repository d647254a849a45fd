//! The S3-compatible endpoint (DESIGN §4): storage keys use the AWS CLI,
//! boto3 and the SDKs against the gateway (path style). `s3_auth` has
//! verified the signature; here each operation is confined to the tenant's
//! buckets, its payload verified as it streams, its bytes counted in the
//! ledger, and it is re-signed to the backend.

mod buckets;
mod multipart;
mod objects;
mod ops;
pub(crate) mod relay;
mod unsupported;

use crate::reply::Exchange;
use std::sync::Arc;

use crate::state::LedgerSlot;
use bytes::Bytes;
use kikaku_filters::{ApiKey, ErrorKind, GatewayError};
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use sigv4::{self, PayloadMode, VerifiedSignature};

use crate::config::names::{check_object_key, check_tenant_bucket};
use crate::storage::backend::BackendRequest;
use crate::storage::payload::PayloadVerifier;
use crate::storage::upload::{payload_error, Budget};
use crate::storage::Storage;
use ops::{classify, Op, Target};
use relay::{access_denied, forward_headers, internal, Relay};

/// S3's largest single PUT.
const MAX_PUT: u64 = 5 << 30;
/// Largest XML request body (DeleteObjects of 1,000 keys, Complete of 10,000 parts).
const MAX_XML_BODY: u64 = 4 << 20;

pub struct S3Endpoint {
    storage: Arc<Storage>,
}

fn s3_error(
    kind: ErrorKind,
    status: u16,
    code: &'static str,
    msg: impl Into<String>,
) -> GatewayError {
    GatewayError::new(kind, msg).with_s3(status, code)
}

fn invalid_argument(msg: impl Into<String>) -> GatewayError {
    s3_error(ErrorKind::InvalidParameter, 400, "InvalidArgument", msg)
}

fn header<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// `/bucket/key` → raw (still encoded) bucket and key parts.
fn split_path(path: &str) -> (&str, &str) {
    let p = path.strip_prefix('/').unwrap_or(path);
    p.split_once('/').unwrap_or((p, ""))
}

fn decode(part: &str, what: &str) -> Result<String, GatewayError> {
    sigv4::percent_decode(part)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| invalid_argument(format!("the {what} is not valid UTF-8 percent-encoding")))
}

/// The path's target, names decoded and checked before anything is mapped.
fn parse_target(path: &str, creating: bool) -> Result<Target, GatewayError> {
    let (b, k) = split_path(path);
    if b.is_empty() {
        if !k.is_empty() || path.starts_with("//") {
            // `//key`: an object in a bucket with no name, which no one owns.
            return Err(access_denied());
        }
        return Ok(Target::Service);
    }
    let bucket = decode(b, "bucket name")?;
    if let Err(e) = check_tenant_bucket(&bucket) {
        // A name no tenant can own: invalid when creating, otherwise not yours.
        return Err(if creating {
            s3_error(ErrorKind::InvalidParameter, 400, "InvalidBucketName", e)
        } else {
            access_denied()
        });
    }
    if k.is_empty() {
        return Ok(Target::Bucket(bucket));
    }
    let key = decode(k, "object key")?;
    check_object_key(&key).map_err(invalid_argument)?;
    Ok(Target::Object(bucket, key))
}

/// The decoded length of the body, as the client declared it.
fn declared_length(req: &RequestHeader, mode: &PayloadMode) -> Result<u64, GatewayError> {
    let name = if mode.is_streaming() {
        "x-amz-decoded-content-length"
    } else {
        "content-length"
    };
    match header(req, name) {
        Some(v) => v
            .parse()
            .map_err(|_| invalid_argument(format!("{name} is not a number"))),
        None if req.headers.get("transfer-encoding").is_none() && !mode.is_streaming() => Ok(0),
        None => Err(s3_error(
            ErrorKind::BadRequest,
            411,
            "MissingContentLength",
            format!("You must provide the {name} HTTP header."),
        )),
    }
}

fn verifier(req: &RequestHeader, sig: &VerifiedSignature) -> Result<PayloadVerifier, GatewayError> {
    let declared = declared_length(req, &sig.payload)?;
    let signer =
        matches!(sig.payload, PayloadMode::StreamingSigned { .. }).then(|| sig.chunk_signer());
    PayloadVerifier::new(&sig.payload, declared, signer, header(req, "x-amz-trailer"))
        .map_err(|e| invalid_argument(e.0))?
        .with_content_md5(header(req, "content-md5"))
        .map_err(|e| payload_error(e.0))
}

/// Read a small request body whole, verified.
async fn read_verified(
    session: &mut Session,
    sig: &VerifiedSignature,
    max: u64,
) -> Result<Bytes, GatewayError> {
    let mut v = verifier(session.req_header(), sig)?;
    if v.declared() > max {
        return Err(s3_error(
            ErrorKind::PayloadTooLarge,
            400,
            "MaxMessageLengthExceeded",
            format!("The request body is larger than {max} bytes."),
        ));
    }
    let mut out = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                for p in v.push(chunk).map_err(|e| payload_error(e.0))? {
                    out.extend_from_slice(&p);
                }
            }
            Ok(None) => {
                if let Some(p) = v.finish().map_err(|e| payload_error(e.0))? {
                    out.extend_from_slice(&p);
                }
                return Ok(Bytes::from(out));
            }
            Err(e) => {
                return Err(GatewayError::new(
                    ErrorKind::BadRequest,
                    format!("The request body could not be read: {e}"),
                ))
            }
        }
    }
}

/// Query parameters sent on: the client's, minus presigned-URL auth (V4's
/// `X-Amz-*`, V2's `AWSAccessKeyId`, `Signature`, `Expires`).
fn backend_query(query: &[(String, String)]) -> Vec<(String, String)> {
    const V2_AUTH: [&str; 3] = ["AWSAccessKeyId", "Signature", "Expires"];
    query
        .iter()
        .filter(|(k, _)| {
            !k.starts_with("X-Amz-") && !k.starts_with("x-amz-") && !V2_AUTH.contains(&k.as_str())
        })
        .cloned()
        .collect()
}

fn upload_slot(query: &[(String, String)]) -> Result<(String, u32), GatewayError> {
    let get = |n: &str| query.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let upload = get("uploadId").ok_or_else(|| invalid_argument("uploadId is required"))?;
    let part = get("partNumber")
        .and_then(|p| p.parse::<u32>().ok())
        .filter(|p| (1..=10_000).contains(p))
        .ok_or_else(|| invalid_argument("Part number must be an integer between 1 and 10000"))?;
    Ok((upload, part))
}

/// Everything one request needs while it is served.
struct Call<'a> {
    storage: &'a Storage,
    key: Arc<ApiKey>,
    sig: VerifiedSignature,
    req: RequestHeader,
    /// The client's query, minus presigned-URL auth.
    query: Vec<(String, String)>,
    /// The tenant's bucket and its backend name, when the path names one.
    bucket: Option<(String, String)>,
    object: Option<String>,
}

impl Call<'_> {
    fn subject(&self) -> String {
        self.key.subject()
    }

    fn budget<'s>(&'s self, subject: &'s str, slot: LedgerSlot) -> Budget<'s> {
        Budget {
            state: &self.storage.state,
            subject,
            limit: self.key.quota,
            slot,
        }
    }

    /// The tenant's name of the bucket.
    fn bucket(&self) -> Result<&str, GatewayError> {
        self.bucket
            .as_ref()
            .map(|(t, _)| t.as_str())
            .ok_or_else(|| internal("a bucket operation without a bucket"))
    }

    fn backend_bucket(&self) -> Result<&str, GatewayError> {
        self.bucket
            .as_ref()
            .map(|(_, b)| b.as_str())
            .ok_or_else(|| internal("a bucket operation without a bucket"))
    }

    fn object(&self) -> Result<&str, GatewayError> {
        self.object
            .as_deref()
            .ok_or_else(|| internal("an object operation without an object"))
    }

    /// This request, for the backend: same method, mapped bucket, the
    /// object, the client's query and the headers that travel.
    fn to_backend(&self, streaming: bool) -> BackendRequest {
        let mut req = BackendRequest::new(
            self.req.method.clone(),
            self.bucket.as_ref().map(|(_, b)| b.clone()),
            self.object.clone(),
        );
        req.query = self.query.clone();
        req.headers = forward_headers(&self.req, streaming);
        req.for_key(&self.key.key_ref)
    }

    /// How backend answers are relayed: bucket names turned back into the tenant's.
    fn relay(&self, rewrite_success: bool) -> Relay<'_> {
        Relay {
            bucket: self.bucket.as_ref().map(|(t, b)| (b.as_str(), t.as_str())),
            rewrite_success,
            owner: None,
            marker: None,
            set: Vec::new(),
        }
    }

    /// The tenant's open multipart uploads, from the ledger.
    async fn open_uploads(&self) -> Result<Vec<crate::state::OpenUpload>, GatewayError> {
        self.storage
            .state
            .storage_uploads(&self.subject())
            .await
            .map_err(|e| GatewayError::unavailable("The storage ledger", e))
    }

    /// The `uploadId` of the query.
    fn upload_id(&self) -> String {
        self.query
            .iter()
            .find(|(k, _)| k == "uploadId")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

impl S3Endpoint {
    pub fn new(storage: Arc<Storage>) -> S3Endpoint {
        S3Endpoint { storage }
    }

    pub async fn handle(&self, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
        let key = ex.ctx.require_key("s3_endpoint")?;
        let sig = ex
            .ctx
            .s3
            .clone()
            .ok_or_else(|| internal("s3_endpoint ran without s3_auth before it"))?;
        let req = ex.session.req_header().clone();
        unsupported::check(&req)?;
        let query = sigv4::parse_query(req.uri.query().unwrap_or(""))
            .ok_or_else(|| invalid_argument("the query string is not valid percent-encoding"))?;
        let creating = req.method == http::Method::PUT && split_path(req.uri.path()).1.is_empty();
        let target = parse_target(req.uri.path(), creating)?;
        let copy_source = req.headers.contains_key("x-amz-copy-source");
        let op = classify(&req.method, &target, &query, copy_source).map_err(|what| {
            s3_error(
                ErrorKind::NotImplemented,
                501,
                "NotImplemented",
                format!("{what} is not supported by this gateway"),
            )
        })?;
        let (bucket, object) = match target {
            Target::Service => (None, None),
            Target::Bucket(b) => (Some(b), None),
            Target::Object(b, k) => (Some(b), Some(k)),
        };
        if bucket.as_deref() == Some(key.default_bucket()) || op == Op::ListBuckets {
            self.storage.ensure_default_bucket(&key).await?;
        }
        let bucket = bucket.map(|b| {
            let backend = self.storage.backend_bucket(&key, &b);
            (b, backend)
        });
        // The tenant owns exactly the buckets that exist under its prefix.
        if let (Some((_, backend)), false) = (&bucket, op == Op::CreateBucket) {
            if !self.storage.bucket_exists(backend).await? {
                return Err(access_denied());
            }
        }
        let call = Call {
            storage: &self.storage,
            key,
            sig,
            req,
            query: backend_query(&query),
            bucket,
            object,
        };
        match op {
            Op::ListBuckets => buckets::list(&call, ex).await,
            Op::GetBucketLocation => buckets::location(&call, ex).await,
            Op::CreateBucket => buckets::create(&call, ex).await,
            Op::DeleteBucket => buckets::delete(&call, ex).await,
            Op::ListMultipartUploads => multipart::list(&call, ex).await,
            Op::CreateMultipartUpload => multipart::create(&call, ex).await,
            Op::CompleteMultipartUpload => multipart::complete(&call, ex).await,
            Op::PutObject | Op::UploadPart => objects::put(&call, op, ex).await,
            Op::CopyObject | Op::UploadPartCopy => objects::copy(&call, op, ex).await,
            Op::DeleteObjects => objects::delete_many(&call, ex).await,
            _ => objects::forward(&call, op, ex).await,
        }
    }
}
