//! ListObjects (v1) and ListObjectsV2 for the embedded backend, answered
//! from the keys of `layout.rs` rather than by s3s-fs (which trimmed `/`
//! off prefixes, ignored `encoding-type`, echoed an empty delimiter, had no
//! `Marker` and no ETags). As S3 does:
//!
//! - keys in UTF-8 byte order; `prefix` matched exactly; with a non-empty
//!   `delimiter`, the keys that have it after the prefix roll up into
//!   common prefixes, each counted once against `max-keys`;
//! - v1 resumes after `marker` and sends `NextMarker` when a delimiter is
//!   set; v2 resumes after `start-after` or the opaque continuation token;
//! - `encoding-type=url` encodes every key and prefix in the answer
//!   (space as `+`, as botocore's `unquote_plus` expects).
//!
//! Every listing reads the bucket's directory: it costs O(objects).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::{layout, EmbeddedFs};

/// One page of a listing.
#[derive(Debug, Default, PartialEq)]
struct Page {
    /// `(key, path)` of the objects listed.
    objects: Vec<(String, PathBuf)>,
    prefixes: Vec<String>,
    truncated: bool,
    /// The last key or common prefix listed.
    last: Option<String>,
}

/// `keys` sorted; the page after `after` (exclusive).
fn page(
    keys: Vec<(String, PathBuf)>,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> Page {
    let mut p = Page::default();
    if max == 0 {
        return p; // S3: nothing, and not truncated
    }
    let mut count = 0;
    for (key, path) in keys {
        if !key.starts_with(prefix) || after.is_some_and(|a| key.as_str() <= a) {
            continue;
        }
        let rolled = delimiter.and_then(|d| {
            let rest = &key[prefix.len()..];
            rest.find(d)
                .map(|i| format!("{prefix}{}", &rest[..i + d.len()]))
        });
        if let Some(cp) = &rolled {
            // Resuming after a common prefix skips the rest of it.
            if p.prefixes.last() == Some(cp) || after == Some(cp.as_str()) {
                continue;
            }
        }
        if count == max {
            p.truncated = true;
            break;
        }
        count += 1;
        match rolled {
            Some(cp) => {
                p.last = Some(cp.clone());
                p.prefixes.push(cp);
            }
            None => {
                p.last = Some(key.clone());
                p.objects.push((key, path));
            }
        }
    }
    p
}

/// `encoding-type=url`: what S3 sends and botocore's `unquote_plus` undoes.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The ETag s3s-fs saved for the object, if any.
fn saved_etag(root: &Path, bucket: &str, key: &str) -> Option<ETag> {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let path = root.join(format!(
        ".bucket-{}.object-{}.internal.json",
        b64(bucket),
        b64(&layout::encode(key))
    ));
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some(ETag::Strong(info.get("e_tag")?.as_str()?.to_string()))
}

/// What both listings share: the request's terms, and the page.
struct Listed {
    page: Page,
    url: bool,
    delimiter: Option<String>,
    prefix: Option<String>,
    contents: Option<Vec<Object>>,
    common_prefixes: Option<Vec<CommonPrefix>>,
}

impl EmbeddedFs {
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        bucket: &str,
        prefix: Option<String>,
        delimiter: Option<String>,
        encoding: Option<&EncodingType>,
        after: Option<String>,
        max_keys: Option<i32>,
    ) -> S3Result<Listed> {
        let dir = self.root.join(bucket);
        if !s3s::path::check_bucket_name(bucket) || !dir.is_dir() {
            return Err(s3_error!(NoSuchBucket));
        }
        let max = match max_keys {
            Some(m) if m < 0 => return Err(s3_error!(InvalidArgument, "max-keys must be >= 0")),
            Some(m) => (m as usize).min(1000),
            None => 1000,
        };
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let url = encoding.is_some_and(|e| e.as_str().eq_ignore_ascii_case(EncodingType::URL));
        let (root, b) = (self.root.clone(), bucket.to_string());
        let (pre, del) = (prefix.clone().unwrap_or_default(), delimiter.clone());
        let (page, etags) = tokio::task::spawn_blocking(move || {
            let mut keys = layout::objects(&dir)?;
            keys.sort_by(|x, y| x.0.cmp(&y.0));
            let page = page(keys, &pre, del.as_deref(), after.as_deref(), max);
            let etags: Vec<Option<ETag>> = page
                .objects
                .iter()
                .map(|(k, _)| saved_etag(&root, &b, k))
                .collect();
            Ok::<_, std::io::Error>((page, etags))
        })
        .await
        .map_err(|e| s3_error!(InternalError, "listing: {e}"))?
        .map_err(|e| s3_error!(InternalError, "listing: {e}"))?;
        let enc = |s: &str| if url { url_encode(s) } else { s.to_string() };
        let mut contents = Vec::with_capacity(page.objects.len());
        for ((key, path), e_tag) in page.objects.iter().zip(etags) {
            let Ok(meta) = tokio::fs::metadata(path).await else {
                continue; // deleted meanwhile
            };
            contents.push(Object {
                key: Some(enc(key)),
                size: Some(meta.len() as i64),
                last_modified: meta.modified().ok().map(Timestamp::from),
                e_tag,
                storage_class: Some(ObjectStorageClass::from_static(
                    ObjectStorageClass::STANDARD,
                )),
                ..Default::default()
            });
        }
        let common_prefixes: Vec<CommonPrefix> = page
            .prefixes
            .iter()
            .map(|p| CommonPrefix {
                prefix: Some(enc(p)),
            })
            .collect();
        Ok(Listed {
            url,
            delimiter: delimiter.map(|d| enc(&d)),
            prefix: Some(enc(&prefix.unwrap_or_default())),
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!common_prefixes.is_empty()).then_some(common_prefixes),
            page,
        })
    }

    pub(super) async fn list_objects_v2_here(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let from_token = match &input.continuation_token {
            Some(t) => Some(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        s3_error!(
                            InvalidArgument,
                            "The continuation token provided is incorrect"
                        )
                    })?,
            ),
            None => None,
        };
        let after = match (from_token, input.start_after.clone()) {
            (Some(t), Some(s)) => Some(t.max(s)),
            (t, s) => t.or(s),
        };
        let l = self
            .list(
                &input.bucket,
                input.prefix.clone(),
                input.delimiter.clone(),
                input.encoding_type.as_ref(),
                after,
                input.max_keys,
            )
            .await?;
        let count = (l.page.objects.len() + l.page.prefixes.len()) as i32;
        let next = l
            .page
            .truncated
            .then(|| l.page.last.clone())
            .flatten()
            .map(|k| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k));
        let start_after = input
            .start_after
            .map(|s| if l.url { url_encode(&s) } else { s });
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: l.prefix,
            delimiter: l.delimiter,
            max_keys: Some(input.max_keys.unwrap_or(1000)),
            key_count: Some(count),
            is_truncated: Some(l.page.truncated),
            continuation_token: input.continuation_token,
            next_continuation_token: next,
            start_after,
            encoding_type: input.encoding_type,
            contents: l.contents,
            common_prefixes: l.common_prefixes,
            ..Default::default()
        }))
    }

    pub(super) async fn list_objects_here(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let l = self
            .list(
                &input.bucket,
                input.prefix.clone(),
                input.delimiter.clone(),
                input.encoding_type.as_ref(),
                input.marker.clone().filter(|m| !m.is_empty()),
                input.max_keys,
            )
            .await?;
        let enc = |s: &str| if l.url { url_encode(s) } else { s.to_string() };
        // S3 sends NextMarker only with a delimiter; without one the last
        // key is the next marker.
        let next_marker = (l.page.truncated && l.delimiter.is_some())
            .then(|| l.page.last.as_deref().map(enc))
            .flatten();
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: l.prefix,
            delimiter: l.delimiter,
            marker: Some(enc(input.marker.as_deref().unwrap_or(""))),
            next_marker,
            max_keys: Some(input.max_keys.unwrap_or(1000)),
            is_truncated: Some(l.page.truncated),
            encoding_type: input.encoding_type,
            contents: l.contents,
            common_prefixes: l.common_prefixes,
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<(String, PathBuf)> {
        names
            .iter()
            .map(|n| (n.to_string(), PathBuf::from(n)))
            .collect()
    }

    fn names(p: &Page) -> (Vec<&str>, Vec<&str>) {
        (
            p.objects.iter().map(|(k, _)| k.as_str()).collect(),
            p.prefixes.iter().map(String::as_str).collect(),
        )
    }

    #[test]
    fn prefixes_delimiters_and_resuming() {
        let all = [
            "/lead",
            "a",
            "b/1",
            "b/2",
            "b/c/3",
            "c",
            "foo/bar",
            "foo/bar/xyzzy",
        ];
        let p = page(keys(&all), "", Some("/"), None, 1000);
        assert_eq!(names(&p), (vec!["a", "c"], vec!["/", "b/", "foo/"]));
        let p = page(keys(&all), "/", None, None, 1000);
        assert_eq!(names(&p).0, ["/lead"]);
        let p = page(keys(&all), "b/", Some("/"), None, 1000);
        assert_eq!(names(&p), (vec!["b/1", "b/2"], vec!["b/c/"]));
        // Pages of two, a common prefix counting once, resumed after it.
        let p1 = page(keys(&all), "", Some("/"), None, 2);
        assert_eq!(names(&p1), (vec!["a"], vec!["/"]));
        assert!(p1.truncated);
        let p2 = page(keys(&all), "", Some("/"), p1.last.as_deref(), 2);
        assert_eq!(names(&p2), (vec!["c"], vec!["b/"]));
        let p3 = page(keys(&all), "", Some("/"), p2.last.as_deref(), 2);
        assert_eq!(names(&p3), (vec![], vec!["foo/"]));
        assert!(!p3.truncated);
        let none = page(keys(&all), "", None, None, 0);
        assert_eq!((none.objects.len(), none.truncated), (0, false));
    }

    #[test]
    fn url_encoding_is_what_unquote_plus_undoes() {
        assert_eq!(url_encode("asdf+b"), "asdf%2Bb");
        assert_eq!(url_encode("a b/c%d"), "a+b/c%25d");
        assert_eq!(url_encode("日"), "%E6%97%A5");
    }
}
