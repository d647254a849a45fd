//! `stream: true`, as Ark answers it: the header only once the first image
//! is made (after `latency_ms`), then one `partial_succeeded` or
//! `partial_failed` event per image, `image_interval_ms` apart, then
//! `completed` with Ark's usage and `data: [DONE]`. A fault set for this
//! request strikes while the second image is made: Ark's error event (http500,
//! http503), a connection cut mid-body (reset), or silence (hang).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Frame;
use hyper::Response;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::api::{self, Plan};
use super::{Body, Fault, Simulator};
use crate::images::sse;

type Sent = Result<Frame<Bytes>, std::io::Error>;

pub async fn generate(sim: &Arc<Simulator>, plan: Plan, fault: Option<Fault>) -> Response<Body> {
    if sim.config.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(sim.config.latency_ms)).await;
    }
    let (tx, rx) = mpsc::channel::<Sent>(2);
    tokio::spawn(run(sim.clone(), plan, fault, tx));
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (frame, rx))
    });
    let body = http_body_util::BodyExt::boxed_unsync(http_body_util::StreamBody::new(frames));
    Response::builder()
        .header("content-type", sse::CONTENT_TYPE)
        .header("cache-control", "no-cache")
        .body(body)
        .unwrap_or_else(|_| Response::new(super::full(Bytes::new())))
}

/// Make the images and send their events; ends early when the gateway
/// leaves (a send fails).
async fn run(sim: Arc<Simulator>, plan: Plan, fault: Option<Fault>, tx: mpsc::Sender<Sent>) {
    let send = |bytes: Bytes| tx.send(Ok(Frame::data(bytes)));
    let interval = Duration::from_millis(
        sim.config
            .image_interval_ms
            .unwrap_or(sim.config.latency_ms),
    );
    let mut ok = 0u64;
    for i in 0..plan.count {
        if i > 0 && !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
        let item = api::image(&sim, &plan, i).await;
        let kind = if item.get("error").is_some() {
            sse::PARTIAL_FAILED
        } else {
            ok += 1;
            sse::PARTIAL_SUCCEEDED
        };
        let mut event = json!({"type": kind, "model": plan.model_id, "created": api::unix_now(), "image_index": i});
        if let (Some(e), Value::Object(fields)) = (event.as_object_mut(), item) {
            e.extend(fields);
        }
        if send(sse::frame(&event)).await.is_err() {
            return;
        }
        if let Some(fault) = fault {
            // While the next image is made: the first has reached the
            // wire by then (hyper would drop it with a reset right behind).
            tokio::time::sleep(interval.max(Duration::from_millis(20))).await;
            strike(fault, &tx).await;
            return;
        }
    }
    let completed = json!({"type": sse::COMPLETED, "model": plan.model_id,
        "created": api::unix_now(), "usage": api::usage(&plan, ok)});
    let mut tail = sse::frame(&completed).to_vec();
    tail.extend_from_slice(sse::DONE);
    let _ = send(Bytes::from(tail)).await;
}

/// A fault after the first image.
async fn strike(fault: Fault, tx: &mpsc::Sender<Sent>) {
    let error = |code: &str, message: &str| {
        let v = json!({"error": {"code": code, "message": message}});
        Ok(Frame::data(sse::frame(&v)))
    };
    let _ = match fault {
        Fault::Http500 => {
            tx.send(error(
                "InternalServiceError",
                "The service encountered an unexpected internal error.",
            ))
            .await
        }
        Fault::Http503 => {
            tx.send(error(
                "ServiceUnavailable",
                "The service is temporarily overloaded. Please retry later.",
            ))
            .await
        }
        // An error from the body makes hyper cut the connection.
        Fault::Reset => {
            tx.send(Err(std::io::ErrorKind::ConnectionReset.into()))
                .await
        }
        Fault::Hang => {
            tx.closed().await;
            Ok(())
        }
        Fault::None => Ok(()),
    };
}
