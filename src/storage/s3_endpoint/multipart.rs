//! Multipart uploads: create (remembered in the ledger so they can be
//! listed), complete (parts leave the ledger, the object's real size takes
//! their place), list. Parts themselves go through `objects::put`; abort
//! through `objects::forward`.
//!
//! CompleteMultipartUpload is checked here before the backend sees it, as
//! S3 checks it: the upload must be open, the parts listed in ascending
//! order, each uploaded with the ETag given, every part but the last at
//! least 5 MiB. A refused completion changes nothing, so the upload stays
//! listable and abortable whatever the backend would have done with it.

use crate::reply::Exchange;
use std::collections::BTreeMap;

use crate::state::OpenUpload;
use kikaku_filters::{ErrorKind, GatewayError};

use super::relay::{internal, respond_xml};
use super::{read_verified, s3_error, Call, MAX_XML_BODY};
use crate::s3_xml as xml;
use crate::storage::Storage;

/// S3's smallest part but the last.
const MIN_PART: u64 = 5 << 20;

/// A part as CompleteMultipartUpload names it: number and ETag.
type Named = (u32, String);

fn malformed(msg: &str) -> GatewayError {
    s3_error(ErrorKind::BadRequest, 400, "MalformedXML", msg)
}

fn unquoted(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}

fn named_parts(body: &[u8]) -> Result<Vec<Named>, GatewayError> {
    let groups = xml::groups_at(
        body,
        &["CompleteMultipartUpload", "Part"],
        &["PartNumber", "ETag"],
    )
    .ok_or_else(|| malformed("The XML you provided was not well-formed."))?;
    if groups.is_empty() {
        return Err(malformed(
            "CompleteMultipartUpload must name at least one Part.",
        ));
    }
    groups
        .into_iter()
        .map(|g| match (&g[0].1, &g[1].1) {
            (Some(n), Some(e)) => n
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .map(|n| (n, e.clone()))
                .ok_or_else(|| malformed("A PartNumber must be an integer from 1 to 10000.")),
            _ => Err(malformed("Every Part needs a PartNumber and an ETag.")),
        })
        .collect()
}

/// Whether the named parts make an object, given what was uploaded
/// (part number → ETag and size).
fn check_parts(
    named: &[Named],
    uploaded: &BTreeMap<u32, (String, u64)>,
) -> Result<(), GatewayError> {
    if named.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(s3_error(
            ErrorKind::InvalidParameter,
            400,
            "InvalidPartOrder",
            "The list of parts was not in ascending order. List the parts in order by part number.",
        ));
    }
    for (i, (number, etag)) in named.iter().enumerate() {
        let Some((have, size)) = uploaded
            .get(number)
            .filter(|(have, _)| unquoted(have) == unquoted(etag))
        else {
            return Err(s3_error(
                ErrorKind::InvalidParameter,
                400,
                "InvalidPart",
                format!(
                    "Part {number} could not be found, or its ETag is not {etag}: name only \
                     uploaded parts, with the ETag each upload returned."
                ),
            ));
        };
        let _ = have;
        if i + 1 < named.len() && *size < MIN_PART {
            return Err(s3_error(
                ErrorKind::InvalidParameter,
                400,
                "EntityTooSmall",
                format!(
                    "Your proposed upload is smaller than the minimum allowed object size: part \
                     {number} has {size} bytes; every part but the last needs at least 5 MiB."
                ),
            ));
        }
    }
    Ok(())
}

fn no_such_upload() -> GatewayError {
    s3_error(
        ErrorKind::NotFound,
        404,
        "NoSuchUpload",
        "The specified upload does not exist. The upload ID may be invalid, or the upload may \
         have been aborted or completed.",
    )
}

/// The upload is one of the tenant's open uploads, for this bucket and key.
pub(super) async fn check_open(call: &Call<'_>) -> Result<(), GatewayError> {
    let (bucket, object, id) = (call.bucket()?, call.object()?, call.upload_id());
    let open = call
        .open_uploads()
        .await?
        .iter()
        .any(|u| u.upload_id == id && u.bucket == bucket && u.key == object);
    if open {
        Ok(())
    } else {
        Err(no_such_upload())
    }
}

/// The parts the backend holds for the upload.
async fn uploaded_parts(call: &Call<'_>) -> Result<BTreeMap<u32, (String, u64)>, GatewayError> {
    let (backend_bucket, object) = (call.backend_bucket()?, call.object()?);
    call.storage
        .backend
        .list_parts(backend_bucket, object, &call.upload_id())
        .await
        .map_err(crate::storage::backend_unavailable)?
        .ok_or_else(no_such_upload)
}

/// CreateMultipartUpload: forward, then remember the upload.
pub(super) async fn create(call: &Call<'_>, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
    let resp = call.storage.send(call.to_backend(false)).await?;
    let status = resp.status().as_u16();
    // What the upload will check, as the backend says it.
    let echoed: Vec<(&str, String)> = CHECKSUM_ECHO
        .iter()
        .filter_map(|n| Some((*n, resp.headers().get(*n)?.to_str().ok()?.to_string())))
        .collect();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| internal(format!("the storage backend's answer broke off: {e}")))?;
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
    respond_xml(ex, status, text, &echoed).await
}

/// Answer headers of CreateMultipartUpload that are passed on.
const CHECKSUM_ECHO: &[&str] = &["x-amz-checksum-algorithm", "x-amz-checksum-type"];

/// CompleteMultipartUpload: forward the part list; on success the parts
/// leave the ledger and the object's real size takes their place.
pub(super) async fn complete(call: &Call<'_>, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
    let (bucket, backend_bucket, object) = (call.bucket()?, call.backend_bucket()?, call.object()?);
    let body = read_verified(ex.session, &call.sig, MAX_XML_BODY).await?;
    check_open(call).await?;
    let named = named_parts(&body)?;
    check_parts(&named, &uploaded_parts(call).await?)?;
    let mut req = call.to_backend(false);
    req.headers
        .push(("content-length".into(), body.len().to_string()));
    req.body = Some(body);
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
    respond_xml(ex, status, text, &[]).await
}

/// ListMultipartUploads, from the ledger: the same answer whatever the
/// backend (some do not implement it).
pub(super) async fn list(call: &Call<'_>, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
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
        .open_uploads()
        .await?
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
    respond_xml(ex, 200, body, &[]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<(), GatewayError>) -> Option<&'static str> {
        r.err().and_then(|e| e.s3.map(|s| s.1))
    }

    #[test]
    fn parts_are_checked_as_s3_checks_them() {
        let mib = 1u64 << 20;
        let up: BTreeMap<u32, (String, u64)> = [
            (1, ("\"a\"".to_string(), 5 * mib)),
            (2, ("\"b\"".to_string(), 4 * mib)),
            (3, ("\"c\"".to_string(), 1)),
        ]
        .into();
        let p = |v: &[(u32, &str)]| {
            v.iter()
                .map(|(n, e)| (*n, e.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(code(check_parts(&p(&[(1, "a"), (3, "\"c\"")]), &up)), None);
        assert_eq!(code(check_parts(&p(&[(1, "a")]), &up)), None);
        assert_eq!(
            code(check_parts(&p(&[(3, "c"), (1, "a")]), &up)),
            Some("InvalidPartOrder")
        );
        assert_eq!(
            code(check_parts(&p(&[(1, "a"), (1, "a")]), &up)),
            Some("InvalidPartOrder")
        );
        assert_eq!(code(check_parts(&p(&[(1, "x")]), &up)), Some("InvalidPart"));
        assert_eq!(
            code(check_parts(&p(&[(1, "a"), (4, "d")]), &up)),
            Some("InvalidPart")
        );
        assert_eq!(
            code(check_parts(&p(&[(2, "b"), (3, "c")]), &up)),
            Some("EntityTooSmall")
        );
    }

    #[test]
    fn the_part_list_must_be_well_formed() {
        let ok = b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"a\"</ETag></Part></CompleteMultipartUpload>";
        assert_eq!(named_parts(ok).unwrap(), vec![(1, "\"a\"".to_string())]);
        for bad in [
            &b"<CompleteMultipartUpload></CompleteMultipartUpload>"[..],
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>0</PartNumber><ETag>a</ETag></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part>",
        ] {
            assert!(named_parts(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
