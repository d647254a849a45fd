//! `POST /s3/upload` of a file whose size is known: one streamed PutObject.
//!
//! A form that names the file (`key`) before sending it, carries a
//! `Content-Length` and ends with the file tells the file's size before its
//! first byte: the body's length less everything before the file's data and
//! less the form's closing `\r\n--boundary--\r\n`. The portal and Python
//! `requests` send forms laid out so. Such a file of at least one part
//! (8 MiB) goes up as one PutObject of that length while it streams, straight
//! under its name, instead of as a multipart upload of parts held in memory.
//!
//! The file's last piece is held back until the form has ended as
//! predicted. A file that turns out longer or shorter (a field after it, a
//! closing other than the standard one) breaks the PUT off before its last
//! byte: nothing is stored, nothing stays charged, and the client is told
//! how to send the form.

use bytes::{Bytes, BytesMut};
use kikaku_filters::{ErrorKind, GatewayError};
use pingora::proxy::Session;

use super::backend::BackendRequest;
use super::staged::{FileMeta, Staged, StagedWriter, PART_SIZE};
use super::{backend_unavailable, Storage};
use crate::state::LedgerSlot;

/// How much of a form is read before it is parsed, looking for the `file`
/// field's start.
const READ_AHEAD: usize = 64 << 10;
/// The most one PutObject takes (S3's limit); larger files go multipart.
const MAX_PUT: u64 = 5 << 30;

/// The form's first bytes, read before it is parsed, and the file's size
/// when the form tells it.
pub struct Head {
    pub bytes: Bytes,
    pub file_size: Option<u64>,
}

/// Read up to [`READ_AHEAD`] bytes of the form, until the `file` field's
/// data starts; the parser is then given these bytes first.
pub async fn read_head(session: &mut Session, boundary: &str) -> Result<Head, GatewayError> {
    let declared = crate::reply::declared_length(session);
    let mut buf = BytesMut::new();
    let file_at = loop {
        match file_data_at(&buf, boundary) {
            Scan::File(at) => break at,
            Scan::NoPlainLayout => break None,
            Scan::More if buf.len() >= READ_AHEAD => break None,
            Scan::More => {}
        }
        match session.read_request_body().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) => break None,
            Err(e) => {
                return Err(GatewayError::new(
                    ErrorKind::BadRequest,
                    format!("The request body could not be read: {e}"),
                ))
            }
        }
    };
    let file_size = match (declared, file_at) {
        (Some(total), Some(at)) => {
            let closing = boundary.len() as u64 + 8;
            total
                .checked_sub(at as u64 + closing)
                .filter(|size| (PART_SIZE as u64..=MAX_PUT).contains(size))
        }
        _ => None,
    };
    Ok(Head {
        bytes: buf.freeze(),
        file_size,
    })
}

/// What the first bytes of a form show.
#[derive(Debug, PartialEq)]
pub enum Scan {
    /// The `file` field's data starts here (`Some`) when a `key` field
    /// came before it; `None` when it came first.
    File(Option<usize>),
    /// Not read far enough yet.
    More,
    /// A layout this scan does not read (a quoted name missing, a part
    /// without a Content-Disposition): the form is parsed as usual.
    NoPlainLayout,
}

/// Where the `file` field's data starts in the first bytes of a form with
/// this boundary (public for the `multipart_form` fuzz target).
pub fn file_data_at(head: &[u8], boundary: &str) -> Scan {
    let delim = format!("--{boundary}");
    let Some(mut pos) = find(head, delim.as_bytes(), 0) else {
        return Scan::More;
    };
    let mut seen_key = false;
    loop {
        let after = pos + delim.len();
        match head.get(after..after + 2) {
            None => return Scan::More,
            Some(b"\r\n") => {}
            Some(_) => return Scan::NoPlainLayout,
        }
        let Some(headers_end) = find(head, b"\r\n\r\n", after) else {
            return Scan::More;
        };
        let headers = &head[(after + 2).min(headers_end)..headers_end];
        let Some(name) = field_name(headers) else {
            return Scan::NoPlainLayout;
        };
        let data = headers_end + 4;
        match name {
            "file" => return Scan::File(seen_key.then_some(data)),
            "key" => seen_key = true,
            _ => {}
        }
        let mut next_delim = b"\r\n".to_vec();
        next_delim.extend_from_slice(delim.as_bytes());
        let Some(next) = find(head, &next_delim, data) else {
            return Scan::More;
        };
        pos = next + 2;
    }
}

/// The quoted `name` of a part's Content-Disposition: form-data, read only
/// where the form parser (multer) cannot read another: one such header (the
/// parser keeps the last of several), `name="..."` as its first parameter
/// (the parser takes the first `name` it meets, even inside another
/// parameter's value) and no escapes. Browsers, curl and Python `requests`
/// write it so; anything else is left to the parser (`NoPlainLayout`). The
/// `multipart_form` fuzz target found a second header, a broken first
/// `name` followed by `name="file"`, and a bare LF splitting one header
/// line in two, where a laxer reading disagreed.
fn field_name(headers: &[u8]) -> Option<&str> {
    // The parser ends a header line at a bare LF too: read only blocks
    // whose every CR and LF make a CRLF.
    let bare = headers.iter().enumerate().any(|(i, &b)| {
        (b == b'\n' && (i == 0 || headers[i - 1] != b'\r'))
            || (b == b'\r' && headers.get(i + 1) != Some(&b'\n'))
    });
    if bare {
        return None;
    }
    let headers = std::str::from_utf8(headers).ok()?;
    let mut dispositions = headers.split("\r\n").filter_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-disposition")
            .then_some(value)
    });
    let value = dispositions.next()?;
    if dispositions.next().is_some() {
        return None;
    }
    let (kind, rest) = value.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return None;
    }
    let quoted = rest
        .trim_start_matches(|c: char| c.is_ascii_whitespace())
        .strip_prefix("name=\"")?;
    let (inner, _) = quoted.split_once('"')?;
    (!inner.contains('\\')).then_some(inner)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

fn mismatch() -> GatewayError {
    GatewayError::new(
        ErrorKind::BadRequest,
        "The form did not end with the file where its Content-Length said it would \
         (nothing was stored): when `key` comes before `file`, `file` must be the \
         form's last field, closed by the standard `--boundary--`.",
    )
}

fn malformed(e: multer::Error) -> GatewayError {
    GatewayError::new(ErrorKind::BadRequest, format!("the form is malformed: {e}"))
}

impl StagedWriter<'_> {
    /// Stream `field`, the form's last field of `size` bytes, as one
    /// PutObject under `name` (a checked key), charged as that object; the
    /// rest of `form` must be its closing. On any failure nothing is stored.
    pub async fn put_known(
        &self,
        name: &str,
        meta: FileMeta,
        field: multer::Field<'_>,
        form: &mut multer::Multipart<'_>,
        size: u64,
    ) -> Result<Staged, GatewayError> {
        let ledger_name = Storage::ledger_name(&self.ledger_bucket, name);
        let budget = self.budget(LedgerSlot::Object(ledger_name));
        let reservation = budget.reserve(size).await?;
        let (tx, body) = super::upload::body_pipe();
        let mut req = BackendRequest::object(http::Method::PUT, &self.bucket, name)
            .with_header("content-type", &meta.content_type)
            .with_header("content-length", &size.to_string());
        req.pipe = Some(body);
        let send = self.storage.backend.call(req);
        let feed = async {
            let fed = feed(field, form, &tx, size).await;
            if fed.is_err() {
                // Break the PUT off before its last byte: it stores nothing.
                let _ = tx.send(Err(std::io::Error::other("form rejected"))).await;
            }
            drop(tx);
            fed
        };
        let (fed, sent) = tokio::join!(feed, send);
        let landed = fed.is_ok() && sent.is_ok();
        budget.settle(reservation, landed.then_some(size)).await;
        fed?;
        sent.map_err(backend_unavailable)?;
        Ok(Staged::Stored { size, meta })
    }
}

/// Hand the field's bytes on, holding the last piece back until the field
/// has `size` bytes and the form has ended after it.
async fn feed(
    mut field: multer::Field<'_>,
    form: &mut multer::Multipart<'_>,
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    size: u64,
) -> Result<(), GatewayError> {
    let mut held: Option<Bytes> = None;
    let mut total = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(malformed)? {
        total += chunk.len() as u64;
        if total > size {
            return Err(mismatch());
        }
        if let Some(piece) = held.replace(chunk) {
            if tx.send(Ok(piece)).await.is_err() {
                // The backend answered before the whole body: its answer says why.
                return Ok(());
            }
        }
    }
    drop(field);
    if total != size || form.next_field().await.map_err(malformed)?.is_some() {
        return Err(mismatch());
    }
    if let Some(piece) = held {
        let _ = tx.send(Ok(piece)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: &str = "XyZ";

    fn part(name: &str, body: &str) -> String {
        format!("--{B}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{body}\r\n")
    }

    #[test]
    fn the_file_after_its_key_starts_after_its_headers() {
        let head = format!(
            "{}--{B}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\
             Content-Type: application/octet-stream\r\n\r\nDATA",
            part("key", "a/b.bin")
        );
        let at = head.find("DATA").unwrap();
        assert_eq!(file_data_at(head.as_bytes(), B), Scan::File(Some(at)));
    }

    #[test]
    fn a_file_before_its_key_has_no_known_start() {
        let head = format!(
            "--{B}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"key\"\r\n\r\nDATA"
        );
        assert_eq!(file_data_at(head.as_bytes(), B), Scan::File(None));
    }

    #[test]
    fn a_head_cut_short_asks_for_more() {
        let whole = format!(
            "{}--{B}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n",
            part("key", "k")
        );
        for cut in 0..whole.len() {
            assert_eq!(
                file_data_at(&whole.as_bytes()[..cut], B),
                Scan::More,
                "{cut}"
            );
        }
        assert_eq!(
            file_data_at(whole.as_bytes(), B),
            Scan::File(Some(whole.len()))
        );
    }

    #[test]
    fn other_fields_and_a_preamble_are_stepped_over() {
        let head = format!(
            "preamble\r\n{}{}--{B}\r\ncontent-disposition: form-data; name=\"file\"\r\n\r\nX",
            part("note", "XyZ is named, not a delimiter"),
            part("key", "k")
        );
        assert_eq!(
            file_data_at(head.as_bytes(), B),
            Scan::File(Some(head.len() - 1))
        );
    }

    #[test]
    fn unquoted_or_missing_names_are_left_to_the_parser() {
        let unquoted = format!("--{B}\r\nContent-Disposition: form-data; name=key\r\n\r\nk\r\n");
        assert_eq!(file_data_at(unquoted.as_bytes(), B), Scan::NoPlainLayout);
        let none = format!("--{B}\r\nContent-Type: text/plain\r\n\r\nk\r\n");
        assert_eq!(file_data_at(none.as_bytes(), B), Scan::NoPlainLayout);
        assert_eq!(
            field_name(b"Content-Disposition: form-data; filename=\"x\""),
            None
        );
    }

    /// Found by the `multipart_form` fuzz target: a broken first `name`
    /// followed by a second (the form parser names the part
    /// `keosition: form-data; name=`), and two Content-Disposition headers
    /// (the parser keeps the last). The scan reads names as the parser does,
    /// or not at all.
    #[test]
    fn only_a_plain_first_name_counts() {
        for header in [
            "Content-Disposition: form-data; name=key; name=\"file\"",
            "Content-Disposition: form-data; filename=\"k\"; name=\"file\"",
            "Content-Disposition: form-data; name=\"fi\\\"le\"",
            "Content-Disposition: form-data;on: form-da-ta; name=\"file\";pnnbin\r\nContent-Disposition: form-datA; name=\"key&\"",
            "Content-Disposition: form-data; name=\"file\"\r\nContent-Disposition: form-data; name=\"key\"",
            // A bare LF: the parser sees two headers here and keeps the last.
            "Content-Disposition: form-data; name=\"fi\nContent-Disposition: form-data; name=\"file\"",
            "Content-Disposition: form-data; name=\"file\"\rX: y",
        ] {
            assert_eq!(field_name(header.as_bytes()), None, "{header}");
        }
        for (header, name) in [
            ("Content-Disposition: form-data; name=\"file\"; filename=\"a;b.bin\"", "file"),
            ("content-disposition: form-data;name=\"key\"", "key"),
            ("Content-Disposition: form-data; name=\"a;b\"", "a;b"),
            // What the parser names it too: up to the next quote.
            (
                "Content-Disposition: form-data; name=\"keosition: form-data; name=\"file\";posary7M",
                "keosition: form-data; name=",
            ),
        ] {
            assert_eq!(field_name(header.as_bytes()), Some(name), "{header}");
        }
    }
}
