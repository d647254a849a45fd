//! Multipart uploads: create (remembered in the ledger so they can be
//! listed), complete (parts leave the ledger, the object's real size takes
//! their place), list. Parts themselves go through `objects::put`; abort
//! through `objects::forward`.

use kikaku_filters::{FilterChain, GatewayError, OpenUpload, RequestCtx};
use pingora::proxy::Session;

use super::relay::{internal, respond_xml};
use super::{read_verified, Call, MAX_XML_BODY};
use crate::s3::{xml, Storage};

/// CreateMultipartUpload: forward, then remember the upload.
pub(super) async fn create(
    call: &Call<'_>,
    session: &mut Session,
    chain: &FilterChain,
    ctx: &RequestCtx,
) -> Result<(), GatewayError> {
    let (status, bytes) = call.storage.send_read(call.to_backend(false)).await?;
    if (200..300).contains(&status) {
        let id = xml::texts_at(&bytes, &["InitiateMultipartUploadResult", "UploadId"])
            .and_then(|mut v| v.pop())
            .ok_or_else(|| internal("the storage backend sent no UploadId"))?;
        let up = OpenUpload {
            upload_id: id,
            bucket: call.bucket()?.to_string(),
            key: call.object()?.to_string(),
            initiated_ms: chrono::Utc::now().timestamp_millis(),
        };
        call.storage
            .state
            .storage_upload_begin(&call.subject(), up)
            .await
            .map_err(|e| GatewayError::unavailable("The storage ledger", e))?;
    }
    let text = xml::rewrite_bucket_names(
        &String::from_utf8_lossy(&bytes),
        call.backend_bucket()?,
        call.bucket()?,
    );
    respond_xml(session, chain, ctx, status, text, &[]).await
}

/// CompleteMultipartUpload: forward the part list; on success the parts
/// leave the ledger and the object's real size takes their place.
pub(super) async fn complete(
    call: &Call<'_>,
    session: &mut Session,
    chain: &FilterChain,
    ctx: &RequestCtx,
) -> Result<(), GatewayError> {
    let (bucket, backend_bucket, object) = (call.bucket()?, call.backend_bucket()?, call.object()?);
    let body = read_verified(session, &call.sig, MAX_XML_BODY).await?;
    let mut req = call.to_backend(false);
    req.headers
        .push(("content-length".into(), body.len().to_string()));
    req.body = Some(reqwest::Body::from(body));
    let (status, bytes) = call.storage.send_read(req).await?;
    // S3 may answer 200 with an <Error> document.
    let failed = !(200..300).contains(&status)
        || xml::texts_at(&bytes, &["Error", "Code"]).is_some_and(|c| !c.is_empty());
    if !failed {
        match call
            .storage
            .backend
            .object_size(backend_bucket, object)
            .await
        {
            Ok(Some(size)) => {
                let name = Storage::ledger_name(bucket, object);
                if let Err(e) = call
                    .storage
                    .state
                    .storage_complete(&call.subject(), &call.upload_id(), &name, size)
                    .await
                {
                    log::warn!("ledger complete failed (reconcile will fix it): {e}");
                }
            }
            other => {
                log::warn!("size of a completed upload unknown ({other:?}); reconcile will fix it")
            }
        }
    }
    let text = xml::rewrite_bucket_names(&String::from_utf8_lossy(&bytes), backend_bucket, bucket);
    respond_xml(session, chain, ctx, status, text, &[]).await
}

/// ListMultipartUploads, from the ledger: the same answer whatever the
/// backend (some do not implement it).
pub(super) async fn list(
    call: &Call<'_>,
    session: &mut Session,
    chain: &FilterChain,
    ctx: &RequestCtx,
) -> Result<(), GatewayError> {
    let bucket = call.bucket()?;
    let get = |n: &str| {
        call.query
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let prefix = get("prefix");
    let max: usize = get("max-uploads").parse().unwrap_or(1000).min(1000);
    let mut ups: Vec<OpenUpload> = call
        .storage
        .state
        .storage_uploads(&call.subject())
        .await
        .map_err(|e| GatewayError::unavailable("The storage ledger", e))?
        .into_iter()
        .filter(|u| u.bucket == bucket && u.key.starts_with(prefix))
        .collect();
    ups.sort_by(|a, b| (&a.key, a.initiated_ms).cmp(&(&b.key, b.initiated_ms)));
    let truncated = ups.len() > max;
    ups.truncate(max);
    let owner = xml::escape(&call.key.tenant_id());
    let mut body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListMultipartUploadsResult xmlns=\"{}\"><Bucket>{}</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><Prefix>{}</Prefix><MaxUploads>{max}</MaxUploads><IsTruncated>{truncated}</IsTruncated>",
        xml::NS,
        xml::escape(bucket),
        xml::escape(prefix),
    );
    for u in &ups {
        let initiated = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(u.initiated_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        body.push_str(&format!(
            "<Upload><Key>{}</Key><UploadId>{}</UploadId><Initiator><ID>{owner}</ID></Initiator><Owner><ID>{owner}</ID></Owner><StorageClass>STANDARD</StorageClass><Initiated>{initiated}</Initiated></Upload>",
            xml::escape(&u.key),
            xml::escape(&u.upload_id),
        ));
    }
    body.push_str("</ListMultipartUploadsResult>");
    respond_xml(session, chain, ctx, 200, body, &[]).await
}
