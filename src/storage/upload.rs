//! Streaming a client's upload to the backend under the byte quota.
//!
//! 1. Reserve the declared size in the ledger (the slot's current size is
//!    credit); refuse before reading a byte when it does not fit.
//! 2. Answer `100 Continue` if the client waits for it.
//! 3. Pump the body through its verifier into the backend request, which
//!    carries the declared length: more or fewer bytes, or a failed check,
//!    abort the backend request so it stores nothing.
//! 4. Backend said yes: commit the real size. Anything else: release.

use std::sync::Arc;

use crate::state::{LedgerSlot, Reservation, StateStore};
use bytes::Bytes;
use kikaku_filters::{ErrorKind, GatewayError};
use pingora::proxy::Session;

use super::backend::{BackendError, BackendRequest, PipeBody, S3Backend};
use super::payload::PayloadVerifier;

/// How many body pieces may wait between the client and the backend.
const PIPE_DEPTH: usize = 4;
/// The most a form's parser reads from the client in one go.
const FORM_READ_RUN: usize = 256 << 10;

/// Whose bytes, against which limit, where they are counted.
pub struct Budget<'a> {
    pub state: &'a Arc<dyn StateStore>,
    pub subject: &'a str,
    pub limit: u64,
    pub slot: LedgerSlot,
}

/// Why an upload did not reach the backend whole.
#[derive(Debug)]
pub enum UploadError {
    /// Refused before or while streaming: answer the client with this.
    Refused(GatewayError),
    /// The backend could not be reached or failed mid-way.
    Backend(BackendError),
}

impl From<GatewayError> for UploadError {
    fn from(e: GatewayError) -> Self {
        UploadError::Refused(e)
    }
}

pub fn quota_exceeded(declared: u64) -> GatewayError {
    GatewayError::new(
        ErrorKind::QuotaExceeded,
        format!("Storage quota exceeded: {declared} more bytes do not fit in this key's quota."),
    )
    .with_s3(403, "QuotaExceeded")
}

impl Budget<'_> {
    /// Hold `size` bytes, or refuse with 403 QuotaExceeded.
    pub async fn reserve(&self, size: u64) -> Result<Reservation, GatewayError> {
        self.state
            .storage_reserve(self.subject, &self.slot, size, self.limit)
            .await
            .map_err(|e| GatewayError::unavailable("The storage quota ledger", e))?
            .ok_or_else(|| quota_exceeded(size))
    }

    /// The write landed (`Some(size)`) or did not (`None`).
    pub async fn settle(&self, reservation: Reservation, landed: Option<u64>) {
        let Some(size) = landed else {
            if let Err(e) = self.state.storage_release(self.subject, reservation).await {
                // The reservation expires on its own (Redis) or with the process (embedded).
                log::warn!("releasing a storage reservation failed: {e}");
            }
            return;
        };
        // Durable before the client hears yes; retried because the bytes are
        // stored and must be counted.
        for attempt in 1..=5u32 {
            match self
                .state
                .storage_commit(self.subject, reservation, &self.slot, size)
                .await
            {
                Ok(()) => return,
                Err(e) => {
                    log::warn!("ledger commit failed (attempt {attempt}): {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
                }
            }
        }
        log::error!(
            "ledger commit of {size} bytes for {} failed; run `kikaku-edge storage reconcile`",
            self.subject
        );
    }
}

/// Reserve, stream, commit or release. Returns the backend's answer (any
/// status) once the body has gone through; the ledger already reflects it.
pub async fn stream_upload(
    backend: &S3Backend,
    budget: Budget<'_>,
    mut req: BackendRequest,
    session: &mut Session,
    mut verifier: PayloadVerifier,
) -> Result<reqwest::Response, UploadError> {
    let declared = verifier.declared();
    let reservation = budget.reserve(declared).await?;
    let outcome = pump_and_send(backend, &mut req, session, &mut verifier).await;
    let landed = matches!(&outcome, Ok(resp) if resp.status().is_success());
    budget.settle(reservation, landed.then_some(declared)).await;
    outcome
}

/// Run the backend call and the body pump side by side.
async fn pump_and_send(
    backend: &S3Backend,
    req: &mut BackendRequest,
    session: &mut Session,
    verifier: &mut PayloadVerifier,
) -> Result<reqwest::Response, UploadError> {
    let (tx, body) = body_pipe();
    req.headers
        .push(("content-length".into(), verifier.declared().to_string()));
    let outgoing = BackendRequest {
        method: req.method.clone(),
        bucket: req.bucket.clone(),
        key: req.key.clone(),
        query: std::mem::take(&mut req.query),
        headers: std::mem::take(&mut req.headers),
        body: None,
        pipe: Some(body),
        affinity: req.affinity.take(),
    };
    if expects_continue(session) {
        let _ = session.write_continue_response().await;
    }
    let send = backend.send(outgoing);
    let pump = async {
        let result = pump(session, verifier, &tx).await;
        if let Err(e) = &result {
            // Fail the backend request mid-body: it must not keep the object.
            let _ = tx.send(Err(std::io::Error::other(e.message.clone()))).await;
        }
        drop(tx);
        result
    };
    let (pumped, sent) = tokio::join!(pump, send);
    match (pumped, sent) {
        (Err(e), _) => Err(UploadError::Refused(e)),
        (Ok(()), Ok(resp)) => Ok(resp),
        (Ok(()), Err(e)) => Err(UploadError::Backend(e)),
    }
}

/// A backend request body fed through a channel of at most PIPE_DEPTH
/// pieces; an `Err` sent into it breaks the request off before its end.
pub fn body_pipe() -> (
    tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    PipeBody,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(PIPE_DEPTH);
    (tx, PipeBody::new(rx))
}

/// The client sent `Expect: 100-continue` and waits (curl: one second) for
/// `100 Continue` before its body.
pub fn expects_continue(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

/// Read the client's body, verify it, and hand the verified bytes on.
async fn pump(
    session: &mut Session,
    verifier: &mut PayloadVerifier,
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), GatewayError> {
    let bad = |msg: String| GatewayError::new(ErrorKind::BadRequest, msg);
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                let pieces = verifier.push(chunk).map_err(|e| payload_error(e.0))?;
                for p in pieces {
                    if tx.send(Ok(p)).await.is_err() {
                        // The backend answered (or failed) before taking the
                        // whole body; its answer tells the client why.
                        return Ok(());
                    }
                }
            }
            Ok(None) => {
                let last = verifier.finish().map_err(|e| payload_error(e.0))?;
                if let Some(p) = last {
                    let _ = tx.send(Ok(p)).await;
                }
                return Ok(());
            }
            Err(e) => return Err(bad(format!("The request body could not be read: {e}"))),
        }
    }
}

/// A body that failed verification, as S3 names it.
pub fn payload_error(msg: String) -> GatewayError {
    let code = if msg.contains("signature") {
        "SignatureDoesNotMatch"
    } else if msg.contains("x-amz-content-sha256") {
        "XAmzContentSHA256Mismatch"
    } else if msg == crate::storage::payload::INVALID_DIGEST {
        "InvalidDigest"
    } else if msg.contains("checksum") || msg == crate::storage::payload::BAD_DIGEST {
        "BadDigest"
    } else {
        "IncompleteBody"
    };
    let status = if code == "SignatureDoesNotMatch" {
        403
    } else {
        400
    };
    GatewayError::new(ErrorKind::BadRequest, msg).with_s3(status, code)
}

/// The boundary of a multipart/form-data request, once the client has
/// been told to go on (`100 Continue`, which curl waits a second for on any
/// form over 1 MiB); `None` when the body is not such a form.
pub async fn form_boundary(session: &mut Session) -> Option<String> {
    let boundary = session
        .req_header()
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok())?;
    if expects_continue(session) {
        let _ = session.write_continue_response().await;
    }
    Some(boundary)
}

/// The request body as a multipart form: text fields of at most `max_text`
/// bytes, the `file` field unbounded (its reader caps it). `head` is what
/// was already read of the body (may be empty).
pub fn form(
    session: &mut Session,
    head: Bytes,
    boundary: String,
    max_text: u64,
) -> multer::Multipart<'_> {
    let head =
        futures_util::stream::iter((!head.is_empty()).then_some(Ok::<Bytes, std::io::Error>(head)));
    // multer reads its source until it is not ready before it yields
    // anything: a client faster than the consumer would pile megabytes into
    // its buffer. A pause (one `Pending`) after every FORM_READ_RUN bytes
    // bounds that, and with it the size of the pieces it hands on.
    let rest = futures_util::stream::unfold((session, 0usize), |(s, run)| async move {
        let run = if run >= FORM_READ_RUN {
            tokio::task::yield_now().await;
            0
        } else {
            run
        };
        match s.read_request_body().await {
            Ok(Some(b)) => {
                let run = run + b.len();
                Some((Ok::<Bytes, std::io::Error>(b), (s, run)))
            }
            Ok(None) => None,
            Err(e) => Some((Err(std::io::Error::other(e.to_string())), (s, run))),
        }
    });
    let body = futures_util::StreamExt::chain(head, rest);
    let limits = multer::SizeLimit::new()
        .per_field(max_text)
        .for_field("file", u64::MAX);
    multer::Multipart::with_constraints(
        body,
        boundary,
        multer::Constraints::new().size_limit(limits),
    )
}
