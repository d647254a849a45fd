//! Errors a filter or handler can answer with. Each kind maps to one HTTP
//! status and one stable `code`; the gateway turns them into
//! `{"error":{"code","message"}}` in exactly one place.

use std::time::Duration;

/// What went wrong, from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is malformed.
    BadRequest,
    /// 400: a field breaks a rule (the message names the field and the rule).
    InvalidParameter,
    /// 400: a required field is absent.
    MissingParameter,
    /// 403: the key's quota cannot cover the request.
    QuotaExceeded,
    /// 413: the request body is larger than the route accepts.
    PayloadTooLarge,
    /// 401: no key, an unknown key, or a malformed Authorization header.
    Unauthorized,
    /// 403: the key is suspended.
    KeySuspended,
    /// 403: the key's `expires_at` has passed.
    KeyExpired,
    /// 403: the route needs the other type of key.
    WrongKeyType,
    /// 403: the key may not touch this resource (another tenant's bucket).
    Forbidden,
    /// 404: no route matches.
    NotFound,
    /// 405: a route has this path, not this method.
    MethodNotAllowed,
    /// 409: the request conflicts with what exists (a bucket already owned,
    /// a resource that cannot change).
    Conflict,
    /// 412: a condition of the request (`If-Match`) does not hold.
    PreconditionFailed,
    /// 429: the per-key rate limit is used up.
    RateLimited,
    /// 429: the per-IP flood guard tripped.
    TooManyRequestsFromIp,
    /// 431: request headers too large.
    HeadersTooLarge,
    /// 499 (nginx's code, for logs): the client left before the answer.
    ClientClosed,
    /// 501: a route whose handler is not built yet.
    NotImplemented,
    /// 502: the upstream answered badly or the connection failed.
    BadGateway,
    /// 503: no healthy upstream endpoint, or shared state unavailable.
    ServiceUnavailable,
    /// 504: the upstream did not answer in time.
    GatewayTimeout,
    /// 500: a bug or an unexpected internal failure.
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest | ErrorKind::InvalidParameter | ErrorKind::MissingParameter => {
                400
            }
            ErrorKind::QuotaExceeded => 403,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::Unauthorized => 401,
            ErrorKind::KeySuspended
            | ErrorKind::KeyExpired
            | ErrorKind::WrongKeyType
            | ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Conflict => 409,
            ErrorKind::PreconditionFailed => 412,
            ErrorKind::RateLimited | ErrorKind::TooManyRequestsFromIp => 429,
            ErrorKind::HeadersTooLarge => 431,
            ErrorKind::ClientClosed => 499,
            ErrorKind::Internal => 500,
            ErrorKind::NotImplemented => 501,
            ErrorKind::BadGateway => 502,
            ErrorKind::ServiceUnavailable => 503,
            ErrorKind::GatewayTimeout => 504,
        }
    }

    /// The `error.code` string clients see.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "BadRequest",
            ErrorKind::InvalidParameter => "InvalidParameter",
            ErrorKind::MissingParameter => "MissingParameter",
            ErrorKind::QuotaExceeded => "QuotaExceeded",
            ErrorKind::PayloadTooLarge => "PayloadTooLarge",
            ErrorKind::Unauthorized => "Unauthorized",
            ErrorKind::KeySuspended => "KeySuspended",
            ErrorKind::KeyExpired => "KeyExpired",
            ErrorKind::WrongKeyType => "WrongKeyType",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::Conflict => "Conflict",
            ErrorKind::PreconditionFailed => "PreconditionFailed",
            ErrorKind::MethodNotAllowed => "MethodNotAllowed",
            ErrorKind::RateLimited => "RateLimitExceeded",
            ErrorKind::TooManyRequestsFromIp => "TooManyRequests",
            ErrorKind::HeadersTooLarge => "RequestHeaderFieldsTooLarge",
            ErrorKind::ClientClosed => "ClientClosedRequest",
            ErrorKind::NotImplemented => "NotImplemented",
            ErrorKind::BadGateway => "BadGateway",
            ErrorKind::ServiceUnavailable => "ServiceUnavailable",
            ErrorKind::GatewayTimeout => "GatewayTimeout",
            ErrorKind::Internal => "InternalError",
        }
    }

    /// A short label for metrics (`kikaku_rejections_total{reason=...}`).
    pub fn reason(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::InvalidParameter => "invalid_parameter",
            ErrorKind::MissingParameter => "missing_parameter",
            ErrorKind::QuotaExceeded => "quota_exceeded",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::KeySuspended => "suspended",
            ErrorKind::KeyExpired => "expired",
            ErrorKind::WrongKeyType => "wrong_key_type",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::PreconditionFailed => "precondition_failed",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::TooManyRequestsFromIp => "ip_flood",
            ErrorKind::HeadersTooLarge => "headers_too_large",
            ErrorKind::ClientClosed => "client_closed",
            ErrorKind::NotImplemented => "not_implemented",
            ErrorKind::BadGateway => "bad_gateway",
            ErrorKind::ServiceUnavailable => "unavailable",
            ErrorKind::GatewayTimeout => "timeout",
            ErrorKind::Internal => "internal",
        }
    }
}

impl ErrorKind {
    /// The S3 error code for S3 requests (which get XML, not JSON).
    pub fn s3_code(self) -> &'static str {
        match self {
            ErrorKind::BadRequest | ErrorKind::InvalidParameter => "InvalidRequest",
            ErrorKind::MissingParameter => "InvalidRequest",
            ErrorKind::QuotaExceeded => "QuotaExceeded",
            ErrorKind::PayloadTooLarge => "EntityTooLarge",
            ErrorKind::Unauthorized
            | ErrorKind::KeySuspended
            | ErrorKind::KeyExpired
            | ErrorKind::WrongKeyType
            | ErrorKind::Forbidden => "AccessDenied",
            ErrorKind::NotFound => "NoSuchKey",
            ErrorKind::Conflict => "OperationAborted",
            ErrorKind::PreconditionFailed => "PreconditionFailed",
            ErrorKind::MethodNotAllowed => "MethodNotAllowed",
            ErrorKind::RateLimited | ErrorKind::TooManyRequestsFromIp => "SlowDown",
            ErrorKind::HeadersTooLarge => "RequestHeaderSectionTooLarge",
            ErrorKind::ClientClosed => "RequestTimeout",
            ErrorKind::NotImplemented => "NotImplemented",
            ErrorKind::BadGateway | ErrorKind::Internal => "InternalError",
            ErrorKind::ServiceUnavailable => "ServiceUnavailable",
            ErrorKind::GatewayTimeout => "RequestTimeout",
        }
    }
}

/// A client-facing error: a kind, a message, and (for 429/503) when to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    pub kind: ErrorKind,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// For S3 requests: a specific S3 status and code (e.g. 403
    /// `SignatureDoesNotMatch`) instead of the kind's.
    pub s3: Option<(u16, &'static str)>,
}

impl GatewayError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        GatewayError {
            kind,
            message: message.into(),
            retry_after: None,
            s3: None,
        }
    }

    /// 503: a service the request depends on (quota, rate limits, logs) is down.
    pub fn unavailable(what: &str, cause: impl std::fmt::Display) -> Self {
        GatewayError::new(
            ErrorKind::ServiceUnavailable,
            format!("{what} is unavailable: {cause}"),
        )
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// An S3 status and code for S3 requests.
    pub fn with_s3(mut self, status: u16, code: &'static str) -> Self {
        self.s3 = Some((status, code));
        self
    }

    /// The status of the S3 (XML) answer: S3 answers auth failures with
    /// 403, never 401.
    pub fn s3_status(&self) -> u16 {
        match (self.s3, self.kind) {
            (Some((status, _)), _) => status,
            (None, ErrorKind::Unauthorized) => 403,
            (None, kind) => kind.status(),
        }
    }

    pub fn s3_code(&self) -> &'static str {
        self.s3.map(|(_, c)| c).unwrap_or(self.kind.s3_code())
    }

    /// The JSON body: `{"error":{"code":"...","message":"..."}}`.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "error": { "code": self.kind.code(), "message": self.message }
        }))
        .unwrap_or_default()
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.kind.code(),
            self.status(),
            self.message
        )
    }
}

impl std::error::Error for GatewayError {}

/// What a state backend answers when it cannot do what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The backend cannot be reached; callers decide whether to fail open or closed.
    Unavailable(String),
    /// Stored data is not what the gateway wrote.
    Corrupt(String),
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::Unavailable(m) => write!(f, "state store unavailable: {m}"),
            StateError::Corrupt(m) => write!(f, "state store corrupt: {m}"),
        }
    }
}

impl std::error::Error for StateError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_the_error_envelope() {
        let e = GatewayError::new(ErrorKind::KeyExpired, "The API key expired on 2026-01-01.");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"]["code"], "KeyExpired");
        assert_eq!(v["error"]["message"], "The API key expired on 2026-01-01.");
        assert_eq!(e.status(), 403);
    }

    #[test]
    fn statuses_follow_the_design() {
        assert_eq!(ErrorKind::Unauthorized.status(), 401);
        assert_eq!(ErrorKind::WrongKeyType.status(), 403);
        assert_eq!(ErrorKind::RateLimited.status(), 429);
        assert_eq!(ErrorKind::GatewayTimeout.status(), 504);
    }
}
