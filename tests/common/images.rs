//! An image route on the real binary with its own in-process Ark
//! simulator, for the image tests (`tests/images*.rs`).

use serde_json::Value;

use super::{bearer, client, free_port, get_json, wait_for_port, Gateway};

pub const KEY: &str = "kikaku_img_tester";
pub const ARK_KEY: &str = "ark-secret-test-key";

pub struct ImageGateway {
    pub gw: Gateway,
    pub sim: u16,
}

/// A gateway whose image route calls an in-process simulator.
/// `sim` and `handler` are extra YAML flow-map entries (`latency_ms: 5, ...`).
pub fn start(sim: &str, handler: &str, quota: u64) -> ImageGateway {
    let (yaml, sim_port) = config(sim, handler, quota);
    let gw = Gateway::with(&yaml);
    // The simulator starts beside the listeners; wait for it too.
    wait_for_port(sim_port);
    ImageGateway { gw, sim: sim_port }
}

/// The simulator, routes and keys of [`start`] (no listeners), and the
/// simulator's port.
pub fn config(sim: &str, handler: &str, quota: u64) -> (String, u16) {
    let sim_port = free_port();
    let sep = |s: &str| {
        if s.is_empty() {
            String::new()
        } else {
            format!(", {s}")
        }
    };
    let chain =
        "[{request_id: {}}, {key_auth: {}}, {key_type: {require: image}}, {rate_limit: {}}]";
    let route = |name: &str, m: &str, handler: &str| {
        // Image calls get their own budget, so reading logs never spends it.
        let chain = if name == "images" {
            chain.replace("{rate_limit: {}}", "{rate_limit: {scope: images}}")
        } else {
            chain.to_string()
        };
        format!("  - name: {name}\n    match: {m}\n    filters: {chain}\n    handler: {handler}\n")
    };
    let mut yaml = format!(
        "simulators:\n  ark: {{listen: '127.0.0.1:{sim_port}', api_key: {ARK_KEY}{}}}\n",
        sep(sim)
    );
    yaml += &format!("upstreams:\n  ark:\n    endpoints: [{{address: '127.0.0.1:{sim_port}'}}]\n");
    yaml += "routes:\n";
    yaml += &route(
        "images",
        "{methods: [POST], path_prefix: /v1/images/generations}",
        &format!(
            "{{type: image_generation, upstream: ark, api_key: {ARK_KEY}{}}}",
            sep(handler)
        ),
    );
    yaml += &route("usage", "{path_prefix: /v1/usage}", "{type: image_usage}");
    yaml += &route("logs", "{path_prefix: /v1/logs}", "{type: image_logs}");
    yaml += &format!(
        "keys:\n  - {{key: {KEY}, owner: Img Tester, email: img@example.com, quota: {quota}, rate_limit_per_minute: 100000}}\n  - {{key: kikaku_s3_nope, owner: S3}}\n"
    );
    (yaml, sim_port)
}

impl ImageGateway {
    pub async fn generate(&self, body: Value) -> (u16, Value) {
        self.post(body.to_string()).await
    }

    pub async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = client()
            .post(self.gw.url("/v1/images/generations"))
            .header("authorization", bearer(KEY))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Value {
        get_json(&self.gw.url(path), KEY).await
    }

    pub async fn used(&self) -> u64 {
        self.get("/v1/usage").await["used_count"].as_u64().unwrap()
    }

    /// The body the simulator last received from the gateway.
    pub async fn last_upstream_request(&self) -> Value {
        client()
            .get(format!("http://127.0.0.1:{}/_sim/last-request", self.sim))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

pub fn images(v: &Value) -> usize {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d.get("error").is_none())
        .count()
}
