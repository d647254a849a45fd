//! One upload: the form's `file` streams through SHA-256 into a
//! [`StagedWriter`] of the file host's bucket (in memory up to one part,
//! else as parts charged to the holder as they go); then, under the
//! content's lease, it is stored as `{hash}` unless someone holds that
//! content already, the holder is charged its size once (the ledger slot's
//! credit makes a repeat cost nothing), and the hold is recorded.

use futures_util::StreamExt;
use kikaku_filters::{ErrorKind, GatewayError, StateError};
use pingora::proxy::Session;
use sha2::{Digest, Sha256};

use super::{unavailable, FileHost, Holder};
use crate::reply::Exchange;
use crate::state::hosted::{ledger_name, HostedContent, HostedRef, LEDGER_BUCKET};
use crate::state::{lease_wait, LedgerSlot, StateStore};
use crate::storage::capped::Capped;
use crate::storage::staged::{FileMeta, Staged, StagedWriter};
use crate::storage::upload::Budget;

/// Fields other than `file`: read and dropped, each at most this large.
const MAX_TEXT_FIELD: u64 = 64 << 10;
/// What a form may carry besides its file (boundaries, part headers).
const FORM_SLACK: u64 = 64 << 10;
/// How long an upload or delete waits for another one of the same content.
const LEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// The longest a content lease is held (a store of a staged file is a
/// complete and a copy).
const LEASE_MS: u64 = 10 * 60 * 1000;

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorKind::InvalidParameter, msg)
}

fn too_large(max: u64) -> GatewayError {
    GatewayError::new(
        ErrorKind::PayloadTooLarge,
        format!("The file is larger than {max} bytes, the most this upload takes."),
    )
}

/// The lease that serialises writes, holds and releases of one content.
pub(super) fn lease_name(hash: &str) -> String {
    format!("file-host:{hash}")
}

/// Take a content's lease, waiting for another upload or delete of it:
/// the lease's name and this holder's id.
pub(super) async fn lock_content(
    state: &dyn StateStore,
    hash: &str,
) -> Result<(String, String), GatewayError> {
    let name = lease_name(hash);
    let me = crate::state::lease_holder();
    if lease_wait(state, &name, &me, LEASE_MS, LEASE_WAIT)
        .await
        .map_err(unavailable)?
    {
        return Ok((name, me));
    }
    Err(GatewayError::new(
        ErrorKind::ServiceUnavailable,
        "This file is being stored or deleted right now; try again.",
    )
    .with_retry_after(std::time::Duration::from_secs(1)))
}

/// A file read whole and hashed, not yet stored under its hash.
struct Received {
    staged: Staged,
    hash: String,
    /// The name it came with (for the `full` URL).
    name: String,
}

/// The file name a client gave, as one usable segment: its last path
/// segment (some clients send a whole path), else `file`.
fn client_name(raw: Option<&str>) -> String {
    raw.and_then(|n| n.rsplit(['/', '\\']).next())
        .map(|n| {
            n.trim()
                .chars()
                .filter(|c| !c.is_control())
                .collect::<String>()
        })
        .filter(|n| !n.is_empty() && n != "." && n != ".." && n.len() <= 255)
        .unwrap_or_else(|| "file".into())
}

impl FileHost {
    /// Make the file host's bucket on first use.
    async fn ensure_bucket(&self) -> Result<(), GatewayError> {
        self.bucket_ready
            .get_or_try_init(|| async {
                self.storage
                    .backend
                    .ensure_bucket(&self.cfg.bucket)
                    .await
                    .map_err(crate::storage::backend_unavailable)
            })
            .await
            .map(|_| ())
    }

    /// `POST /api/upload` or `/upload` for `holder`.
    pub(super) async fn upload(
        &self,
        ex: &mut Exchange<'_>,
        holder: Holder,
    ) -> Result<(), GatewayError> {
        let declared = crate::reply::declared_length(ex.session);
        if declared.is_some_and(|n| n > holder.max_bytes.saturating_add(FORM_SLACK)) {
            return Err(too_large(holder.max_bytes));
        }
        let boundary = crate::storage::upload::form_boundary(ex.session)
            .await
            .ok_or_else(|| bad("Upload takes multipart/form-data with a `file` field."))?;
        self.ensure_bucket().await?;
        let writer = StagedWriter::for_account(
            &self.storage,
            holder.subject.clone(),
            holder.limit,
            self.cfg.bucket.clone(),
            LEDGER_BUCKET.to_string(),
        );
        let mut file = None;
        let read = read_form(&writer, ex.session, boundary, holder.max_bytes, &mut file).await;
        let file = match (read, file) {
            (Ok(()), Some(f)) => f,
            (result, file) => {
                if let Some(f) = file {
                    writer.discard(f.staged).await;
                }
                result?;
                return Err(GatewayError::new(
                    ErrorKind::MissingParameter,
                    "The form has no `file` field.",
                ));
            }
        };
        let name = file.name.clone();
        let content = self.keep(&writer, &holder, file).await?;
        self.reply(ex, &content, &name).await
    }

    /// Store (or find) the content under its lease and record the hold.
    async fn keep(
        &self,
        writer: &StagedWriter<'_>,
        holder: &Holder,
        file: Received,
    ) -> Result<HostedContent, GatewayError> {
        let state = self.storage.state.as_ref();
        let (lease, me) = match lock_content(state, &file.hash).await {
            Ok(l) => l,
            Err(e) => {
                writer.discard(file.staged).await;
                return Err(e);
            }
        };
        let kept = self.keep_locked(writer, holder, file).await;
        let _ = state.lease_drop(&lease, &me).await;
        kept
    }

    async fn keep_locked(
        &self,
        writer: &StagedWriter<'_>,
        holder: &Holder,
        file: Received,
    ) -> Result<HostedContent, GatewayError> {
        let state = &self.storage.state;
        let now = chrono::Utc::now().timestamp_millis();
        let known = match state.hosted_get(&file.hash).await {
            Ok(k) => k,
            Err(e) => {
                writer.discard(file.staged).await;
                return Err(unavailable(e));
            }
        };
        let content = match known {
            // Held by someone: its object is stored (holds come after the
            // write). Only the holder's charge is new.
            Some((content, holders)) if holders > 0 => {
                writer.discard(file.staged).await;
                self.charge(holder, &content).await?;
                content
            }
            // Unknown, or recorded by an upload that never got to hold it
            // (its object may be missing): write it, and be charged for it.
            known => {
                let content = match known {
                    Some((c, _)) => c,
                    None => {
                        let c = HostedContent {
                            hash: file.hash.clone(),
                            size: file.staged.size(),
                            content_type: file.staged.meta().content_type.clone(),
                            created_ms: now,
                        };
                        // Recorded before it is written: a crash in between
                        // leaves it unreferenced, for the collector.
                        if let Err(e) = state.hosted_put(c.clone(), now).await {
                            writer.discard(file.staged).await;
                            return Err(unavailable(e));
                        }
                        c
                    }
                };
                writer.store(&file.hash, file.staged).await?;
                content
            }
        };
        let hold = HostedRef {
            hash: content.hash.clone(),
            holder: holder.subject.clone(),
            file_name: file.name,
            uploaded_ms: now,
        };
        state.hosted_hold(hold).await.map_err(|e: StateError| {
            log::warn!(
                "file host: {} charged for {} but the hold was not recorded \
                 (reconcile drops the charge): {e}",
                holder.subject,
                content.hash
            );
            unavailable(e)
        })?;
        Ok(content)
    }

    /// Charge `holder` for content stored already: its slot's current size
    /// is credit, so a holder that has it pays nothing more.
    async fn charge(&self, holder: &Holder, content: &HostedContent) -> Result<(), GatewayError> {
        let budget = Budget {
            state: &self.storage.state,
            subject: &holder.subject,
            limit: holder.limit,
            slot: LedgerSlot::Object(ledger_name(&content.hash)),
        };
        let reservation = budget.reserve(content.size).await?;
        budget.settle(reservation, Some(content.size)).await;
        Ok(())
    }
}

/// Read the whole form; its one `file` streams through SHA-256 into
/// `out`, other fields are dropped.
async fn read_form(
    writer: &StagedWriter<'_>,
    session: &mut Session,
    boundary: String,
    max: u64,
    out: &mut Option<Received>,
) -> Result<(), GatewayError> {
    let malformed = |e: multer::Error| bad(format!("The form is malformed: {e}."));
    let mut form =
        crate::storage::upload::form(session, bytes::Bytes::new(), boundary, MAX_TEXT_FIELD);
    while let Some(mut field) = form.next_field().await.map_err(malformed)? {
        if field.name() != Some("file") {
            while field.chunk().await.map_err(malformed)?.is_some() {}
            continue;
        }
        if out.is_some() {
            return Err(bad(
                "The form has two `file` fields: send one file per upload (nothing was stored).",
            ));
        }
        let name = client_name(field.file_name());
        let meta = FileMeta {
            content_type: field
                .content_type()
                .map(|m| m.to_string())
                .unwrap_or_else(|| "application/octet-stream".into()),
            file_name: Some(name.clone()),
            detect: Some(Vec::new()),
        };
        let mut hasher = Sha256::new();
        let mut capped = Capped::new(&mut field, max);
        let mut staged = None;
        let sent = {
            let mut body = (&mut capped).inspect(|chunk| {
                if let Ok(b) = chunk {
                    hasher.update(b);
                }
            });
            writer.stage(None, meta, &mut body, &mut staged).await
        };
        let over = capped.over;
        if let Some(staged) = staged {
            *out = Some(Received {
                staged,
                hash: kikaku_filters::keys::hex(&hasher.finalize()),
                name,
            });
        }
        if over {
            return Err(too_large(max));
        }
        sent?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_are_one_segment() {
        assert_eq!(client_name(Some("image.png")), "image.png");
        assert_eq!(client_name(Some("C:\\Users\\me\\cat.jpg")), "cat.jpg");
        assert_eq!(client_name(Some("a/b/c.txt")), "c.txt");
        assert_eq!(client_name(Some("..")), "file");
        assert_eq!(client_name(Some("dir/")), "file");
        assert_eq!(client_name(None), "file");
        assert_eq!(client_name(Some("a\u{7}b")), "ab");
    }
}
