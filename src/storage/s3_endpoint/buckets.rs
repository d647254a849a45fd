//! Bucket operations: ListBuckets (the tenant's only), GetBucketLocation,
//! CreateBucket, DeleteBucket (refused while anything is in it).

use crate::reply::Exchange;
use kikaku_filters::{ErrorKind, GatewayError};

use super::relay::{access_denied, relay, respond_xml};
use super::{read_verified, s3_error, Call, MAX_XML_BODY};
use crate::s3_xml as xml;
use crate::storage::backend::{BackendError, BackendRequest};
use crate::storage::backend_unavailable;

/// ListBuckets: the backend's buckets under the tenant's prefix, renamed.
pub(super) async fn list(call: &Call<'_>, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
    let tenant = call.key.tenant_id();
    let all = call
        .storage
        .backend
        .list_buckets()
        .await
        .map_err(backend_unavailable)?;
    let map = &call.storage.backend.buckets;
    let mut own: Vec<(String, String)> = all
        .into_iter()
        .filter_map(|(name, created)| Some((map.to_tenant(&tenant, &name)?.to_string(), created)))
        .collect();
    own.sort();
    // Paged as S3 pages it: `max-buckets` (1-10000) and the name to resume
    // after as the continuation token.
    let get = |n: &str| {
        call.query
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let max = match get("max-buckets") {
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|m| (1..=10_000).contains(m))
            .ok_or_else(|| {
                s3_error(
                    ErrorKind::InvalidParameter,
                    400,
                    "InvalidArgument",
                    "max-buckets must be an integer from 1 to 10000.",
                )
            })?,
        None => 10_000,
    };
    if let Some(after) = get("continuation-token").filter(|t| !t.is_empty()) {
        own.retain(|(name, _)| name.as_str() > after);
    }
    let token = (own.len() > max).then(|| own[max - 1].0.clone());
    own.truncate(max);
    let body = xml::list_buckets(&tenant, &call.key.owner, &own, token.as_deref());
    respond_xml(ex, 200, body, &[]).await
}

/// GetBucketLocation, answered here: the region clients sign for
/// (`storage.region`) is the only one.
pub(super) async fn location(call: &Call<'_>, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
    call.bucket()?;
    let region = call.storage.region.as_str();
    let loc = if region == "us-east-1" { "" } else { region };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint xmlns=\"{}\">{}</LocationConstraint>",
        xml::NS,
        xml::escape(loc)
    );
    respond_xml(ex, 200, body, &[]).await
}

pub(super) async fn create(call: &Call<'_>, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
    // The body (CreateBucketConfiguration) names a region; the backend's
    // region is the only one there is.
    let _ = read_verified(ex.session, &call.sig, MAX_XML_BODY).await?;
    let backend_bucket = call.backend_bucket()?;
    // Bucket names are per tenant: one that exists is this tenant's own.
    if call.storage.bucket_exists(backend_bucket).await? {
        return Err(s3_error(
            ErrorKind::Conflict,
            409,
            "BucketAlreadyOwnedByYou",
            "Your previous request to create the named bucket succeeded and you already own it.",
        ));
    }
    let resp = call
        .storage
        .send(BackendRequest::new(
            http::Method::PUT,
            Some(backend_bucket.to_string()),
            None,
        ))
        .await?;
    if resp.status().is_success() {
        call.storage.bucket_changed(backend_bucket, true);
        let loc = format!("/{}", call.bucket()?);
        return respond_xml(ex, 200, String::new(), &[("location", loc)]).await;
    }
    relay(ex, resp, call.relay(false)).await
}

/// S3 refuses to delete a bucket with objects or open uploads; not every
/// backend does (s3s-fs deletes the lot), and the ledger counts on it.
pub(super) async fn delete(call: &Call<'_>, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
    let (bucket, backend_bucket) = (call.bucket()?, call.backend_bucket()?);
    let page = call
        .storage
        .backend
        .list_objects(backend_bucket, "", None, 1)
        .await;
    let open = call
        .open_uploads()
        .await?
        .iter()
        .any(|u| u.bucket == bucket);
    match page {
        Ok(p) if p.objects.is_empty() && !open => {}
        Ok(_) => {
            return Err(s3_error(
                ErrorKind::BadRequest,
                409,
                "BucketNotEmpty",
                "The bucket you tried to delete is not empty",
            ))
        }
        Err(BackendError::Status(404, _)) => return Err(access_denied()),
        Err(e) => return Err(backend_unavailable(e)),
    }
    let resp = call.storage.send(call.to_backend(false)).await?;
    if resp.status().is_success() {
        call.storage.bucket_changed(backend_bucket, false);
    }
    relay(ex, resp, call.relay(false)).await
}
