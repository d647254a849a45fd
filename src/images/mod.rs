//! `POST /v1/images/generations` (DESIGN §3), answered by the gateway:
//! read and validate the body, reserve quota, respect the per-model ceiling,
//! call Ark, fill a batch's missing images with parallel calls inside the same
//! deadline, answer with recomputed usage, then bill what was delivered and
//! record the request.

pub mod api;
pub mod ark_client;
pub mod ark_session;
pub mod ark_stream;
mod ark_tries;
pub mod response;
pub mod sse;
mod stream;

use crate::gallery::Gallery;
use crate::reply::Exchange;
use crate::upstreams::Affinity;
use kikaku_filters::clock::now_ms;
use kikaku_filters::state::PendingRateLimit;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::state::{ImageAdmission, RequestLog, Reservation, StateStore};
use futures_util::future::join_all;
use kikaku_filters::{ApiKey, ErrorKind, GatewayError};
use pingora::proxy::Session;
use serde_json::{Map, Value};

pub use crate::config::ImageGenerationConfig;
use crate::images::api::models::{default_models, ModelSpec};
use crate::images::api::validate::{validate, Validated};
use ark_client::{ArkClient, ArkFailure};
use response::{answer, describe, Item};

pub struct ImageGeneration {
    cfg: ImageGenerationConfig,
    models: Vec<ModelSpec>,
    ark: ArkClient,
    state: Arc<dyn StateStore>,
    /// Where successful images are kept (when storage is configured).
    gallery: Option<Arc<Gallery>>,
}

/// What the client asked for (as the gallery shows it), and the rate-limit
/// check the `rate_limit` filter left to the handler with its outcome.
#[derive(Default)]
struct Asked {
    prompt: String,
    size: String,
    rate: Option<PendingRateLimit>,
    decision: Option<kikaku_filters::RateDecision>,
}

/// Holds a quota reservation; whatever was not settled is released when it
/// drops, even if the request future is abandoned mid-way.
struct HeldQuota {
    state: Arc<dyn StateStore>,
    subject: String,
    reservation: Option<Reservation>,
}

/// Bill `used` and release the rest, with the request's log when given. If
/// the store cannot confirm (a lost reply looks like an outage), keep
/// retrying in the background: settles (and a settle's log) are
/// idempotent, so billing and logs converge on exactly what was delivered.
async fn settle_eventually(
    state: Arc<dyn StateStore>,
    subject: String,
    r: Reservation,
    used: u64,
    log: Option<RequestLog>,
) {
    let settle = move |state: Arc<dyn StateStore>, subject: String, log: Option<RequestLog>| async move {
        match log {
            Some(l) => state.settle_and_log(&subject, r, used, l).await.map(|_| ()),
            None => state.quota_settle(&subject, r, used).await,
        }
    };
    let Err(e) = settle(state.clone(), subject.clone(), log.clone()).await else {
        return;
    };
    log::warn!("quota settle unconfirmed ({e}); retrying in the background");
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(100);
        // Past the reservation's lifetime the store has released it anyway.
        let give_up = Instant::now() + Duration::from_secs(3600);
        while Instant::now() < give_up {
            tokio::time::sleep(delay).await;
            if settle(state.clone(), subject.clone(), log.clone())
                .await
                .is_ok()
            {
                return;
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        log::error!(
            "quota settle for a reservation of {} image(s) never confirmed",
            r.amount
        );
    });
}

impl Drop for HeldQuota {
    fn drop(&mut self) {
        if let Some(r) = self.reservation.take() {
            let (state, subject) = (self.state.clone(), std::mem::take(&mut self.subject));
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(settle_eventually(state, subject, r, 0, None));
            }
        }
    }
}

/// Who asked, when and for what: the bill, the log and the gallery's
/// entries; and until when the images may take.
struct Who<'a> {
    subject: &'a str,
    alias: &'a str,
    started: Instant,
    deadline: Instant,
    asked: &'a Asked,
    /// What the pool may hash to keep this key on one Ark endpoint.
    aff: Affinity<'a>,
}

/// What the request produced, for the log.
struct Outcome {
    status: u16,
    images: u64,
    tokens: u64,
    error: Option<String>,
}

impl Outcome {
    /// A 200 that delivered `images` worth `tokens`.
    fn delivered(images: u64, tokens: u64) -> Outcome {
        Outcome {
            status: 200,
            images,
            tokens,
            error: None,
        }
    }
}

impl ImageGeneration {
    pub fn new(
        cfg: ImageGenerationConfig,
        upstream: Arc<crate::upstreams::Upstream>,
        state: Arc<dyn StateStore>,
        ca_file: Option<&str>,
        gallery: Option<Arc<Gallery>>,
    ) -> Result<ImageGeneration, String> {
        let ark = ArkClient::new(upstream, cfg.api_key.clone(), ca_file)?;
        Ok(ImageGeneration {
            models: cfg.models.clone().unwrap_or_else(default_models),
            cfg,
            ark,
            state,
            gallery,
        })
    }

    pub async fn handle(&self, ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
        let key = ex.ctx.require_key("image_generation")?;
        let subject = key.subject();
        let started = Instant::now();
        let deadline = started + Duration::from_secs(self.cfg.deadline_seconds);
        let mut alias = String::from("-");
        let mut asked = Asked {
            rate: ex.ctx.pending_rate_limit.take(),
            ..Asked::default()
        };
        let admitted = self
            .admit(ex.session, &key, &subject, &mut alias, &mut asked)
            .await;
        if let Some(d) = asked.decision {
            ex.ctx.rate_limit = Some(d);
            if !d.allowed {
                ex.ctx.rejected_by = Some("rate_limit");
            }
        }
        let who = Who {
            subject: &subject,
            alias: &alias,
            started,
            deadline,
            asked: &asked,
            aff: Affinity {
                client_ip: ex.ctx.client_ip,
                key: Some(&key.key_ref),
                ..Affinity::default()
            },
        };
        let result = match admitted {
            Ok((v, held)) if v.stream => self.stream(ex, &v, held, &who).await,
            Ok((v, held)) => self.whole(ex, &v, held, &who).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            let outcome = Outcome {
                status: e.status(),
                images: 0,
                tokens: 0,
                error: Some(e.message.clone()),
            };
            self.record(&who, outcome, None).await;
        }
        result
    }

    /// The answer as one JSON document, once every image is in.
    async fn whole(
        &self,
        ex: &mut Exchange<'_>,
        v: &Validated,
        held: HeldQuota,
        who: &Who<'_>,
    ) -> Result<(), GatewayError> {
        // A client that leaves stops the work; dropping `held` releases the quota.
        let answer = tokio::select! {
            a = self.call(v, who.deadline, &who.aff) => a?,
            true = client_gone(ex.session) => {
                return Err(GatewayError::new(ErrorKind::ClientClosed, "The client closed the connection before the images were ready."));
            }
        };
        let reservation = held.reservation;
        // Bill and record before answering, so a client that asks
        // /v1/usage or /v1/logs right after its answer sees it.
        let outcome = Outcome::delivered(answer.images, answer.tokens);
        self.record(who, outcome, Some(held)).await;
        self.keep(&answer.body, who);
        if let Err(e) = ex.send_json(200, &answer.body).await {
            // Billed but not delivered: give it back. (Clients that
            // leave earlier are caught while the images are made.)
            log::warn!(
                "image answer not delivered ({e}); refunding {} image(s)",
                answer.images
            );
            if let Some(r) = reservation {
                if let Err(e) = self.state.quota_refund(who.subject, r, answer.images).await {
                    log::error!("quota refund failed: {e}");
                }
            }
        }
        Ok(())
    }

    /// Save an answer's images to the gallery (when storage is configured).
    fn keep(&self, body: &Value, who: &Who<'_>) {
        if let Some(g) = &self.gallery {
            g.save(Gallery::pending_from_answer(
                body,
                who.subject,
                &who.asked.prompt,
                who.alias,
                &who.asked.size,
            ));
        }
    }

    /// Record a request a filter refused before it reached the handler
    /// (rate limit, wrong type), so the key's logs show every request.
    pub async fn record_refusal(&self, key: &ApiKey, started: Instant, err: &GatewayError) {
        let outcome = Outcome {
            status: err.status(),
            images: 0,
            tokens: 0,
            error: Some(err.message.clone()),
        };
        let subject = key.subject();
        let who = Who {
            subject: &subject,
            alias: "-",
            started,
            deadline: started,
            asked: &Asked::default(),
            aff: Affinity::default(),
        };
        self.record(&who, outcome, None).await;
    }

    /// Log the request; with `held`, also bill the images delivered
    /// (`o.images`) and release the rest of the reservation, in one step.
    async fn record(&self, who: &Who<'_>, o: Outcome, held: Option<HeldQuota>) {
        let (subject, alias, started) = (who.subject, who.alias, who.started);
        let used = o.images;
        let log = RequestLog {
            id: 0,
            model: alias.to_string(),
            timestamp_ms: now_ms() as i64,
            status: if o.status == 200 && o.error.is_none() {
                "success"
            } else {
                "failed"
            }
            .into(),
            http_status: o.status,
            response_time_ms: started.elapsed().as_millis() as u64,
            images: o.images,
            tokens: o.tokens,
            error_message: o.error,
        };
        match held.and_then(|mut h| h.reservation.take()) {
            Some(r) => {
                if let Err(e) = self
                    .state
                    .settle_and_log(subject, r, used, log.clone())
                    .await
                {
                    log::error!("quota settle and request log failed ({e}); settling again");
                    settle_eventually(self.state.clone(), subject.to_string(), r, used, Some(log))
                        .await;
                }
            }
            None => {
                if let Err(e) = self.state.log_request(subject, log).await {
                    log::error!("request log write failed: {e}");
                }
            }
        }
    }

    /// Read and check the request, then pass the rate limit, the model's
    /// ceiling and the quota; the reservation comes back unsettled.
    async fn admit(
        &self,
        session: &mut Session,
        key: &ApiKey,
        subject: &str,
        alias: &mut String,
        asked: &mut Asked,
    ) -> Result<(Validated, HeldQuota), GatewayError> {
        let checked = crate::reply::read_body(session, self.cfg.max_body_bytes)
            .await
            .and_then(|body| validate(&body, &self.models));
        let v = match checked {
            Ok(v) => v,
            Err(e) => {
                // A bad request still counts against the rate limit, and a
                // client over its limit hears that first.
                if let Some(rate) = asked.rate.take() {
                    let d = self
                        .state
                        .rate_limit(&rate.bucket, 1, rate.limit, rate.window)
                        .await
                        .map_err(|e| GatewayError::unavailable("Rate limiting", e))?;
                    asked.decision = Some(d);
                    if !d.allowed {
                        return Err(kikaku_filters::rate_limit::refused(&d));
                    }
                }
                return Err(e);
            }
        };
        *alias = v.model.alias.clone();
        asked.prompt = v.prompt.clone();
        asked.size = v.size.clone();

        // Ark allows so many images per minute per model across the gateway;
        // the reservation covers fallback calls too.
        let ceiling = PendingRateLimit {
            bucket: format!("model:{{{}}}", v.model.upstream_id),
            limit: self.cfg.model_images_per_minute,
            window: Duration::from_secs(60),
        };
        let n = u64::from(v.expected_images);
        let rate = asked.rate.take();
        let admitted = self
            .state
            .admit_within_ceiling(&ImageAdmission {
                rate: rate.as_ref(),
                subject,
                amount: n,
                limit: key.quota,
                ceiling: &ceiling,
                cost: v.expected_images,
            })
            .await
            .map_err(|e| GatewayError::unavailable("Quota accounting", e))?;
        asked.decision = admitted.rate;
        if let Some(d) = admitted.rate.filter(|d| !d.allowed) {
            return Err(kikaku_filters::rate_limit::refused(&d));
        }
        if let Some(c) = admitted.ceiling.filter(|c| !c.allowed) {
            return Err(GatewayError::new(
                ErrorKind::RateLimited,
                format!(
                    "{} is at its gateway-wide limit of {} images per minute; retry shortly.",
                    v.model.alias, self.cfg.model_images_per_minute
                ),
            )
            .with_retry_after(c.reset_after));
        }
        let Some(reservation) = admitted.reservation else {
            let usage = self.state.quota_usage(subject).await.unwrap_or_default();
            return Err(GatewayError::new(
                ErrorKind::QuotaExceeded,
                format!(
                    "Image quota exhausted: {} of {} images used; this request needs up to {n}.",
                    usage.used, key.quota
                ),
            ));
        };
        let held = HeldQuota {
            state: self.state.clone(),
            subject: subject.to_string(),
            reservation: Some(reservation),
        };
        Ok((v, held))
    }

    /// The first call, then parallel calls for a batch's missing images.
    async fn call(
        &self,
        v: &Validated,
        deadline: Instant,
        aff: &Affinity<'_>,
    ) -> Result<response::Answer, GatewayError> {
        let mut first =
            tokio::time::timeout_at(deadline.into(), self.ark.generate(&v.ark_body, aff))
                .await
                .unwrap_or(Err(ArkFailure::Timeout))
                .map_err(upstream_error)?;
        let created = first["created"].as_u64().unwrap_or_else(|| now_ms() / 1000);
        let mut passed = response::Passed::from_ark(&first);
        let mut items: Vec<Item> = match first["data"].take() {
            Value::Array(d) => d.into_iter().map(Item::from_ark).collect(),
            _ => Vec::new(),
        };
        items.truncate(v.expected_images as usize);

        let missing = v.expected_images as usize - items.len();
        if v.batch && missing > 0 {
            let single = single_body(v);
            let calls = (0..missing).map(|_| self.fallback(&single, deadline, aff));
            for (item, tools) in join_all(calls).await {
                items.push(item);
                passed.add_tools(tools);
            }
        }
        let mut a = answer(&v.model.upstream_id, created, items);
        passed.apply(&mut a.body);
        Ok(a)
    }
}

impl ImageGeneration {
    /// One fallback call for one missing image of a batch: the image or
    /// why it failed, and the call's `tool_usage`.
    async fn fallback(
        &self,
        single: &Value,
        deadline: Instant,
        aff: &Affinity<'_>,
    ) -> (Item, Option<Map<String, Value>>) {
        match tokio::time::timeout_at(deadline.into(), self.ark.generate(single, aff)).await {
            Ok(Ok(mut resp)) => {
                let tools = response::Passed::from_ark(&resp).tool_usage;
                let item = match resp["data"].take() {
                    Value::Array(d) => d.into_iter().next().map(Item::from_ark),
                    _ => None,
                }
                .unwrap_or_else(|| Item::failed(&ArkFailure::BadBody("no image".into())));
                (item, tools)
            }
            Ok(Err(f)) => (Item::failed(&f), None),
            Err(_) => (Item::failed(&ArkFailure::Timeout), None),
        }
    }
}

/// The body of a fallback call: the batch's request for one image, not
/// streamed.
fn single_body(v: &Validated) -> Value {
    let mut single = v.ark_body.clone();
    single["sequential_image_generation"] = Value::from("disabled");
    single["stream"] = Value::from(false);
    if let Some(o) = single.as_object_mut() {
        o.remove("sequential_image_generation_options");
    }
    single
}

/// Whether the client has closed its connection (`false`: it sent more
/// bytes, a pipelined request, and is not watched any further).
async fn client_gone(session: &mut Session) -> bool {
    session.as_mut().read_body_or_idle(true).await.is_err()
}

/// How a failed first call is told to the client. Nothing is billed.
fn upstream_error(f: ArkFailure) -> GatewayError {
    let msg = describe(&f);
    match f {
        ArkFailure::Timeout => GatewayError::new(ErrorKind::GatewayTimeout, msg),
        ArkFailure::NoEndpoint => GatewayError::new(ErrorKind::ServiceUnavailable, msg),
        ArkFailure::Full(after) => {
            GatewayError::new(ErrorKind::ServiceUnavailable, msg).with_retry_after(after)
        }
        ArkFailure::Status {
            status: 400,
            code,
            message,
        } => {
            let kind = if code == "MissingParameter" {
                ErrorKind::MissingParameter
            } else {
                ErrorKind::InvalidParameter
            };
            GatewayError::new(
                kind,
                format!("The image upstream refused the request ({code}): {message}"),
            )
        }
        ArkFailure::Status {
            status: 429 | 503, ..
        } => GatewayError::new(ErrorKind::ServiceUnavailable, msg)
            .with_retry_after(Duration::from_secs(5)),
        _ => GatewayError::new(ErrorKind::BadGateway, msg),
    }
}
