//! `kikaku-edge sim-ark`: the standalone Ark simulator speaks Ark's API.

mod common;

use std::process::{Child, Command, Stdio};

use common::{client, jpeg_dimensions, spawn_listening};
use serde_json::{json, Value};

struct Sim(Child, u16);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sim(args: &[&str]) -> Sim {
    let (child, port) = spawn_listening(|port| {
        Command::new(env!("CARGO_BIN_EXE_kikaku-edge"))
            .args(["sim-ark", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    });
    Sim(child, port)
}

async fn generate(s: &Sim, token: &str, body: Value) -> (u16, Value) {
    let r = client()
        .post(format!(
            "http://127.0.0.1:{}/api/v3/images/generations",
            s.1
        ))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn speaks_arks_generation_api() {
    let s = sim(&["--api-key", "k", "--auto-max-images", "2"]);
    let (st, v) = generate(
        &s,
        "wrong",
        json!({"model": "seedream-4-5-251128", "prompt": "x"}),
    )
    .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (401, Some("AuthenticationError"))
    );
    let (st, v) = generate(&s, "k", json!({"model": "seedream-9", "prompt": "x"})).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (404, Some("InvalidEndpointOrModel.NotFound"))
    );
    let (st, v) = generate(
        &s,
        "k",
        json!({"model": "seedream-4-5-251128", "prompt": "x", "size": "1K"}),
    )
    .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("InvalidParameter")),
        "1K is not a 4.5 preset"
    );

    let (st, v) = generate(
        &s,
        "k",
        json!({"model": "seedream-4-0-250828", "prompt": "FORBIDDEN cinema 16:9", "size": "4K",
               "sequential_image_generation": "auto", "sequential_image_generation_options": {"max_images": 5}}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["model"], "seedream-4-0-250828");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "auto capped at 2 by the knob");
    assert_eq!(
        data[0]["error"]["code"],
        "OutputImageSensitiveContentDetected"
    );
    assert_eq!(
        data[1]["size"], "5504x3040",
        "4K 16:9 from the seed's table"
    );
    assert_eq!(
        v["usage"],
        json!({"generated_images": 1, "output_tokens": 65_360, "total_tokens": 65_360})
    );
    assert_eq!(
        jpeg_dimensions(data[1]["url"].as_str().unwrap()).await,
        (5504, 3040)
    );

    // Forgotten images are gone, as Ark's expire after 24 h.
    client()
        .post(format!("http://127.0.0.1:{}/_sim/forget-images", s.1))
        .send()
        .await
        .unwrap();
    let r = client()
        .get(data[1]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_every_nth_request() {
    let s = sim(&["--fault", "http500", "--fault-every", "2"]);
    let body = json!({"model": "seedream-4-5-251128", "prompt": "x"});
    assert_eq!(generate(&s, "t", body.clone()).await.0, 200);
    let (st, v) = generate(&s, "t", body.clone()).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (500, Some("InternalServiceError"))
    );
    assert_eq!(generate(&s, "t", body.clone()).await.0, 200);

    let reset = sim(&["--fault", "reset"]);
    let r = client()
        .post(format!(
            "http://127.0.0.1:{}/api/v3/images/generations",
            reset.1
        ))
        .bearer_auth("t")
        .json(&body)
        .send()
        .await;
    assert!(r.is_err(), "the connection is dropped without an answer");
}
