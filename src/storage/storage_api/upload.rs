//! `POST /s3/upload`: a multipart form with a `file` field and an optional
//! `key` field, in either order (the seed's curl and axios snippets send
//! `file` first).
//!
//! The file streams to the backend while the form is read, through a
//! [`StagedWriter`]: nothing is visible under its name until the whole form
//! has been read and checked. A second `file`, a bad `key`, or a form that
//! breaks off discards what was sent: nothing is stored and nothing stays
//! charged.

use crate::reply::Exchange;
use std::sync::Arc;

use kikaku_filters::{ApiKey, ErrorKind, GatewayError};
use serde_json::json;

use super::{bad, StorageApi};
use crate::config::names::check_object_key;
use crate::storage::staged::{FileMeta, Staged, StagedWriter};

/// Form fields other than `file` (the key, anything unknown) are small.
const MAX_TEXT_FIELD: u64 = 64 << 10;

impl StorageApi {
    pub(super) async fn upload(
        &self,
        key: &Arc<ApiKey>,
        ex: &mut Exchange<'_>,
    ) -> Result<(), GatewayError> {
        let boundary = crate::storage::upload::form_boundary(ex.session)
            .await
            .ok_or_else(|| bad("POST /s3/upload takes multipart/form-data with a `file` field"))?;
        let head = crate::storage::form_put::read_head(ex.session, &boundary).await?;
        let writer = StagedWriter::new(&self.storage, key);
        let mut staged = None;
        let form = crate::storage::upload::form(ex.session, head.bytes, boundary, MAX_TEXT_FIELD);
        let read = Self::read_form(&writer, form, head.file_size, &mut staged).await;
        let (name, staged) = match (read, staged) {
            (Ok(name), Some(s)) => (name.or_else(|| s.meta().file_name.clone()), s),
            (Ok(_), None) => {
                return Err(GatewayError::new(
                    ErrorKind::MissingParameter,
                    "the form has no `file` field",
                ))
            }
            (Err(e), Some(s)) => {
                writer.discard(s).await;
                return Err(e);
            }
            (Err(e), None) => return Err(e),
        };
        let name = match name
            .ok_or_else(|| bad("name the file: a `key` field, or a filename on `file`"))
            .and_then(|n| check_object_key(&n).map(|_| n).map_err(bad))
        {
            Ok(n) => n,
            Err(e) => {
                writer.discard(staged).await;
                return Err(e);
            }
        };
        let content_type = staged.meta().content_type.clone();
        let size = writer.store(&name, staged).await?;
        ex.json(
            201,
            json!({
                "key": name,
                "size": size,
                "content_type": content_type,
                "bucket": key.default_bucket(),
            }),
        )
        .await
    }

    /// Read the whole form; the file goes into `staged` as it streams
    /// (one PUT under its name when `file_size` is known and the key came
    /// first). Returns the `key` field, when there was one.
    async fn read_form(
        writer: &StagedWriter<'_>,
        mut form: multer::Multipart<'_>,
        file_size: Option<u64>,
        staged: &mut Option<Staged>,
    ) -> Result<Option<String>, GatewayError> {
        let mut object: Option<String> = None;
        while let Some(mut field) = form
            .next_field()
            .await
            .map_err(|e| bad(format!("the form is malformed: {e}")))?
        {
            match field.name() {
                Some("key") => {
                    if object.is_some() {
                        return Err(bad("the form has two `key` fields: send one"));
                    }
                    let text = field
                        .text()
                        .await
                        .map_err(|e| bad(format!("the key field is malformed: {e}")))?;
                    let name = text.trim().trim_start_matches('/').to_string();
                    check_object_key(&name).map_err(|e| bad(format!("key: {e}")))?;
                    object = Some(name);
                }
                Some("file") => {
                    if staged.is_some() {
                        return Err(bad(
                            "the form has two `file` fields: send one file per upload \
                             (nothing was stored)",
                        ));
                    }
                    let meta = FileMeta {
                        content_type: field
                            .content_type()
                            .map(|m| m.to_string())
                            .unwrap_or_else(|| "application/octet-stream".into()),
                        file_name: field.file_name().map(str::to_string),
                        detect: None,
                    };
                    if let (Some(name), Some(size)) = (object.as_deref(), file_size) {
                        // The form ends with this file: it is read whole here.
                        *staged = Some(writer.put_known(name, meta, field, &mut form, size).await?);
                        return Ok(object);
                    }
                    writer
                        .stage(object.as_deref(), meta, &mut field, staged)
                        .await?;
                }
                _ => {
                    // Unknown fields are read and ignored.
                    while field
                        .chunk()
                        .await
                        .map_err(|e| bad(format!("the form is malformed: {e}")))?
                        .is_some()
                    {}
                }
            }
        }
        Ok(object)
    }
}
