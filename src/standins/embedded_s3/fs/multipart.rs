//! Multipart uploads on s3s-fs, made to end as S3's do.
//!
//! - s3s-fs completes only parts numbered 1, 2, … n; S3 completes any
//!   ascending subset. The part files of a subset are renumbered first.
//! - s3s-fs leaves the parts a completion did not name on disk, outside
//!   every quota and listing; they are deleted once it has succeeded.
//! - s3s-fs keeps the checksums the key's previous object had (a boto3 GET
//!   then fails its CRC32 check): a completed object keeps only its ETag.
//! - CreateMultipartUpload echoes the `ChecksumAlgorithm` it was asked for.
//! - GET and HEAD `?partNumber=N` answer part N of a multipart object with
//!   `x-amz-mp-parts-count`: the part sizes are kept beside the object at
//!   completion (`.kikaku-parts.B.K.json`), and dropped when the object is
//!   replaced or deleted.
//! - s3s-fs's ListParts has no ETags (and no order): each part's ETag is
//!   kept beside it when it is uploaded (`.kikaku-part-etag-U.n`), and
//!   ListParts answers with them, by part number, so the gateway can check
//!   a completion's ETags as S3 does.
//!
//! The gateway has already checked the part list (order, ETags, sizes) by
//! then, so s3s-fs does not fail a completion half-way.
//!
//! s3s-fs keeps part `n` of upload `U` as `<root>/.upload_id-U.part-n` and
//! an object's checksums in `<root>/.bucket-B.object-K.internal.json` (B and
//! K base64url): those names are its own, read from s3s-fs 0.14.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};

use super::EmbeddedFs;

/// An upload id s3s-fs made (a UUID): safe inside a file name.
fn plain_upload_id(id: &str) -> bool {
    id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

fn part_path(root: &Path, upload_id: &str, part: i32) -> PathBuf {
    root.join(format!(".upload_id-{upload_id}.part-{part}"))
}

fn etag_path(root: &Path, upload_id: &str, part: i32) -> PathBuf {
    root.join(format!(".kikaku-part-etag-{upload_id}.{part}"))
}

async fn record_etag(root: &Path, upload_id: &str, part: i32, etag: Option<&ETag>) {
    if !plain_upload_id(upload_id) {
        return;
    }
    if let Some(e) = etag {
        if let Err(err) = tokio::fs::write(etag_path(root, upload_id, part), e.value()).await {
            log::warn!("embedded S3: the ETag of part {part} is not kept: {err}");
        }
    }
}

/// Rename the named parts' files to 1..n, in their (ascending) order, and
/// number the request's parts the same way.
async fn renumber(root: &Path, upload_id: &str, parts: &mut [CompletedPart]) -> S3Result<()> {
    for (i, part) in parts.iter_mut().enumerate() {
        let want = i as i32 + 1;
        let Some(have) = part.part_number else {
            continue;
        };
        if have == want {
            continue;
        }
        // Parts are ascending, so `want` < `have` and the file now named
        // `want` is a part the list leaves out (or none): replaced.
        tokio::fs::rename(
            part_path(root, upload_id, have),
            part_path(root, upload_id, want),
        )
        .await
        .map_err(|e| s3_error!(InternalError, "renumbering part {have}: {e}"))?;
        let _ = tokio::fs::rename(
            etag_path(root, upload_id, have),
            etag_path(root, upload_id, want),
        )
        .await;
        part.part_number = Some(want);
    }
    Ok(())
}

/// Delete what is left of an upload's parts and their ETags.
async fn remove_parts(root: &Path, upload_id: &str) {
    let prefixes = [
        format!(".upload_id-{upload_id}.part-"),
        format!(".kikaku-part-etag-{upload_id}."),
    ];
    let Ok(mut dir) = tokio::fs::read_dir(root).await else {
        return;
    };
    while let Ok(Some(entry)) = dir.next_entry().await {
        let name = entry.file_name();
        if name
            .to_str()
            .is_some_and(|n| prefixes.iter().any(|p| n.starts_with(p.as_str())))
        {
            if let Err(e) = tokio::fs::remove_file(entry.path()).await {
                log::warn!("embedded S3: an unused part stays on disk: {e}");
            }
        }
    }
}

/// Keep only the ETag of the object's internal record (its checksums were
/// the previous object's).
async fn forget_checksums(root: &Path, bucket: &str, key: &str) {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let path = root.join(format!(
        ".bucket-{}.object-{}.internal.json",
        b64(bucket),
        b64(key)
    ));
    let Ok(text) = tokio::fs::read(&path).await else {
        return;
    };
    let Ok(serde_json::Value::Object(mut info)) = serde_json::from_slice(&text) else {
        return;
    };
    info.retain(|k, _| k == "e_tag");
    let body = serde_json::Value::Object(info).to_string();
    let tmp = path.with_extension("json.kikaku-tmp");
    let written = async {
        tokio::fs::write(&tmp, body).await?;
        tokio::fs::rename(&tmp, &path).await
    };
    if let Err(e) = written.await {
        log::warn!("embedded S3: stale checksums stay on {key:?}: {e}");
    }
}

fn parts_path(root: &Path, bucket: &str, key: &str) -> PathBuf {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    root.join(format!(".kikaku-parts.{}.{}.json", b64(bucket), b64(key)))
}

/// The part sizes of a completed multipart object, if it is one.
pub(super) async fn part_sizes(root: &Path, bucket: &str, key: &str) -> Option<Vec<u64>> {
    let text = tokio::fs::read(parts_path(root, bucket, key)).await.ok()?;
    serde_json::from_slice(&text).ok()
}

/// The object is no longer the one its part sizes describe.
pub(super) async fn forget_parts(root: &Path, bucket: &str, key: &str) {
    let _ = tokio::fs::remove_file(parts_path(root, bucket, key)).await;
}

/// The byte range of part `n` (1-based) of an object of these parts, or
/// S3's 416 InvalidPartNumber. A plain object is one part.
pub(super) fn part_range(sizes: Option<&[u64]>, n: i32, len: u64) -> S3Result<(u64, u64)> {
    let whole = [len];
    let sizes = sizes.unwrap_or(&whole);
    let i = usize::try_from(n)
        .ok()
        .filter(|&i| i >= 1 && i <= sizes.len());
    let Some(i) = i else {
        let mut e = s3s::S3Error::with_message(
            s3s::S3ErrorCode::Custom("InvalidPartNumber".into()),
            "The requested partnumber is not satisfiable",
        );
        e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
        return Err(e);
    };
    let start: u64 = sizes[..i - 1].iter().sum();
    Ok((start, sizes[i - 1]))
}

impl EmbeddedFs {
    pub(super) async fn create_multipart_upload_echoing(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let algorithm = req.input.checksum_algorithm.clone();
        let mut resp = self.inner.create_multipart_upload(req).await?;
        if resp.output.checksum_algorithm.is_none() {
            resp.output.checksum_algorithm = algorithm;
        }
        resp.output.key = resp.output.key.take().map(|k| super::decoded(&k));
        Ok(resp)
    }

    pub(super) async fn upload_part_recording(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let (id, part) = (req.input.upload_id.clone(), req.input.part_number);
        let resp = self.inner.upload_part(req).await?;
        record_etag(&self.root, &id, part, resp.output.e_tag.as_ref()).await;
        Ok(resp)
    }

    pub(super) async fn upload_part_copy_recording(
        &self,
        mut req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        super::encode_source(&mut req.input.copy_source);
        let (id, part) = (req.input.upload_id.clone(), req.input.part_number);
        let resp = self.inner.upload_part_copy(req).await?;
        let etag = resp
            .output
            .copy_part_result
            .as_ref()
            .and_then(|r| r.e_tag.as_ref());
        record_etag(&self.root, &id, part, etag).await;
        Ok(resp)
    }

    /// ListParts with each part's ETag, in part-number order.
    pub(super) async fn list_parts_with_etags(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let id = req.input.upload_id.clone();
        let mut resp = self.inner.list_parts(req).await?;
        resp.output.key = resp.output.key.take().map(|k| super::decoded(&k));
        if let (true, Some(parts)) = (plain_upload_id(&id), resp.output.parts.as_mut()) {
            parts.sort_by_key(|p| p.part_number);
            for p in parts.iter_mut() {
                if let Some(n) = p.part_number {
                    if let Ok(e) = tokio::fs::read_to_string(etag_path(&self.root, &id, n)).await {
                        p.e_tag = Some(ETag::Strong(e));
                    }
                }
            }
        }
        Ok(resp)
    }

    pub(super) async fn abort_multipart_upload_whole(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let id = req.input.upload_id.clone();
        let resp = self.inner.abort_multipart_upload(req).await?;
        if plain_upload_id(&id) {
            remove_parts(&self.root, &id).await;
        }
        Ok(resp)
    }

    /// CompleteMultipartUpload under the name's write lock, with the fixes
    /// above around s3s-fs's own.
    pub(super) async fn complete_multipart_upload_whole(
        &self,
        mut req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let (bucket, key, upload_id) = (
            req.input.bucket.clone(),
            req.input.key.clone(),
            req.input.upload_id.clone(),
        );
        let lock = self.locks.of(&bucket, &key);
        let _guard = lock.write_owned().await;
        if !plain_upload_id(&upload_id) {
            return self.inner.complete_multipart_upload(req).await;
        }
        let mut sizes = Vec::new();
        if let Some(parts) = req
            .input
            .multipart_upload
            .as_mut()
            .and_then(|m| m.parts.as_mut())
        {
            renumber(&self.root, &upload_id, parts).await?;
            for p in parts.iter() {
                let n = p.part_number.unwrap_or(0);
                let meta = tokio::fs::metadata(part_path(&self.root, &upload_id, n)).await;
                sizes.push(meta.map(|m| m.len()).unwrap_or(0));
            }
        }
        let mut resp = self.inner.complete_multipart_upload(req).await?;
        remove_parts(&self.root, &upload_id).await;
        forget_checksums(&self.root, &bucket, &key).await;
        let path = parts_path(&self.root, &bucket, &key);
        if let Err(e) =
            tokio::fs::write(&path, serde_json::to_vec(&sizes).unwrap_or_default()).await
        {
            log::warn!("embedded S3: part sizes of {key:?} not kept (partNumber reads fail): {e}");
        }
        if let Some(done) = resp.output.future.take() {
            resp.output.future = Some(Box::pin(async move {
                let mut out = done.await?;
                out.key = out.key.take().map(|k| super::decoded(&k));
                Ok(out)
            }));
        }
        resp.output.key = resp.output.key.take().map(|k| super::decoded(&k));
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_subset_of_parts_is_renumbered_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let id = "0b7e6f4e-3c1a-4d2b-9a8e-1f2e3d4c5b6a";
        assert!(plain_upload_id(id));
        assert!(!plain_upload_id("../../etc/passwd0000000000000000000000"));
        for n in 1..=4 {
            std::fs::write(part_path(dir.path(), id, n), format!("part {n}")).unwrap();
        }
        let mut parts: Vec<CompletedPart> = [2, 4]
            .iter()
            .map(|&n| CompletedPart {
                part_number: Some(n),
                ..Default::default()
            })
            .collect();
        renumber(dir.path(), id, &mut parts).await.unwrap();
        let numbers: Vec<_> = parts.iter().map(|p| p.part_number).collect();
        assert_eq!(numbers, [Some(1), Some(2)]);
        let read = |n| std::fs::read_to_string(part_path(dir.path(), id, n)).unwrap();
        assert_eq!(
            (read(1), read(2)),
            ("part 2".to_string(), "part 4".to_string())
        );
        remove_parts(dir.path(), id).await;
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn part_numbers_map_to_ranges() {
        let sizes = [5u64, 3, 2];
        assert_eq!(part_range(Some(&sizes), 1, 10).unwrap(), (0, 5));
        assert_eq!(part_range(Some(&sizes), 3, 10).unwrap(), (8, 2));
        assert_eq!(part_range(None, 1, 7).unwrap(), (0, 7));
        for bad in [0, 4, -1] {
            let e = part_range(Some(&sizes), bad, 10).unwrap_err();
            assert_eq!(
                e.status_code(),
                Some(http::StatusCode::RANGE_NOT_SATISFIABLE)
            );
        }
        assert!(part_range(None, 2, 7).is_err());
    }

    #[tokio::test]
    async fn a_completed_object_keeps_only_its_etag() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let path = dir.path().join(format!(
            ".bucket-{}.object-{}.internal.json",
            b64("b"),
            b64("k/x")
        ));
        std::fs::write(&path, r#"{"e_tag":"abc-2","checksum_crc32":"old=="}"#).unwrap();
        forget_checksums(dir.path(), "b", "k/x").await;
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            r#"{"e_tag":"abc-2"}"#
        );
    }
}
