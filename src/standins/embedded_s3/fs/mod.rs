//! The embedded backend's S3 implementation: s3s-fs, with GetObject's body
//! read in large pieces.
//!
//! s3s-fs streams an object as 4 KiB reads, each one a trip to tokio's
//! blocking pool, and hyper writes each read as it comes: a 256 MiB GET cost
//! the backend 65,536 blocking reads and reached the gateway as as many small
//! pieces, one wake-up and one `recvfrom` each. Here s3s-fs still answers
//! (names, ranges, metadata, ETag, errors); only the body is replaced by a
//! read of the same file in [`READ_PIECE`]-sized pieces.
//!
//! s3s-fs also renames a new object's file in before it saves the new
//! ETag, so a read between the two paired new bytes with the old ETag. A
//! lock per object name ([`NameLocks`]) closes that window: writers hold it
//! from the end of the body until s3s-fs has saved everything, readers while
//! s3s-fs describes the object.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::stream::{self, Stream};
use s3s::dto::*;
use s3s::stream::{ByteStream, RemainingLength};
use s3s::{S3Request, S3Response, S3Result, StdError, S3};
use s3s_fs::FileSystem;
use tokio::sync::{OwnedRwLockWriteGuard, RwLock};

mod conditional;
pub mod layout;
mod listing;
mod multipart;

use conditional::Conditions;

/// Bytes per read of an object's file (and per frame hyper writes).
pub const READ_PIECE: usize = 256 << 10;

pub struct EmbeddedFs {
    inner: FileSystem,
    root: PathBuf,
    locks: NameLocks,
    /// Held while a bucket is made.
    creating: tokio::sync::Mutex<()>,
}

/// Read/write locks over object names, striped: two names that share a
/// stripe only wait for each other, never see each other's data.
struct NameLocks(Vec<Arc<RwLock<()>>>);

impl NameLocks {
    fn new() -> Self {
        NameLocks((0..64).map(|_| Arc::new(RwLock::new(()))).collect())
    }

    fn of(&self, bucket: &str, key: &str) -> Arc<RwLock<()>> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (bucket, key).hash(&mut h);
        self.0[h.finish() as usize % self.0.len()].clone()
    }
}

type WriteGuard = OwnedRwLockWriteGuard<()>;

/// A PUT's body that takes its name's write lock when it ends, before
/// s3s-fs renames the file in; the guard goes to `held`, which the PUT
/// drops once s3s-fs has saved the ETag too. Uploading holds no lock.
struct LockAtEnd {
    body: StreamingBlob,
    lock: Arc<RwLock<()>>,
    acquiring: Option<Pin<Box<dyn Future<Output = WriteGuard> + Send + Sync>>>,
    held: Arc<parking_lot::Mutex<Option<WriteGuard>>>,
}

impl Stream for LockAtEnd {
    type Item = Result<Bytes, StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.acquiring.is_none() {
            match Pin::new(&mut self.body).poll_next(cx) {
                Poll::Ready(None) => {
                    let lock = self.lock.clone();
                    self.acquiring = Some(Box::pin(lock.write_owned()));
                }
                other => return other,
            }
        }
        let Some(acquiring) = self.acquiring.as_mut() else {
            return Poll::Ready(None);
        };
        match acquiring.as_mut().poll(cx) {
            Poll::Ready(guard) => {
                *self.held.lock() = Some(guard);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl ByteStream for LockAtEnd {
    fn remaining_length(&self) -> RemainingLength {
        self.body.remaining_length()
    }
}

impl EmbeddedFs {
    pub fn new(root: &Path) -> Result<Self, String> {
        let inner =
            FileSystem::new(root).map_err(|e| format!("cannot open {}: {e:?}", root.display()))?;
        // The same root s3s-fs resolved (it canonicalises).
        let root = std::env::current_dir()
            .and_then(|d| d.join(root).canonicalize())
            .map_err(|e| format!("cannot open {}: {e}", root.display()))?;
        let moved = layout::migrate(&root)
            .map_err(|e| format!("cannot move objects into {}: {e}", root.display()))?;
        if moved > 0 {
            log::info!("embedded S3: moved {moved} objects into the encoded layout");
        }
        Ok(EmbeddedFs {
            inner,
            root,
            locks: NameLocks::new(),
            creating: tokio::sync::Mutex::new(()),
        })
    }

    /// The object's file as s3s-fs names it (`<root>/<bucket>/<key>`, the
    /// key in its on-disk form), for plain names only: anything s3s-fs would
    /// normalise (`.`, `..`, empty segments) keeps s3s-fs's own body.
    fn object_path(&self, bucket: &str, key: &str) -> Option<PathBuf> {
        let plain = |s: &str| {
            !s.is_empty()
                && !s.starts_with('/')
                && !s.ends_with('/')
                && !s.contains("//")
                && Path::new(s)
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)))
        };
        (plain(bucket) && !bucket.contains('/') && plain(key))
            .then(|| self.root.join(bucket).join(key))
    }
}

/// Read `len` bytes of `file` from `start`, a piece at a time on the
/// blocking pool. A file that ends early is an error, never a short body
/// under a longer Content-Length.
fn file_body(
    file: std::fs::File,
    start: u64,
    len: u64,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + 'static {
    stream::unfold((Some(file), start, len), |(file, pos, left)| async move {
        let file = file?;
        if left == 0 {
            return None;
        }
        let want = left.min(READ_PIECE as u64);
        let read = tokio::task::spawn_blocking(move || {
            let mut file = file;
            file.seek(SeekFrom::Start(pos))?;
            let mut buf = Vec::with_capacity(want as usize);
            (&mut file).take(want).read_to_end(&mut buf)?;
            Ok::<_, std::io::Error>((file, buf))
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        match read {
            Ok((file, buf)) if !buf.is_empty() => {
                let n = buf.len() as u64;
                Some((Ok(Bytes::from(buf)), (Some(file), pos + n, left - n)))
            }
            Ok(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "object file ended early",
                )),
                (None, 0, 0),
            )),
            Err(e) => Some((Err(e), (None, 0, 0))),
        }
    })
}

/// S3 sends an object's checksums only to `x-amz-checksum-mode: ENABLED`.
fn checksums_asked(mode: Option<&ChecksumMode>) -> bool {
    mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case(ChecksumMode::ENABLED))
}

/// Open the object's file; `None` when that fails (s3s-fs then answers).
async fn open(path: PathBuf) -> Option<(std::fs::File, std::fs::Metadata)> {
    tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(path).ok()?;
        let m = f.metadata().ok()?;
        Some((f, m))
    })
    .await
    .ok()
    .flatten()
}

impl EmbeddedFs {
    async fn get_object_fast(
        &self,
        mut req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let path = self.object_path(&req.input.bucket, &req.input.key);
        // No writer is between renaming a file in and saving its ETag.
        let _reading = self
            .locks
            .of(&req.input.bucket, &req.input.key)
            .read_owned()
            .await;
        // Open first, then let s3s-fs answer, then check the name still
        // leads to the file opened: a PUT that replaced the object in
        // between (s3s-fs renames a new file in) means s3s-fs may have
        // described another file, so its own body is kept.
        let ours = match path.clone() {
            Some(p) => open(p).await,
            None => None,
        };
        // A suffix longer than the object is the whole object (RFC 9110
        // §14.1.2); s3s-fs would seek before the file's start.
        if let (Some(Range::Suffix { length }), Some((_, meta))) = (&req.input.range, &ours) {
            if *length > meta.len() && meta.len() > 0 {
                req.input.range = Some(Range::Int {
                    first: 0,
                    last: None,
                });
            }
        }
        let part = match (req.input.part_number, &ours) {
            (Some(n), Some((_, meta))) => {
                let sizes =
                    multipart::part_sizes(&self.root, &req.input.bucket, &req.input.key).await;
                let (start, len) = multipart::part_range(sizes.as_deref(), n, meta.len())?;
                if len > 0 {
                    req.input.range = Some(Range::Int {
                        first: start,
                        last: Some(start + len - 1),
                    });
                }
                sizes.map(|s| s.len() as i32)
            }
            _ => None,
        };
        let range = req.input.range;
        let conditions = Conditions::of_get(&req.input);
        let checksums = checksums_asked(req.input.checksum_mode.as_ref());
        let mut resp = self.inner.get_object(req).await?;
        conditions.check(
            resp.output.e_tag.as_ref(),
            resp.output.last_modified.as_ref(),
        )?;
        resp.output.parts_count = part;
        if !checksums {
            let o = &mut resp.output;
            (o.checksum_crc32, o.checksum_crc32c, o.checksum_sha1) = (None, None, None);
            (o.checksum_sha256, o.checksum_crc64nvme) = (None, None);
        }
        let (Some((file, meta)), Some(path)) = (ours, path) else {
            return Ok(resp);
        };
        let same = tokio::fs::metadata(&path)
            .await
            .is_ok_and(|now| now.ino() == meta.ino() && now.dev() == meta.dev());
        let span = match range {
            None => Ok(0..meta.len()),
            Some(r) => r.check(meta.len()),
        };
        let out = &mut resp.output;
        match span {
            Ok(span) if same && out.content_length == Some((span.end - span.start) as i64) => {
                out.body = Some(StreamingBlob::wrap(file_body(
                    file,
                    span.start,
                    span.end - span.start,
                )));
            }
            _ => {}
        }
        Ok(resp)
    }
}

impl EmbeddedFs {
    /// HeadObject under its name's read lock, with the conditional headers
    /// s3s-fs ignores.
    async fn head_object_checked(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let lock = self.locks.of(&req.input.bucket, &req.input.key);
        let _guard = lock.read_owned().await;
        let conditions = Conditions::of_head(&req.input);
        let checksums = checksums_asked(req.input.checksum_mode.as_ref());
        let (bucket, key, part) = (
            req.input.bucket.clone(),
            req.input.key.clone(),
            req.input.part_number,
        );
        let mut resp = self.inner.head_object(req).await?;
        conditions.check(
            resp.output.e_tag.as_ref(),
            resp.output.last_modified.as_ref(),
        )?;
        if let Some(n) = part {
            let sizes = multipart::part_sizes(&self.root, &bucket, &key).await;
            let len = resp.output.content_length.unwrap_or(0).max(0) as u64;
            let (start, size) = multipart::part_range(sizes.as_deref(), n, len)?;
            resp.output.content_length = Some(size as i64);
            if size > 0 {
                resp.output.content_range =
                    Some(format!("bytes {start}-{}/{len}", start + size - 1));
            }
            resp.output.parts_count = sizes.map(|s| s.len() as i32);
        }
        if !checksums {
            let o = &mut resp.output;
            (o.checksum_crc32, o.checksum_crc32c, o.checksum_sha1) = (None, None, None);
            (o.checksum_sha256, o.checksum_crc64nvme) = (None, None);
        }
        Ok(resp)
    }

    /// PutObject, holding the name's write lock from the end of the body
    /// (see [`LockAtEnd`]) until s3s-fs returns.
    async fn put_object_locked(
        &self,
        mut req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let lock = self.locks.of(&req.input.bucket, &req.input.key);
        let held = Arc::new(parking_lot::Mutex::new(None));
        match req.input.body.take() {
            Some(body) => {
                req.input.body = Some(StreamingBlob::new(LockAtEnd {
                    body,
                    lock,
                    acquiring: None,
                    held: held.clone(),
                }))
            }
            None => *held.lock() = Some(lock.write_owned().await),
        }
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let out = self.inner.put_object(req).await;
        if out.is_ok() {
            multipart::forget_parts(&self.root, &bucket, &key).await;
        }
        held.lock().take();
        out
    }
}

/// The S3 operations of the embedded backend. Bucket operations go to
/// s3s-fs unchanged; every object operation gets its key (and copy source)
/// in the on-disk form of `layout.rs` first, then runs the method named,
/// which adds what s3s-fs lacks: [`EmbeddedFs::get_object_fast`],
/// [`EmbeddedFs::head_object_checked`], [`EmbeddedFs::put_object_locked`],
/// the multipart fixes of `multipart.rs`, the listings of `listing.rs`.
macro_rules! s3_impl {
    (
        passed { $($op:ident($input:ident) -> $output:ident;)* }
        by_key { $($kop:ident($kinput:ident) -> $koutput:ident => $method:ident;)* }
    ) => {
        #[async_trait::async_trait]
        impl S3 for EmbeddedFs {
            $(
                async fn $op(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.inner.$op(req).await
                }
            )*

            $(
                async fn $kop(&self, mut req: S3Request<$kinput>) -> S3Result<S3Response<$koutput>> {
                    req.input.key = layout::encode(&req.input.key);
                    self.$method(req).await
                }
            )*

            /// s3s-fs checks for the directory, then makes it: of two at
            /// once the second failed with a 500. One at a time, it hears
            /// `BucketAlreadyExists`, as from S3.
            async fn create_bucket(
                &self,
                req: S3Request<CreateBucketInput>,
            ) -> S3Result<S3Response<CreateBucketOutput>> {
                let _one = self.creating.lock().await;
                self.inner.create_bucket(req).await
            }

            async fn list_objects(
                &self,
                req: S3Request<ListObjectsInput>,
            ) -> S3Result<S3Response<ListObjectsOutput>> {
                self.list_objects_here(req).await
            }

            async fn list_objects_v2(
                &self,
                req: S3Request<ListObjectsV2Input>,
            ) -> S3Result<S3Response<ListObjectsV2Output>> {
                self.list_objects_v2_here(req).await
            }

            async fn delete_objects(
                &self,
                mut req: S3Request<DeleteObjectsInput>,
            ) -> S3Result<S3Response<DeleteObjectsOutput>> {
                for o in req.input.delete.objects.iter_mut() {
                    o.key = layout::encode(&o.key);
                }
                let bucket = req.input.bucket.clone();
                let mut resp = self.inner.delete_objects(req).await?;
                for d in resp.output.deleted.iter().flatten() {
                    if let Some(k) = &d.key {
                        multipart::forget_parts(&self.root, &bucket, k).await;
                    }
                }
                for d in resp.output.deleted.iter_mut().flatten() {
                    d.key = d.key.take().map(|k| decoded(&k));
                }
                for e in resp.output.errors.iter_mut().flatten() {
                    e.key = e.key.take().map(|k| decoded(&k));
                }
                Ok(resp)
            }
        }
    };
}

/// A key back from its on-disk form (unchanged if it is not one).
fn decoded(k: &str) -> String {
    layout::decode(k).unwrap_or_else(|| k.to_string())
}

/// The copy source in its on-disk form.
fn encode_source(src: &mut CopySource) {
    if let CopySource::Bucket { key, .. } = src {
        *key = layout::encode(key).into();
    }
}

impl EmbeddedFs {
    async fn delete_object_plain(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let out = self.inner.delete_object(req).await?;
        multipart::forget_parts(&self.root, &bucket, &key).await;
        Ok(out)
    }

    /// CopyObject under the destination's write lock.
    async fn copy_object_locked(
        &self,
        mut req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        encode_source(&mut req.input.copy_source);
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let lock = self.locks.of(&bucket, &key);
        let _guard = lock.write_owned().await;
        let out = self.inner.copy_object(req).await?;
        multipart::forget_parts(&self.root, &bucket, &key).await;
        Ok(out)
    }
}

s3_impl! {
    passed {
        delete_bucket(DeleteBucketInput) -> DeleteBucketOutput;
        get_bucket_location(GetBucketLocationInput) -> GetBucketLocationOutput;
        head_bucket(HeadBucketInput) -> HeadBucketOutput;
        list_buckets(ListBucketsInput) -> ListBucketsOutput;
    }
    by_key {
        get_object(GetObjectInput) -> GetObjectOutput => get_object_fast;
        head_object(HeadObjectInput) -> HeadObjectOutput => head_object_checked;
        put_object(PutObjectInput) -> PutObjectOutput => put_object_locked;
        delete_object(DeleteObjectInput) -> DeleteObjectOutput => delete_object_plain;
        copy_object(CopyObjectInput) -> CopyObjectOutput => copy_object_locked;
        create_multipart_upload(CreateMultipartUploadInput) -> CreateMultipartUploadOutput => create_multipart_upload_echoing;
        upload_part(UploadPartInput) -> UploadPartOutput => upload_part_recording;
        upload_part_copy(UploadPartCopyInput) -> UploadPartCopyOutput => upload_part_copy_recording;
        list_parts(ListPartsInput) -> ListPartsOutput => list_parts_with_etags;
        complete_multipart_upload(CompleteMultipartUploadInput) -> CompleteMultipartUploadOutput => complete_multipart_upload_whole;
        abort_multipart_upload(AbortMultipartUploadInput) -> AbortMultipartUploadOutput => abort_multipart_upload_whole;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::io::Write;

    async fn collect(
        s: impl Stream<Item = Result<Bytes, std::io::Error>>,
    ) -> (Vec<usize>, Vec<u8>, Option<std::io::Error>) {
        let mut s = Box::pin(s);
        let (mut lens, mut all, mut err) = (Vec::new(), Vec::new(), None);
        while let Some(piece) = s.next().await {
            match piece {
                Ok(b) => {
                    lens.push(b.len());
                    all.extend_from_slice(&b);
                }
                Err(e) => err = Some(e),
            }
        }
        (lens, all, err)
    }

    fn file_of(data: &[u8]) -> (tempfile::NamedTempFile, std::fs::File) {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        t.write_all(data).unwrap();
        let f = std::fs::File::open(t.path()).unwrap();
        (t, f)
    }

    #[tokio::test]
    async fn a_file_is_read_in_large_pieces_from_the_range_start() {
        let data: Vec<u8> = (0..READ_PIECE * 2 + 1000)
            .map(|i| (i % 251) as u8)
            .collect();
        let (_t, f) = file_of(&data);
        let (lens, all, err) = collect(file_body(f, 0, data.len() as u64)).await;
        assert!(err.is_none());
        assert_eq!(lens, [READ_PIECE, READ_PIECE, 1000]);
        assert_eq!(all, data);

        let (_t, f) = file_of(&data);
        let (_, all, _) = collect(file_body(f, 7, 100)).await;
        assert_eq!(all, &data[7..107]);
    }

    #[tokio::test]
    async fn a_file_shorter_than_promised_ends_in_an_error() {
        let (_t, f) = file_of(&[1u8; 10]);
        let (_, all, err) = collect(file_body(f, 0, 20)).await;
        assert_eq!(all.len(), 10);
        assert_eq!(err.unwrap().kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn only_plain_names_get_the_fast_path() {
        let fs = EmbeddedFs::new(tempfile::tempdir().unwrap().path()).unwrap();
        assert!(fs.object_path("b", "a/b.txt").is_some());
        for key in ["../x", "a/../b", "./a", "a//b", "/a", "a/", ""] {
            assert!(fs.object_path("b", key).is_none(), "{key}");
        }
        assert!(fs.object_path("..", "a").is_none());
    }
}
