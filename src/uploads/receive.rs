//! The three ways a file arrives: a multipart stream, base64 in JSON, or a
//! URL the gateway fetches. Each ends stored under its name through a
//! [`StagedWriter`] (quota counted while bytes flow; on any failure nothing
//! is stored and nothing stays charged), or with the reason it was not.

use base64::Engine;
use bytes::Bytes;
use kikaku_filters::{ErrorKind, GatewayError};
use pingora::proxy::Session;
use serde::Deserialize;

use super::{fetch, naming, Received, Target, Uploads};
use crate::storage::capped::Capped;
use crate::storage::mime;
use crate::storage::staged::{FileMeta, Staged, StagedWriter};

/// Text fields of a form (`uploadPath`, `fileName`, anything unknown).
const MAX_TEXT_FIELD: u64 = 64 << 10;
/// The JSON of a URL upload.
const MAX_URL_BODY: usize = 64 << 10;

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorKind::InvalidParameter, msg)
}

fn too_large(what: &str, max: u64) -> GatewayError {
    GatewayError::new(
        ErrorKind::PayloadTooLarge,
        format!("The file is larger than {max} bytes, the most {what} takes."),
    )
}

/// The names of a JSON upload (`null` and absent alike).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Base64Body {
    base64_data: Option<String>,
    upload_path: Option<String>,
    file_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UrlBody {
    file_url: Option<String>,
    upload_path: Option<String>,
    file_name: Option<String>,
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, GatewayError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("The body must be a JSON object: {e}.")))
}

/// The given file name, checked, if there is one.
fn given_name(raw: Option<&str>) -> Result<Option<String>, GatewayError> {
    raw.filter(|n| !n.trim().is_empty())
        .map(naming::file_name)
        .transpose()
}

impl Uploads {
    /// `POST /api/file-stream-upload`.
    pub(super) async fn stream(
        &self,
        writer: &StagedWriter<'_>,
        ex: &mut crate::reply::Exchange<'_>,
    ) -> Result<Received, GatewayError> {
        let boundary = crate::storage::upload::form_boundary(ex.session)
            .await
            .ok_or_else(|| {
                bad("file-stream-upload takes multipart/form-data with a `file` field.")
            })?;
        let mut form = Form::default();
        let max = self.cfg.max_stream_bytes.0;
        let read = read_form(writer, ex.session, boundary, &mut form, max).await;
        let Some(staged) = form.staged.take() else {
            read?;
            return Err(GatewayError::new(
                ErrorKind::MissingParameter,
                "The form has no `file` field.",
            ));
        };
        let named = read.and_then(|()| {
            let upload_path = naming::upload_path(form.upload_path.as_deref())?;
            let original = staged.meta().file_name.clone().unwrap_or_default();
            let file_name = match given_name(form.file_name.as_deref())? {
                Some(n) => n,
                None => naming::random_name(&original, &staged.meta().content_type),
            };
            Ok((
                Target {
                    upload_path,
                    file_name,
                },
                original,
            ))
        });
        let (target, original) = match named {
            Ok(n) => n,
            Err(e) => {
                writer.discard(staged).await;
                return Err(e);
            }
        };
        let mime_type =
            mime::content_type(&[&target.file_name], Some(&staged.meta().content_type), b"");
        let original_name = if original.is_empty() {
            target.file_name.clone()
        } else {
            original
        };
        Ok(Received {
            target,
            staged,
            mime_type,
            original_name,
        })
    }

    /// `POST /api/file-base64-upload`: plain base64 or a data URL.
    pub(super) async fn base64(
        &self,
        ex: &mut crate::reply::Exchange<'_>,
    ) -> Result<Received, GatewayError> {
        let max = self.cfg.max_base64_bytes.0;
        // Base64 is 4/3 the size, plus the JSON around it.
        let body_max = (max.saturating_mul(4) / 3 + (64 << 10)) as usize;
        let body = crate::reply::read_body(ex.session, body_max)
            .await
            .map_err(|e| match e.kind {
                ErrorKind::PayloadTooLarge => too_large("a base64 upload", max),
                _ => e,
            })?;
        let req: Base64Body = parse_json(&body)?;
        let raw = req.base64_data.filter(|d| !d.is_empty()).ok_or_else(|| {
            GatewayError::new(ErrorKind::MissingParameter, "base64Data is required.")
        })?;
        let upload_path = naming::upload_path(req.upload_path.as_deref())?;
        let given = given_name(req.file_name.as_deref())?;
        let (declared, encoded) = match raw.strip_prefix("data:") {
            Some(rest) => {
                let (head, data) = rest.split_once(',').ok_or_else(|| {
                    bad("base64Data is a data URL without a ',' before its data.")
                })?;
                let media = head.strip_suffix(";base64").ok_or_else(|| {
                    bad("base64Data is a data URL that is not base64 (;base64,).")
                })?;
                (Some(media.to_string()).filter(|m| !m.is_empty()), data)
            }
            None => (None, raw.as_str()),
        };
        let compact: Vec<u8> = encoded
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        if (compact.len() as u64 / 4).saturating_mul(3) > max + 3 {
            return Err(too_large("a base64 upload", max));
        }
        let data = decode_base64(&compact)?;
        if data.len() as u64 > max {
            return Err(too_large("a base64 upload", max));
        }
        let sniffed = mime::content_type(&[], declared.as_deref(), &data);
        let file_name = given.unwrap_or_else(|| naming::random_name("", &sniffed));
        let mime_type = mime::content_type(&[&file_name], Some(&sniffed), b"");
        let target = Target {
            upload_path,
            file_name,
        };
        let meta = FileMeta {
            content_type: mime_type.clone(),
            file_name: None,
            detect: None,
        };
        let original_name = target.file_name.clone();
        Ok(Received {
            target,
            staged: Staged::Small {
                data: Bytes::from(data),
                meta,
            },
            mime_type,
            original_name,
        })
    }

    /// `POST /api/file-url-upload`: fetched by the gateway, streamed in.
    pub(super) async fn url(
        &self,
        writer: &StagedWriter<'_>,
        ex: &mut crate::reply::Exchange<'_>,
    ) -> Result<Received, GatewayError> {
        let body = crate::reply::read_body(ex.session, MAX_URL_BODY).await?;
        let req: UrlBody = parse_json(&body)?;
        let raw = req
            .file_url
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| {
                GatewayError::new(ErrorKind::MissingParameter, "fileUrl is required.")
            })?;
        let upload_path = naming::upload_path(req.upload_path.as_deref())?;
        let given = given_name(req.file_name.as_deref())?;
        let (final_url, resp) = self.fetcher.start(&raw).await?;
        let declared = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let original_name = naming::name_from_url(&final_url).unwrap_or_else(|| "file".into());
        let guess = mime::content_type(&[&original_name], declared.as_deref(), b"");
        let file_name = given.unwrap_or_else(|| naming::random_name(&original_name, &guess));
        let target = Target {
            upload_path,
            file_name,
        };
        let object = target.object();
        let meta = FileMeta {
            content_type: declared.unwrap_or_else(|| "application/octet-stream".into()),
            file_name: Some(original_name.clone()),
            detect: Some(vec![target.file_name.clone()]),
        };
        let mut body = Capped::new(resp.bytes_stream(), self.fetcher.max_bytes);
        let mut staged = None;
        let sent = writer
            .stage(Some(&object), meta, &mut body, &mut staged)
            .await;
        let staged = match (sent, staged) {
            (Ok(()), Some(s)) => s,
            (result, staged) => {
                if let Some(s) = staged {
                    writer.discard(s).await;
                }
                if body.over {
                    return Err(fetch::too_large(self.fetcher.max_bytes));
                }
                return Err(match result {
                    Err(e) if e.kind == ErrorKind::InvalidParameter => {
                        bad(format!("fileUrl could not be fetched whole: {}", e.message))
                    }
                    Err(e) => e,
                    Ok(()) => GatewayError::new(ErrorKind::Internal, "nothing was staged"),
                });
            }
        };
        let mime_type = staged.meta().content_type.clone();
        Ok(Received {
            target,
            staged,
            mime_type,
            original_name,
        })
    }
}

/// Standard or URL-safe base64, padded or not.
fn decode_base64(compact: &[u8]) -> Result<Vec<u8>, GatewayError> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let cfg = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, cfg);
    let url_safe = GeneralPurpose::new(&base64::alphabet::URL_SAFE, cfg);
    standard
        .decode(compact)
        .or_else(|_| url_safe.decode(compact))
        .map_err(|e| bad(format!("base64Data is not valid base64: {e}.")))
}

/// What a stream upload's form held.
#[derive(Default)]
struct Form {
    upload_path: Option<String>,
    file_name: Option<String>,
    staged: Option<Staged>,
}

/// Read the whole form; the file streams into `form.staged`, under its
/// name when `fileName` (and `uploadPath`) came first, else under a
/// staging name.
async fn read_form(
    writer: &StagedWriter<'_>,
    session: &mut Session,
    boundary: String,
    form: &mut Form,
    max: u64,
) -> Result<(), GatewayError> {
    let mut multipart =
        crate::storage::upload::form(session, bytes::Bytes::new(), boundary, MAX_TEXT_FIELD);
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| bad(format!("The form is malformed: {e}.")))?
    {
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "uploadPath" | "fileName" => {
                let text = field
                    .text()
                    .await
                    .map_err(|e| bad(format!("The {name} field is malformed: {e}.")))?;
                let slot = if name == "uploadPath" {
                    &mut form.upload_path
                } else {
                    &mut form.file_name
                };
                if slot.replace(text).is_some() {
                    return Err(bad(format!("The form has two `{name}` fields: send one.")));
                }
            }
            "file" => {
                if form.staged.is_some() {
                    return Err(bad(
                        "The form has two `file` fields: send one file per upload (nothing was stored).",
                    ));
                }
                let object = match (&form.upload_path, &form.file_name) {
                    (Some(p), Some(n)) => Some(
                        Target {
                            upload_path: naming::upload_path(Some(p))?,
                            file_name: naming::file_name(n)?,
                        }
                        .object(),
                    ),
                    _ => None,
                };
                let meta = FileMeta {
                    content_type: field
                        .content_type()
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| "application/octet-stream".into()),
                    file_name: field.file_name().map(str::to_string),
                    detect: Some(form.file_name.iter().cloned().collect()),
                };
                let mut capped = Capped::new(&mut field, max);
                let sent = writer
                    .stage(object.as_deref(), meta, &mut capped, &mut form.staged)
                    .await;
                if capped.over {
                    return Err(too_large("a stream upload", max));
                }
                sent?;
            }
            _ => {
                while field
                    .chunk()
                    .await
                    .map_err(|e| bad(format!("The form is malformed: {e}.")))?
                    .is_some()
                {}
            }
        }
    }
    Ok(())
}
