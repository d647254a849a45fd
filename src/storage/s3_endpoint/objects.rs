//! Object operations: PutObject and UploadPart (streamed under the quota),
//! CopyObject and UploadPartCopy (inside the tenant's buckets),
//! DeleteObjects, and everything without a request body (GET, HEAD,
//! DELETE, listings, ListParts, AbortMultipartUpload) forwarded as is.

use crate::reply::Exchange;
use crate::state::LedgerSlot;
use kikaku_filters::{ErrorKind, GatewayError};
use sigv4;

use super::ops::Op;
use super::relay::{access_denied, relay, respond_xml};
use super::{
    decode, header, invalid_argument, read_verified, s3_error, split_path, upload_slot, verifier,
    Call, MAX_PUT, MAX_XML_BODY,
};
use crate::config::names::{check_object_key, check_tenant_bucket};
use crate::s3_xml as xml;
use crate::storage::backend::BackendError;
use crate::storage::upload::{stream_upload, UploadError};
use crate::storage::{backend_unavailable, Storage};

/// Where a write lands in the ledger: the object, or a part of an upload.
fn slot(call: &Call<'_>, op: Op) -> Result<LedgerSlot, GatewayError> {
    Ok(if matches!(op, Op::UploadPart | Op::UploadPartCopy) {
        let (upload_id, part) = upload_slot(&call.query)?;
        LedgerSlot::Part { upload_id, part }
    } else {
        LedgerSlot::Object(Storage::ledger_name(call.bucket()?, call.object()?))
    })
}

/// PutObject / UploadPart: the body streams through its verifier to the
/// backend, its declared length reserved first and committed on success.
pub(super) async fn put(
    call: &Call<'_>,
    op: Op,
    ex: &mut Exchange<'_>,
) -> Result<(), GatewayError> {
    let slot = slot(call, op)?;
    let v = verifier(&call.req, &call.sig)?;
    if v.declared() > MAX_PUT {
        return Err(s3_error(
            ErrorKind::PayloadTooLarge,
            400,
            "EntityTooLarge",
            "Your proposed upload exceeds the maximum allowed object size.",
        ));
    }
    let req = call.to_backend(call.sig.payload.is_streaming());
    let subject = call.subject();
    let budget = call.budget(&subject, slot);
    match stream_upload(&call.storage.backend, budget, req, ex.session, v).await {
        Ok(resp) => relay(ex, resp, call.relay(false)).await,
        Err(UploadError::Refused(e)) => Err(e),
        Err(UploadError::Backend(e)) => Err(backend_unavailable(e)),
    }
}

/// `x-amz-copy-source`: `[/]bucket/key`, URL-encoded, inside the tenant.
fn copy_source(call: &Call<'_>) -> Result<(String, String), GatewayError> {
    let raw = header(&call.req, "x-amz-copy-source").unwrap_or_default();
    if raw.contains('?') {
        return Err(s3_error(
            ErrorKind::NotImplemented,
            501,
            "NotImplemented",
            "Copying a specific version is not supported",
        ));
    }
    let decoded = decode(raw, "copy source")?;
    let (b, k) = split_path(&decoded);
    check_tenant_bucket(b).map_err(|_| access_denied())?;
    check_object_key(k).map_err(invalid_argument)?;
    Ok((b.to_string(), k.to_string()))
}

/// `bytes=first-last` → its length.
fn parse_range_len(range: &str) -> Option<u64> {
    let (a, b) = range.strip_prefix("bytes=")?.split_once('-')?;
    let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    (b >= a).then(|| b - a + 1)
}

/// CopyObject / UploadPartCopy: the source must be the tenant's too; its
/// size (or the range's) is reserved before the backend copies.
pub(super) async fn copy(
    call: &Call<'_>,
    op: Op,
    ex: &mut Exchange<'_>,
) -> Result<(), GatewayError> {
    let (src_bucket, src_key) = copy_source(call)?;
    let onto_itself = op == Op::CopyObject
        && src_bucket == call.bucket()?
        && src_key == call.object()?
        && !header(&call.req, "x-amz-metadata-directive")
            .is_some_and(|d| d.eq_ignore_ascii_case("REPLACE"))
        && header(&call.req, "x-amz-storage-class").is_none()
        && header(&call.req, "x-amz-website-redirect-location").is_none();
    if onto_itself {
        return Err(s3_error(
            ErrorKind::InvalidParameter,
            400,
            "InvalidRequest",
            "This copy request is illegal because it is trying to copy an object to itself \
             without changing the object's metadata, storage class, website redirect location \
             or encryption attributes. Send x-amz-metadata-directive: REPLACE to change its metadata.",
        ));
    }
    let backend = &call.storage.backend;
    let src_backend = call.storage.backend_bucket(&call.key, &src_bucket);
    let size = match header(&call.req, "x-amz-copy-source-range") {
        Some(range) if op == Op::UploadPartCopy => parse_range_len(range)
            .ok_or_else(|| invalid_argument("x-amz-copy-source-range must be bytes=first-last"))?,
        _ => match backend
            .object_size(&src_backend, &src_key)
            .await
            .map_err(backend_unavailable)?
        {
            Some(size) => size,
            None if call.storage.bucket_exists(&src_backend).await? => {
                return Err(s3_error(
                    ErrorKind::NotFound,
                    404,
                    "NoSuchKey",
                    "The specified key does not exist.",
                ))
            }
            None => return Err(access_denied()),
        },
    };
    let subject = call.subject();
    let budget = call.budget(&subject, slot(call, op)?);
    let reservation = budget.reserve(size).await?;
    let mut req = call.to_backend(false);
    req.headers.push((
        "x-amz-copy-source".into(),
        format!(
            "/{src_backend}/{}",
            sigv4::uri_encode(src_key.as_bytes(), true)
        ),
    ));
    let (status, body) = match backend.send(req).await {
        Ok(r) => {
            let status = r.status().as_u16();
            match r.bytes().await {
                Ok(b) => (status, b),
                Err(e) => {
                    budget.settle(reservation, None).await;
                    return Err(backend_unavailable(BackendError::Transport(e.to_string())));
                }
            }
        }
        Err(e) => {
            budget.settle(reservation, None).await;
            return Err(backend_unavailable(e));
        }
    };
    // S3 may answer a copy 200 with an <Error> document.
    let ok = (200..300).contains(&status)
        && xml::texts_at(&body, &["Error", "Code"]).is_none_or(|c| c.is_empty());
    // A copy is charged what it wrote: the source may have been overwritten
    // between the size read above and the copy.
    let landed = match (ok, op) {
        (false, _) => None,
        (true, Op::CopyObject) => match backend
            .object_size(call.backend_bucket()?, call.object()?)
            .await
        {
            Ok(Some(written)) => Some(written),
            other => {
                log::warn!("size of a copy unknown ({other:?}); charged the source's, reconcile will fix it");
                Some(size)
            }
        },
        (true, _) => Some(size),
    };
    budget.settle(reservation, landed).await;
    let text = xml::rewrite_bucket_names(
        &String::from_utf8_lossy(&body),
        call.backend_bucket()?,
        call.bucket()?,
    );
    respond_xml(ex, status, text, &[]).await
}

/// DeleteObjects: every key is checked before the list goes on; the keys
/// the backend reports deleted leave the ledger.
pub(super) async fn delete_many(
    call: &Call<'_>,
    ex: &mut Exchange<'_>,
) -> Result<(), GatewayError> {
    let bucket = call.bucket()?;
    let body = read_verified(ex.session, &call.sig, MAX_XML_BODY).await?;
    let keys = xml::texts_at(&body, &["Delete", "Object", "Key"]).ok_or_else(|| {
        s3_error(
            ErrorKind::BadRequest,
            400,
            "MalformedXML",
            "The XML you provided was not well-formed.",
        )
    })?;
    if keys.len() > 1000 {
        return Err(s3_error(
            ErrorKind::BadRequest,
            400,
            "MalformedXML",
            "DeleteObjects takes at most 1000 keys per request; send the rest in another.",
        ));
    }
    for k in &keys {
        check_object_key(k).map_err(invalid_argument)?;
    }
    let mut req = call.to_backend(false);
    req.headers
        .push(("content-length".into(), body.len().to_string()));
    req.body = Some(body);
    let (status, bytes) = call.storage.send_read(req).await?;
    if (200..300).contains(&status) {
        let subject = call.subject();
        for k in xml::texts_at(&bytes, &["DeleteResult", "Deleted", "Key"]).unwrap_or_default() {
            let name = Storage::ledger_name(bucket, &k);
            if let Err(e) = call.storage.state.storage_remove(&subject, &name).await {
                log::warn!("ledger remove failed (reconcile will fix it): {e}");
            }
        }
    }
    let text = xml::rewrite_bucket_names(
        &String::from_utf8_lossy(&bytes),
        call.backend_bucket()?,
        bucket,
    );
    respond_xml(ex, status, text, &[]).await
}

/// Operations without a request body: forward, keep the ledger in step with
/// deletes and aborts, relay (listings rewritten to the tenant's names).
pub(super) async fn forward(
    call: &Call<'_>,
    op: Op,
    ex: &mut Exchange<'_>,
) -> Result<(), GatewayError> {
    if op == Op::AbortMultipartUpload {
        // An upload the ledger does not hold open is S3's NoSuchUpload,
        // whatever the backend would answer.
        super::multipart::check_open(call).await?;
    }
    let resp = call.storage.send(call.to_backend(false)).await?;
    if resp.status().is_success() {
        let subject = call.subject();
        let ledger = match op {
            Op::DeleteObject => {
                let name = Storage::ledger_name(call.bucket()?, call.object()?);
                call.storage
                    .state
                    .storage_remove(&subject, &name)
                    .await
                    .map(|_| ())
            }
            Op::AbortMultipartUpload => call
                .storage
                .state
                .storage_abort(&subject, &call.upload_id())
                .await
                .map(|_| ()),
            _ => Ok(()),
        };
        if let Err(e) = ledger {
            log::warn!(
                "ledger update after {} failed (reconcile will fix it): {e}",
                op.name()
            );
        }
    }
    let rewrite = matches!(op, Op::ListObjects | Op::ListObjectsV2 | Op::ListParts);
    let mut how = call.relay(rewrite);
    // S3 names each object's owner in ListObjects, and in ListObjectsV2
    // when asked (`fetch-owner=true`): the tenant, which no backend knows.
    let fetch_owner = call
        .query
        .iter()
        .any(|(k, v)| k == "fetch-owner" && v.eq_ignore_ascii_case("true"));
    if op == Op::ListObjects || (op == Op::ListObjectsV2 && fetch_owner) {
        how.owner = Some(xml::owner(&call.key.tenant_id(), &call.key.owner));
    }
    if op == Op::ListObjects {
        let marker = call.query.iter().find(|(k, _)| k == "marker");
        how.marker = Some(marker.map(|(_, v)| v.clone()).unwrap_or_default());
    }
    relay(ex, resp, how).await
}

#[cfg(test)]
mod tests {
    use super::parse_range_len;

    #[test]
    fn copy_ranges() {
        assert_eq!(parse_range_len("bytes=0-99"), Some(100));
        assert_eq!(parse_range_len("bytes=5-4"), None);
        assert_eq!(parse_range_len("0-9"), None);
    }
}
