//! Server-sent events as Ark streams them (`stream: true`): each frame an
//! `event:` line naming the type and a `data:` line of JSON whose `type` is
//! the same, a blank line after it, and `data: [DONE]` at the end. Written
//! by the gateway and the simulator, read by the gateway from Ark.

use bytes::{Bytes, BytesMut};
use serde_json::Value;

pub const PARTIAL_SUCCEEDED: &str = "image_generation.partial_succeeded";
pub const PARTIAL_FAILED: &str = "image_generation.partial_failed";
pub const COMPLETED: &str = "image_generation.completed";

/// The content type of a stream.
pub const CONTENT_TYPE: &str = "text/event-stream";

/// The last frame.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// One event frame: `event: <type>` then `data: <json>`. `data` carries
/// its `type` itself; JSON never holds a raw newline, so one line suffices.
pub fn frame(data: &Value) -> Bytes {
    let json = serde_json::to_vec(data).unwrap_or_default();
    assemble(data["type"].as_str(), &[&json])
}

/// [`frame`] of `head` with the fields of `more` after its own (both JSON
/// objects; `more` may be empty), written without merging them first.
pub fn frame_with(head: &Value, more: &Value) -> Bytes {
    let head_json = serde_json::to_vec(head).unwrap_or_default();
    let more_json = serde_json::to_vec(more).unwrap_or_default();
    let joinable = head_json.len() > 2
        && head_json.ends_with(b"}")
        && more_json.len() > 2
        && more_json.starts_with(b"{");
    if !joinable {
        return assemble(head["type"].as_str(), &[&head_json]);
    }
    let parts: [&[u8]; 3] = [&head_json[..head_json.len() - 1], b",", &more_json[1..]];
    assemble(head["type"].as_str(), &parts)
}

/// `event: <kind>` (when there is one), then `data: ` and the JSON in parts.
fn assemble(kind: Option<&str>, json: &[&[u8]]) -> Bytes {
    let len: usize = json.iter().map(|p| p.len()).sum();
    let mut out = BytesMut::with_capacity(len + 64);
    if let Some(kind) = kind {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"data: ");
    for part in json {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

/// One frame as read: its `event:` name (if any) and its `data:` lines
/// joined by newlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event: Option<String>,
    pub data: String,
}

impl Event {
    /// `data: [DONE]`.
    pub fn is_done(&self) -> bool {
        self.data.trim() == "[DONE]"
    }
}

/// Why a stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// One frame larger than the bound.
    TooLarge(usize),
    /// A frame that is not UTF-8.
    NotText,
}

/// An incremental reader: bytes in as they arrive, whole frames out.
/// Lines end in LF, CRLF or CR (the SSE grammar); comments (`:`) and
/// unknown fields are skipped; a frame ends at a blank line.
pub struct Parser {
    buf: BytesMut,
    /// Where the search for the next blank line resumes.
    scanned: usize,
    max_frame: usize,
}

impl Parser {
    pub fn new(max_frame: usize) -> Parser {
        Parser {
            buf: BytesMut::new(),
            scanned: 0,
            max_frame,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `Ok(None)` until one has arrived.
    pub fn next_event(&mut self) -> Result<Option<Event>, SseError> {
        loop {
            let Some((end, next)) = blank_line(&self.buf, self.scanned) else {
                self.scanned = self.buf.len().saturating_sub(3);
                if self.buf.len() > self.max_frame {
                    return Err(SseError::TooLarge(self.max_frame));
                }
                return Ok(None);
            };
            let raw = self.buf.split_to(next);
            self.scanned = 0;
            let text = std::str::from_utf8(&raw[..end]).map_err(|_| SseError::NotText)?;
            if let Some(event) = parse_frame(text) {
                return Ok(Some(event));
            }
        }
    }

    /// Bytes received that do not yet make a frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// The end of the first frame at or after `from`: the offset where its
/// terminating blank line starts, and where the next frame begins.
fn blank_line(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i < buf.len() {
        let eol = match buf[i] {
            b'\n' => 1,
            b'\r' if buf.get(i + 1) == Some(&b'\n') => 2,
            b'\r' if i + 1 < buf.len() => 1,
            // A lone CR at the end: wait for what follows it.
            b'\r' => return None,
            _ => {
                i += 1;
                continue;
            }
        };
        let j = i + eol;
        match buf.get(j) {
            Some(b'\n') => return Some((i, j + 1)),
            Some(b'\r') if buf.get(j + 1) == Some(&b'\n') => return Some((i, j + 2)),
            Some(b'\r') if j + 1 < buf.len() => return Some((i, j + 1)),
            Some(b'\r') | None => return None,
            Some(_) => i = j,
        }
    }
    None
}

/// A frame's fields; `None` for a frame with no data (comments only).
fn parse_frame(text: &str) -> Option<Event> {
    let (mut event, mut data, mut any_data) = (None, String::new(), false);
    for line in text.split(['\n', '\r']).filter(|l| !l.is_empty()) {
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => event = Some(value.to_string()),
            "data" => {
                if any_data {
                    data.push('\n');
                }
                data.push_str(value);
                any_data = true;
            }
            _ => {}
        }
    }
    any_data.then_some(Event { event, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all(p: &mut Parser) -> Vec<Event> {
        std::iter::from_fn(|| p.next_event().unwrap()).collect()
    }

    #[test]
    fn frames_round_trip_whatever_the_chunking() {
        let events = [
            json!({"type": PARTIAL_SUCCEEDED, "image_index": 0, "url": "http://x/1.jpeg"}),
            json!({"type": PARTIAL_FAILED, "image_index": 1, "error": {"code": "c", "message": "a\nb"}}),
            json!({"type": COMPLETED, "usage": {"generated_images": 1}}),
        ];
        let mut wire: Vec<u8> = events.iter().flat_map(|e| frame(e).to_vec()).collect();
        wire.extend_from_slice(DONE);
        for step in [1, 2, 7, wire.len()] {
            let mut p = Parser::new(1 << 20);
            let mut got = Vec::new();
            for chunk in wire.chunks(step) {
                p.feed(chunk);
                got.extend(all(&mut p));
            }
            assert_eq!(got.len(), 4, "chunks of {step}");
            for (e, want) in got.iter().zip(&events) {
                assert_eq!(e.event.as_deref(), want["type"].as_str());
                assert_eq!(&serde_json::from_str::<Value>(&e.data).unwrap(), want);
            }
            assert!(got[3].is_done() && got[3].event.is_none());
            assert_eq!(p.pending(), 0);
        }
    }

    #[test]
    fn a_frame_with_more_fields_is_the_merged_object() {
        let head = json!({"type": PARTIAL_SUCCEEDED, "image_index": 2});
        let more = json!({"url": "http://x/1.jpeg", "size": "1x1"});
        let mut p = Parser::new(1 << 20);
        p.feed(&frame_with(&head, &more));
        let e = p.next_event().unwrap().unwrap();
        assert_eq!(e.event.as_deref(), Some(PARTIAL_SUCCEEDED));
        let v: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(
            v,
            json!({"type": PARTIAL_SUCCEEDED, "image_index": 2, "url": "http://x/1.jpeg", "size": "1x1"})
        );
        assert_eq!(frame_with(&head, &json!({})), frame(&head));
    }

    #[test]
    fn crlf_comments_and_multiline_data() {
        let mut p = Parser::new(1 << 20);
        p.feed(b": keepalive\r\n\r\nevent:x\r\ndata: {\r\ndata:  \"a\": 1}\r\nid: 7\r\n\r\ndata: [DONE]\r\rdata: x\n\n");
        let got = all(&mut p);
        assert_eq!(
            got[0],
            Event {
                event: Some("x".into()),
                data: "{\n \"a\": 1}".into()
            }
        );
        assert!(got[1].is_done());
        assert_eq!(got[2].data, "x");
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn a_partial_frame_waits_and_an_oversized_one_is_refused() {
        let mut p = Parser::new(16);
        p.feed(b"data: 1234");
        assert_eq!(p.next_event(), Ok(None));
        p.feed(b"\n");
        assert_eq!(p.next_event(), Ok(None));
        p.feed(b"\n");
        assert_eq!(p.next_event().unwrap().unwrap().data, "1234");
        p.feed(&[b'a'; 17]);
        assert_eq!(p.next_event(), Err(SseError::TooLarge(16)));
        let mut p = Parser::new(64);
        p.feed(b"data: \xff\n\n");
        assert_eq!(p.next_event(), Err(SseError::NotText));
    }
}
