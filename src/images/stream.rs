//! `stream: true` (DESIGN §3): the answer is Ark's server-sent events,
//! written as they arrive. One `partial_succeeded` or `partial_failed` per
//! image with the gateway's own `image_index`, fallback images of a short
//! batch streamed as they finish with the indexes that follow, then
//! `completed` with the gateway's usage and `data: [DONE]`.
//!
//! The header goes out with the first event (as Ark sends its own), so a
//! request Ark refuses before any image is still answered as plain JSON
//! with its status. Billing counts the image events written to the
//! client; one that leaves mid-stream is billed for those, the rest of
//! its reservation is released and its log says where it left.

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;

use super::api::models::output_tokens;
use super::api::validate::Validated;
use super::ark_client::ArkFailure;
use super::response::{answer, Item, Passed};
use super::sse;
use super::{client_gone, single_body, upstream_error, HeldQuota, ImageGeneration, Outcome, Who};
use crate::reply::Exchange;
use crate::upstreams::Affinity;
use kikaku_filters::clock::now_ms;
use kikaku_filters::GatewayError;
use std::time::Instant;

/// What happened next, as the loop that writes the answer sees it.
enum Step {
    /// An image (or why it failed); `None` once every image is in.
    Item(Option<Item>),
    /// The upstream calls are over.
    Produced(Result<Passed, ArkFailure>),
    /// The client closed its connection (`false`: it sent a pipelined
    /// request instead, and is not watched any further).
    Gone(bool),
}

/// The answer so far.
#[derive(Default)]
struct Written {
    started: bool,
    /// Events written, the next `image_index`.
    events: u32,
    images: u64,
    tokens: u64,
    /// The images delivered, for the gallery.
    delivered: Vec<Item>,
}

fn now_s() -> u64 {
    now_ms() / 1000
}

impl ImageGeneration {
    pub(super) async fn stream(
        &self,
        ex: &mut Exchange<'_>,
        v: &Validated,
        held: HeldQuota,
        who: &Who<'_>,
    ) -> Result<(), GatewayError> {
        let (tx, mut rx) = mpsc::channel(4);
        let produce = self.produce(v, who.deadline, &who.aff, tx);
        tokio::pin!(produce);
        let mut produced = None;
        let mut watching = true;
        let mut out = Written::default();
        let left = loop {
            let step = tokio::select! {
                biased;
                item = rx.recv() => Step::Item(item),
                r = &mut produce, if produced.is_none() => Step::Produced(r),
                gone = client_gone(ex.session), if watching => Step::Gone(gone),
            };
            match step {
                Step::Item(Some(item)) => {
                    if let Err(e) = self.write_image(ex, v, &mut out, item).await {
                        log::debug!("image stream not delivered: {e}");
                        break true;
                    }
                }
                Step::Item(None) => break false,
                Step::Produced(r) => produced = Some(r),
                Step::Gone(gone) => {
                    if gone {
                        break true;
                    }
                    watching = false;
                }
            }
        };
        if left {
            let outcome = Outcome {
                status: 499,
                images: out.images,
                tokens: out.tokens,
                error: Some(format!(
                    "The client closed the stream after {} of {} image(s).",
                    out.events, v.expected_images
                )),
            };
            self.record(who, outcome, Some(held)).await;
            self.keep_delivered(v, out.delivered, who);
            return Ok(());
        }
        let passed = match produced {
            Some(Ok(p)) => p,
            // Nothing written yet: a plain error answer with its status.
            Some(Err(f)) if !out.started => return Err(upstream_error(f)),
            Some(Err(_)) | None => Passed::default(),
        };
        // Bill and record before `completed`, so a client that asks
        // /v1/usage or /v1/logs when its stream ends sees it.
        let outcome = Outcome::delivered(out.images, out.tokens);
        self.record(who, outcome, Some(held)).await;
        let mut completed = json!({
            "type": sse::COMPLETED,
            "model": v.model.upstream_id,
            "created": now_s(),
            "usage": {"generated_images": out.images, "output_tokens": out.tokens,
                "total_tokens": out.tokens},
        });
        passed.apply(&mut completed);
        let mut tail = sse::frame(&completed).to_vec();
        tail.extend_from_slice(sse::DONE);
        let sent = async {
            if !out.started {
                open(ex).await?;
            }
            ex.write_chunk(Bytes::from(tail), true).await
        };
        if let Err(e) = sent.await {
            // The images were delivered and stay billed; only the summary
            // did not arrive.
            log::debug!("image stream's completed event not delivered: {e}");
        }
        self.keep_delivered(v, out.delivered, who);
        Ok(())
    }

    /// Write one image's event (and the header before the first); the
    /// image counts as delivered once its event is written.
    async fn write_image(
        &self,
        ex: &mut Exchange<'_>,
        v: &Validated,
        out: &mut Written,
        item: Item,
    ) -> pingora::Result<()> {
        let kind = if item.size.is_some() {
            sse::PARTIAL_SUCCEEDED
        } else {
            sse::PARTIAL_FAILED
        };
        let head = json!({
            "type": kind,
            "model": v.model.upstream_id,
            "created": now_s(),
            "image_index": out.events,
        });
        // The item's fields (a b64_json image is megabytes) are written
        // after the head's, not copied into it: the gallery keeps the item.
        let frame = sse::frame_with(&head, &item.value);
        if !out.started {
            open(ex).await?;
            out.started = true;
        }
        ex.write_chunk(frame, false).await?;
        out.events += 1;
        if let Some((w, h)) = item.size {
            out.images += 1;
            out.tokens += output_tokens(w, h);
            out.delivered.push(item);
        }
        Ok(())
    }

    fn keep_delivered(&self, v: &Validated, delivered: Vec<Item>, who: &Who<'_>) {
        if !delivered.is_empty() {
            self.keep(&answer(&v.model.upstream_id, now_s(), delivered).body, who);
        }
    }

    /// The upstream side: Ark's stream, its events as items on `tx`, then
    /// a short batch's fallback calls in parallel, each image sent as its
    /// call finishes. `Err` only when Ark failed before any image; after
    /// one, a broken stream leaves the batch short and fallbacks fill it.
    async fn produce(
        &self,
        v: &Validated,
        deadline: Instant,
        aff: &Affinity<'_>,
        tx: mpsc::Sender<Item>,
    ) -> Result<Passed, ArkFailure> {
        let expected = v.expected_images as usize;
        let mut passed = Passed::default();
        let mut sent = 0;
        let mut upstream =
            tokio::time::timeout_at(deadline.into(), self.ark.open(&v.ark_body, aff))
                .await
                .unwrap_or(Err(ArkFailure::Timeout))?;
        let broke = loop {
            let next = tokio::time::timeout_at(deadline.into(), upstream.next()).await;
            match next.unwrap_or(Err(ArkFailure::Timeout)) {
                Ok(Some(event)) => match event["type"].as_str() {
                    Some(sse::PARTIAL_SUCCEEDED | sse::PARTIAL_FAILED) if sent < expected => {
                        sent += 1;
                        if tx.send(Item::from_ark(event)).await.is_err() {
                            return Ok(passed);
                        }
                    }
                    Some(sse::COMPLETED) => passed = Passed::from_ark(&event),
                    _ => {}
                },
                Ok(None) => break None,
                Err(f) => break Some(f),
            }
        };
        drop(upstream);
        match broke {
            Some(f) if sent == 0 => return Err(f),
            Some(f) => log::warn!("image stream broke after {sent} image(s): {f:?}"),
            None => {}
        }
        if v.batch && sent < expected {
            let single = single_body(v);
            let mut calls: FuturesUnordered<_> = (sent..expected)
                .map(|_| self.fallback(&single, deadline, aff))
                .collect();
            while let Some((item, tools)) = calls.next().await {
                passed.add_tools(tools);
                if tx.send(item).await.is_err() {
                    break;
                }
            }
        }
        Ok(passed)
    }
}

/// The stream's header, through the response filters.
async fn open(ex: &mut Exchange<'_>) -> pingora::Result<()> {
    let headers = vec![
        ("content-type", sse::CONTENT_TYPE.to_string()),
        ("cache-control", "no-store".to_string()),
        // Proxies in front of the gateway pass each event on at once.
        ("x-accel-buffering", "no".to_string()),
    ];
    ex.open_stream(200, headers).await
}
