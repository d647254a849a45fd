//! `conf/kikaku.yaml` as shipped: the seed's eight curl examples work out of
//! the box with the demo key, offline, against the in-process simulator.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn the_eight_examples_work_on_the_shipped_config() {
    let (public, admin, sim) = (free_port(), free_port(), free_port());
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/kikaku.yaml"),
        &[
            ("KIKAKU_HTTP_ADDR", format!("127.0.0.1:{public}")),
            ("KIKAKU_ADMIN_ADDR", format!("127.0.0.1:{admin}")),
            ("KIKAKU_SIM_ARK_ADDR", format!("127.0.0.1:{sim}")),
            ("KIKAKU_DATA_DIR", data.path().display().to_string()),
            ("KIKAKU_ACCESS_LOG", "off".into()),
        ],
        public,
        admin,
    );
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", sim)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let examples: [(Value, usize); 8] = [
        (
            json!({"model":"seedream-4.5","prompt":"Vibrant close-up editorial portrait, model with piercing gaze, wearing a sculptural hat","size":"2K","response_format":"url","watermark":false}),
            1,
        ),
        (
            json!({"model":"seedream-4.5","prompt":"Keep the model pose unchanged. Change the clothing material from silver metal to clear water.","image":"https://example.com/my-photo.jpg","size":"2K","watermark":false}),
            1,
        ),
        (
            json!({"model":"seedream-4.5","prompt":"Replace the clothing in image 1 with the outfit from image 2.","image":["https://example.com/model-photo.jpg","https://example.com/outfit-photo.jpg"],"size":"2K","sequential_image_generation":"disabled","watermark":false}),
            1,
        ),
        (
            json!({"model":"seedream-4.5","prompt":"Generate 4 illustrations of the same courtyard across seasons","size":"2K","sequential_image_generation":"auto","sequential_image_generation_options":{"max_images":4},"watermark":false}),
            4,
        ),
        (
            json!({"model":"seedream-4.5","prompt":"Using this LOGO as reference, create a visual design system for GREEN","image":"https://example.com/my-logo.png","size":"2K","sequential_image_generation":"auto","sequential_image_generation_options":{"max_images":4},"watermark":false}),
            4,
        ),
        (
            json!({"model":"seedream-4.5","prompt":"Generate 3 images of a girl and a cow plushie riding a roller coaster","image":["https://example.com/girl-character.png","https://example.com/cow-plushie.png"],"sequential_image_generation":"auto","sequential_image_generation_options":{"max_images":3},"size":"2K","watermark":false}),
            3,
        ),
        (
            json!({"model":"seedream-4.0","prompt":"Generate 4 coherent illustrations of a courtyard across four seasons","size":"2K","sequential_image_generation":"auto","sequential_image_generation_options":{"max_images":4},"optimize_prompt_options":{"mode":"fast"},"watermark":false}),
            4,
        ),
        (
            json!({"model":"seedream-4.5","prompt":"A cute cat in different poses: sitting, jumping, sleeping","n":3,"size":"2K","watermark":false}),
            3,
        ),
    ];
    let http = client();
    for (i, (body, want)) in examples.into_iter().enumerate() {
        let r = http
            .post(gw.url("/v1/images/generations"))
            .header("authorization", "Bearer kikaku_demo_key")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "example {}", i + 1);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["usage"]["generated_images"],
            want as u64,
            "example {}: {v}",
            i + 1
        );
    }
    let usage: Value = http
        .get(gw.url("/v1/usage"))
        .header("authorization", "Bearer kikaku_demo_key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["used_count"], 21);
    assert_eq!(usage["quota_limit"], 1000);
    // The demo key's 10 requests per minute: this was the 9th; the 11th is refused.
    let status = |r: reqwest::Response| r.status().as_u16();
    let next = || {
        http.get(gw.url("/v1/logs"))
            .header("authorization", "Bearer kikaku_demo_key")
            .send()
    };
    assert_eq!(status(next().await.unwrap()), 200);
    assert_eq!(status(next().await.unwrap()), 429);
}
