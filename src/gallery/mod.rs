//! The image gallery (DESIGN §3): every successful generated image is
//! copied to storage in the background — fetched from the upstream's URL
//! (which expires after 24 h) or decoded from its base64 — with bounded
//! concurrency and retries, then listed by `GET /v1/gallery` with a gateway
//! URL (`/gallery/<token>.jpeg`) that keeps working.

pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use crate::state::{GalleryRecord, StateStore};
use base64::Engine;
use bytes::Bytes;
use rand::Rng;
use serde_json::Value;

use crate::config::GalleryConfig;
use crate::storage::backend::{BackendRequest, S3Backend};

/// Where an image's bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    Url(String),
    Base64(String),
}

/// One image to keep, with what the gallery shows about it.
#[derive(Debug, Clone)]
pub struct Pending {
    pub subject: String,
    pub source: Source,
    pub prompt: String,
    pub model: String,
    pub image_size: String,
    /// When the image was made (not when its copy landed).
    pub created_at_ms: i64,
}

/// The largest image copied (Ark's JPEGs are a few MiB at 4K).
const MAX_IMAGE: usize = 64 << 20;

pub struct Gallery {
    pub cfg: GalleryConfig,
    backend: Arc<S3Backend>,
    state: Arc<dyn StateStore>,
    permits: Arc<tokio::sync::Semaphore>,
    http: reqwest::Client,
    bucket_ready: tokio::sync::OnceCell<()>,
}

/// The object name of a gallery image.
pub fn object_name(token: &str) -> String {
    format!("{token}.jpeg")
}

/// Gallery tokens: 32 hex digits, nothing else.
pub fn valid_token(token: &str) -> bool {
    token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Gallery {
    pub fn new(cfg: GalleryConfig, backend: Arc<S3Backend>, state: Arc<dyn StateStore>) -> Gallery {
        Gallery {
            permits: Arc::new(tokio::sync::Semaphore::new(cfg.concurrency.max(1))),
            cfg,
            backend,
            state,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
            bucket_ready: tokio::sync::OnceCell::new(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.cfg.bucket
    }

    /// The images of a successful answer (`data[]` items with `url` or
    /// `b64_json`), to be kept.
    pub fn pending_from_answer(
        body: &Value,
        subject: &str,
        prompt: &str,
        model: &str,
        image_size: &str,
    ) -> Vec<Pending> {
        body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let source = if let Some(u) = item["url"].as_str() {
                    Source::Url(u.to_string())
                } else {
                    Source::Base64(item["b64_json"].as_str()?.to_string())
                };
                Some(Pending {
                    subject: subject.to_string(),
                    source,
                    prompt: prompt.to_string(),
                    model: model.to_string(),
                    image_size: image_size.to_string(),
                    created_at_ms: chrono::Utc::now().timestamp_millis(),
                })
            })
            .collect()
    }

    /// Copy in the background: at most `concurrency` at once, each tried
    /// `attempts` times with growing pauses. Never blocks the answer.
    pub fn save(self: &Arc<Self>, items: Vec<Pending>) {
        if !self.cfg.enabled {
            return;
        }
        for item in items {
            let this = self.clone();
            tokio::spawn(async move {
                let Ok(_permit) = this.permits.clone().acquire_owned().await else {
                    return;
                };
                let mut pause = Duration::from_millis(200);
                for attempt in 1..=this.cfg.attempts {
                    match this.save_one(&item).await {
                        Ok(()) => return,
                        Err(e) if attempt < this.cfg.attempts => {
                            log::warn!("gallery copy failed (attempt {attempt}): {e}");
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_secs(30));
                        }
                        Err(e) => {
                            log::error!("gallery copy given up after {attempt} attempts: {e}")
                        }
                    }
                }
            });
        }
    }

    async fn fetch(&self, source: &Source) -> Result<Bytes, String> {
        match source {
            Source::Base64(b) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map(Bytes::from)
                .map_err(|e| format!("bad base64: {e}")),
            Source::Url(u) => {
                let resp = self.http.get(u).send().await.map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("{u} answered {}", resp.status()));
                }
                if resp
                    .content_length()
                    .is_some_and(|n| n as usize > MAX_IMAGE)
                {
                    return Err(format!("{u} is larger than {MAX_IMAGE} bytes"));
                }
                let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
                if bytes.len() > MAX_IMAGE {
                    return Err(format!("{u} is larger than {MAX_IMAGE} bytes"));
                }
                Ok(bytes)
            }
        }
    }

    async fn save_one(&self, item: &Pending) -> Result<(), String> {
        let data = self.fetch(&item.source).await?;
        self.bucket_ready
            .get_or_try_init(|| async {
                self.backend
                    .ensure_bucket(&self.cfg.bucket)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await?;
        let token = random_token();
        let req = BackendRequest::object(http::Method::PUT, &self.cfg.bucket, &object_name(&token))
            // Ark's JPEG, or a PNG from a model asked for `output_format: png`.
            .with_header(
                "content-type",
                if data.starts_with(b"\x89PNG") {
                    "image/png"
                } else {
                    "image/jpeg"
                },
            )
            .with_body(data);
        self.backend.call(req).await.map_err(|e| e.to_string())?;
        let record = GalleryRecord {
            id: 0,
            token,
            prompt: item.prompt.clone(),
            model: item.model.clone(),
            image_size: item.image_size.clone(),
            created_at_ms: item.created_at_ms,
        };
        let (_, evicted) = self
            .state
            .gallery_add(&item.subject, record, self.cfg.max_images_per_key)
            .await
            .map_err(|e| e.to_string())?;
        for old in evicted {
            let req = BackendRequest::new(
                http::Method::DELETE,
                Some(self.cfg.bucket.clone()),
                Some(object_name(&old.token)),
            );
            if let Err(e) = self.backend.call(req).await {
                log::warn!("deleting an evicted gallery image failed: {e}");
            }
        }
        Ok(())
    }
}

/// 32 random hex digits.
pub fn random_token() -> String {
    let bytes: [u8; 16] = rand::thread_rng().gen();
    kikaku_filters::keys::hex(&bytes)
}
