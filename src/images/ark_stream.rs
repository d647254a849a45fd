//! Ark's answer to `stream: true`, read as it arrives: one event at a
//! time, each Ark's JSON (`image_generation.partial_succeeded`,
//! `partial_failed`, `completed`). A 200 whose body is Ark's plain JSON
//! answer (Ark sends one when it does not stream) is turned into the same
//! events, so the handler reads one shape.

use std::collections::VecDeque;

use bytes::BytesMut;
use pingora::upstreams::peer::HttpPeer;
use serde_json::{json, Value};

use super::ark_client::{failure, ArkClient, ArkFailure, MAX_ANSWER_BYTES};
use super::ark_session::ArkSession;
use super::ark_tries::Started;
use super::sse::{self, Parser, SseError};
use crate::upstreams::{Affinity, Attempt};

/// The largest single event accepted (one 4K PNG as base64 fits several
/// times over).
const MAX_EVENT_BYTES: usize = 128 << 20;

pub struct ArkStream<'a> {
    client: &'a ArkClient,
    peer: HttpPeer,
    /// The endpoint's place in flight, held while the stream is read.
    _attempt: Attempt,
    /// `None` once the answer has been read to its end.
    session: Option<ArkSession>,
    parser: Parser,
    /// Events of a plain JSON answer, or `None` while reading a stream.
    whole: Option<VecDeque<Value>>,
    /// Whether the body's first bytes have shown which of the two it is.
    sniffed: bool,
    completed: bool,
}

impl ArkClient {
    /// Send `body` (with `stream: true`) and return the answer once its
    /// header says 200; any other status is read whole and returned as
    /// Ark's error.
    pub async fn open(
        &self,
        body: &Value,
        aff: &Affinity<'_>,
    ) -> Result<ArkStream<'_>, ArkFailure> {
        let payload = serde_json::to_vec(body).map_err(|e| ArkFailure::BadBody(e.to_string()))?;
        let Started {
            session: mut s,
            peer,
            attempt,
        } = self.start_tried(aff, &payload).await?;
        let status = s.status();
        let mut stream = ArkStream {
            client: self,
            peer,
            _attempt: attempt,
            session: None,
            parser: Parser::new(MAX_EVENT_BYTES),
            whole: None,
            sniffed: false,
            completed: false,
        };
        if status != 200 {
            let mut body = BytesMut::new();
            while let Some(chunk) = s.read_body().await.map_err(|e| failure(&e))? {
                if body.len() + chunk.len() > 1 << 20 {
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            return Err(ArkFailure::from_error_body(status, &body));
        }
        stream.session = Some(s);
        Ok(stream)
    }
}

impl ArkStream<'_> {
    /// The next event's JSON; `Ok(None)` after `completed` and the end of
    /// the answer. A stream that ends before `completed`, or that carries
    /// Ark's error envelope, is an `Err`.
    pub async fn next(&mut self) -> Result<Option<Value>, ArkFailure> {
        loop {
            if let Some(queue) = &mut self.whole {
                return Ok(queue.pop_front());
            }
            match self.parser.next_event() {
                Ok(Some(e)) if e.is_done() => {
                    self.finish().await;
                    return self.end();
                }
                Ok(Some(e)) => {
                    if let Some(v) = self.event(&e.data)? {
                        return Ok(Some(v));
                    }
                    continue;
                }
                Ok(None) => {}
                Err(SseError::TooLarge(n)) => {
                    return Err(ArkFailure::BadBody(format!(
                        "an event larger than {n} bytes"
                    )))
                }
                Err(SseError::NotText) => {
                    return Err(ArkFailure::BadBody("an event that is not UTF-8".into()))
                }
            }
            let Some(s) = self.session.as_mut() else {
                return self.end();
            };
            match s.read_body().await.map_err(|e| failure(&e))? {
                Some(chunk) if !self.sniffed && chunk.iter().all(u8::is_ascii_whitespace) => {
                    self.parser.feed(&chunk)
                }
                Some(chunk) if !self.sniffed => {
                    self.sniffed = true;
                    let first = chunk.iter().find(|b| !b.is_ascii_whitespace());
                    let chunk = chunk.to_vec();
                    if first == Some(&b'{') {
                        self.read_whole(chunk).await?;
                    } else {
                        self.parser.feed(&chunk);
                    }
                }
                Some(chunk) => self.parser.feed(&chunk),
                None => {
                    self.session = None;
                    return self.end();
                }
            }
        }
    }

    /// Usage and tool usage are read off `completed` by the caller; here
    /// an event is checked for Ark's error envelope and remembered as the
    /// end when it is `completed`.
    fn event(&mut self, data: &str) -> Result<Option<Value>, ArkFailure> {
        let v: Value = serde_json::from_str(data)
            .map_err(|e| ArkFailure::BadBody(format!("an event that is not JSON: {e}")))?;
        if let Some(err) = v.get("error").filter(|_| v.get("type").is_none()) {
            return Err(ArkFailure::MidStream {
                code: err["code"].as_str().unwrap_or("UpstreamError").into(),
                message: err["message"].as_str().unwrap_or_default().into(),
            });
        }
        if v["type"] == sse::COMPLETED {
            self.completed = true;
        }
        Ok(Some(v))
    }

    /// What the end of the answer means: done after `completed`, torn
    /// before it.
    fn end(&self) -> Result<Option<Value>, ArkFailure> {
        if self.completed {
            Ok(None)
        } else {
            Err(ArkFailure::MidStream {
                code: "UpstreamError".into(),
                message: "the upstream's stream ended before its completed event".into(),
            })
        }
    }

    /// After `[DONE]`: read to the end so the connection can be reused.
    async fn finish(&mut self) {
        if let Some(mut s) = self.session.take() {
            while let Ok(Some(_)) = s.read_body().await {}
            self.client.release(s, &self.peer).await;
        }
    }

    /// A plain JSON answer: read it whole and queue it as events.
    async fn read_whole(&mut self, mut body: Vec<u8>) -> Result<(), ArkFailure> {
        if let Some(mut s) = self.session.take() {
            while let Some(chunk) = s.read_body().await.map_err(|e| failure(&e))? {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(ArkFailure::BadBody("answer larger than 512 MiB".into()));
                }
                body.extend_from_slice(&chunk);
            }
            self.client.release(s, &self.peer).await;
        }
        let answer: Value =
            serde_json::from_slice(&body).map_err(|e| ArkFailure::BadBody(e.to_string()))?;
        let events = as_events(answer)?;
        self.completed = true;
        self.whole = Some(events);
        Ok(())
    }
}

/// Ark's non-streamed answer as the events a stream would have carried.
fn as_events(mut answer: Value) -> Result<VecDeque<Value>, ArkFailure> {
    let Value::Array(data) = answer["data"].take() else {
        return Err(ArkFailure::BadBody("no data array".into()));
    };
    let (model, created) = (answer["model"].clone(), answer["created"].clone());
    let mut events: VecDeque<Value> = data
        .into_iter()
        .enumerate()
        .map(|(i, mut item)| {
            let kind = if item.get("error").is_some() {
                sse::PARTIAL_FAILED
            } else {
                sse::PARTIAL_SUCCEEDED
            };
            if let Some(o) = item.as_object_mut() {
                o.insert("type".into(), json!(kind));
                o.insert("model".into(), model.clone());
                o.insert("created".into(), created.clone());
                o.insert("image_index".into(), json!(i));
            }
            item
        })
        .collect();
    let completed = json!({"type": sse::COMPLETED, "model": model, "created": created,
        "usage": answer["usage"].take()});
    events.push_back(completed);
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_answer_becomes_the_events_a_stream_carries() {
        let answer = json!({"model": "m", "created": 5,
            "data": [{"url": "u", "size": "1x1"}, {"error": {"code": "c", "message": "x"}}],
            "usage": {"generated_images": 1, "input_images": 2, "tool_usage": {"web_search": 1}}});
        let ev: Vec<Value> = as_events(answer).unwrap().into();
        assert_eq!(ev.len(), 3);
        assert_eq!(
            ev[0],
            json!({"type": sse::PARTIAL_SUCCEEDED, "model": "m", "created": 5,
                "image_index": 0, "url": "u", "size": "1x1"})
        );
        assert_eq!(ev[1]["type"], sse::PARTIAL_FAILED);
        assert_eq!(
            (ev[1]["image_index"].as_u64(), &ev[1]["error"]["code"]),
            (Some(1), &json!("c"))
        );
        assert_eq!(ev[2]["usage"]["input_images"], 2);
        assert_eq!(ev[2]["usage"]["tool_usage"]["web_search"], 1);
        assert!(as_events(json!({"error": {}})).is_err());
    }
}
