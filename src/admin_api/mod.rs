//! The management API (DESIGN §5): `/admin/v1/*` on the admin listener,
//! JSON in and out, every call with `Authorization: Bearer <admin.token>`.
//! The admin listener (`proxy/admin.rs`) reads the request, hands it here
//! with an [`Env`] built from the current snapshot, and writes the
//! [`Answer`] back. Errors are `{"error":{"code","message"}}`.
//!
//! - `keys.rs`: `/admin/v1/keys`, `/admin/v1/keys/{id}`;
//! - `credentials.rs`: `/admin/v1/credentials`, `/admin/v1/credentials/{id}`;
//! - `buckets.rs`: `/admin/v1/buckets/...`, their objects and uploads;
//! - `presigned.rs`: `/admin/v1/presigned-urls`;
//! - `stats.rs`: `/admin/v1/stats`;
//! - `openapi.json`: this API's OpenAPI 3.1 document, served as is (a
//!   test checks it parses, validates and matches the live answers).

pub mod buckets;
pub mod credentials;
pub mod keys;
pub mod presigned;
mod request;
pub mod stats;

use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use kikaku_filters::{ErrorKind, GatewayError, KeyDirectory};
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::state::StateStore;
use crate::storage::Storage;

pub use request::{parse_body, Query};

/// This API's OpenAPI 3.1 document (`GET /admin/v1/openapi.json`).
static OPENAPI: once_cell::sync::Lazy<Value> = once_cell::sync::Lazy::new(|| {
    serde_json::from_str(include_str!("openapi.json")).unwrap_or(Value::Null)
});

/// The largest request body the management API reads.
pub const MAX_BODY: usize = 1 << 20;

/// What a management call may use, taken from the snapshot it started on.
pub struct Env {
    pub state: Arc<dyn StateStore>,
    /// The keys of the config file (read-only here).
    pub config_keys: Arc<KeyDirectory>,
    pub storage: Option<Arc<Storage>>,
    /// `admin.token`; `None` refuses every call.
    pub token: Option<String>,
    /// `public_url` (or its default), without a trailing slash.
    pub public_base: String,
}

/// One management call as the admin listener read it.
pub struct Call {
    pub method: Method,
    /// The path after `/admin/v1`, e.g. `/keys/0a1b2c3d4e5f`.
    pub path: String,
    pub query: Option<String>,
    pub authorization: Option<String>,
    pub body: Bytes,
}

/// A management answer: status and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn ok(body: Value) -> Answer {
        Answer { status: 200, body }
    }

    pub fn created(body: Value) -> Answer {
        Answer { status: 201, body }
    }

    pub fn error(e: &GatewayError) -> Answer {
        Answer {
            status: e.status(),
            body: serde_json::from_slice(&e.body()).unwrap_or(Value::Null),
        }
    }
}

/// Serve one call: authenticate, route, answer.
pub async fn handle(env: &Env, call: Call) -> Answer {
    if let Err(e) = authenticate(env, call.authorization.as_deref()) {
        return Answer::error(&e);
    }
    match route(env, &call).await {
        Ok(a) => a,
        Err(e) => Answer::error(&e),
    }
}

fn authenticate(env: &Env, authorization: Option<&str>) -> Result<(), GatewayError> {
    let Some(token) = env.token.as_deref() else {
        return Err(GatewayError::new(
            ErrorKind::Unauthorized,
            "The management API is off: set admin.token in the config.",
        ));
    };
    let presented = authorization
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            GatewayError::new(
                ErrorKind::Unauthorized,
                "Send the admin token: Authorization: Bearer <admin.token>.",
            )
        })?;
    // Constant time over equal lengths; a length mismatch says only that.
    if bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(GatewayError::new(
            ErrorKind::Unauthorized,
            "The admin token is not valid.",
        ))
    }
}

async fn route(env: &Env, call: &Call) -> Result<Answer, GatewayError> {
    if let Some(answer) = object_route(env, call).await {
        return answer;
    }
    let segments: Vec<&str> = call
        .path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let m = &call.method;
    match segments.as_slice() {
        ["openapi.json"] if m == Method::GET => Ok(Answer::ok(OPENAPI.clone())),
        ["stats"] if m == Method::GET => stats::get(env).await,
        ["presigned-urls"] if m == Method::GET => presigned::list(env).await,
        ["presigned-urls"] if m == Method::POST => presigned::create(env, &call.body).await,
        ["stats"] | ["presigned-urls"] | ["openapi.json"] => Err(method_not_allowed(m)),
        ["keys"] if m == Method::GET => keys::list(env, Query::parse(call.query.as_deref())?).await,
        ["keys"] if m == Method::POST => keys::create(env, &call.body).await,
        ["keys", id] if m == Method::GET => keys::get(env, id).await,
        ["keys", id] if m == Method::PATCH => keys::patch(env, id, &call.body).await,
        ["keys", id] if m == Method::DELETE => keys::delete(env, id).await,
        ["keys", id, "reconcile"] if m == Method::POST => keys::reconcile(env, id).await,
        ["keys"] | ["keys", _] | ["keys", _, "reconcile"] => Err(method_not_allowed(m)),
        ["credentials"] if m == Method::GET => {
            credentials::list(env, Query::parse(call.query.as_deref())?).await
        }
        ["credentials"] if m == Method::POST => credentials::create(env, &call.body).await,
        ["credentials", id] if m == Method::GET => credentials::get(env, id).await,
        ["credentials", id] if m == Method::PATCH => credentials::patch(env, id, &call.body).await,
        ["credentials", id] if m == Method::DELETE => credentials::delete(env, id).await,
        ["credentials"] | ["credentials", _] => Err(method_not_allowed(m)),
        ["buckets"] if m == Method::GET => buckets::list(env).await,
        ["buckets"] if m == Method::POST => buckets::create(env, &call.body).await,
        ["buckets", o, n] if m == Method::GET => {
            buckets::get(env, o, n, Query::parse(call.query.as_deref())?).await
        }
        ["buckets", o, n] if m == Method::DELETE => buckets::delete(env, o, n).await,
        ["buckets", o, n, "objects"] if m == Method::GET => {
            buckets::objects(env, o, n, Query::parse(call.query.as_deref())?).await
        }
        ["buckets", o, n, "delete"] if m == Method::POST => {
            buckets::bulk_delete(env, o, n, &call.body).await
        }
        ["buckets", o, n, "multipart-uploads"] if m == Method::GET => {
            buckets::uploads(env, o, n).await
        }
        ["buckets"]
        | ["buckets", _, _]
        | ["buckets", _, _, "objects" | "delete" | "multipart-uploads"] => {
            Err(method_not_allowed(m))
        }
        _ => Err(GatewayError::new(
            ErrorKind::NotFound,
            format!("No management endpoint {} /admin/v1{}.", m, call.path),
        )),
    }
}

/// `/buckets/{owner_id}/{name}/objects/{key}`: the key is the rest of the
/// path, percent-decoded, slashes and all.
async fn object_route(env: &Env, call: &Call) -> Option<Result<Answer, GatewayError>> {
    let rest = call.path.strip_prefix("/buckets/")?;
    let mut parts = rest.splitn(4, '/');
    let (o, n, objects, raw_key) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if objects != "objects" || raw_key.is_empty() {
        return None;
    }
    let key = match sigv4::percent_decode(raw_key).and_then(|b| String::from_utf8(b).ok()) {
        Some(k) => k,
        None => {
            return Some(Err(GatewayError::new(
                ErrorKind::InvalidParameter,
                "The object key is not valid percent-encoded UTF-8.",
            )))
        }
    };
    Some(match &call.method {
        &Method::GET => buckets::object(env, o, n, &key).await,
        &Method::DELETE => buckets::delete_object(env, o, n, &key).await,
        m => Err(method_not_allowed(m)),
    })
}

fn method_not_allowed(m: &Method) -> GatewayError {
    GatewayError::new(
        ErrorKind::MethodNotAllowed,
        format!("This endpoint does not take {m}."),
    )
}

/// An answer from state that could not be had.
pub(crate) fn unavailable(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::unavailable("Management data", e)
}
