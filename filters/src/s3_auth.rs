//! `s3_auth`: authenticate an S3 request by its AWS signature against the S3
//! credentials of storage keys: Signature V4 (the `Authorization` header or
//! a presigned URL) or V2 (`sigv2.rs`, header or query string). It checks
//! the signature over the request line and headers, that every `x-amz-*`
//! header is signed, the credential's region, the clock (15 min skew;
//! presigned expiry), and the key's status; the body is checked later, as
//! it streams, by the handler (the verified signature waits in the context
//! for it). Errors from here on are S3 XML.

use std::sync::Arc;

use async_trait::async_trait;
use pingora_http::RequestHeader;
use serde::Deserialize;

use crate::clock::now_unix;
use crate::context::{ErrorFormat, RequestCtx};
use crate::error::{ErrorKind, GatewayError};
use crate::filter::Filter;
use crate::key_auth::check_usable;
use crate::keys::{ApiKey, KeyDirectory, StoredKeys};
use sigv4::sigv2::{self, V2Presented};
use sigv4::{
    self, header_text, CanonicalInput, PayloadMode, Presented, SigError, VerifiedSignature,
};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3AuthConfig {}

pub struct S3Auth {
    keys: Arc<KeyDirectory>,
    stored: Option<Arc<StoredKeys>>,
    /// The region a V4 credential scope must name (`storage.region`).
    region: String,
}

impl S3Auth {
    pub fn new(
        _cfg: &S3AuthConfig,
        keys: Arc<KeyDirectory>,
        stored: Option<Arc<StoredKeys>>,
        region: String,
    ) -> Self {
        S3Auth {
            keys,
            stored,
            region,
        }
    }

    async fn find(&self, access_key_id: &str) -> Result<Option<Arc<ApiKey>>, GatewayError> {
        if let Some(k) = self.keys.lookup_access_key(access_key_id) {
            return Ok(Some(k));
        }
        match &self.stored {
            Some(stored) => stored
                .lookup_access_key(access_key_id)
                .await
                .map_err(|e| GatewayError::unavailable("Key lookup", e)),
            None => Ok(None),
        }
    }
}

/// A refused signature as the S3 error it is.
pub fn sig_error(e: SigError) -> GatewayError {
    let kind = match e {
        SigError::Malformed(_) | SigError::PayloadMismatch(_) | SigError::WrongRegion { .. } => {
            ErrorKind::BadRequest
        }
        _ => ErrorKind::Unauthorized,
    };
    let status = if kind == ErrorKind::BadRequest {
        400
    } else {
        403
    };
    GatewayError::new(kind, e.message()).with_s3(status, e.s3_code())
}

fn header_str<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Decoded query pairs.
type Query = Vec<(String, String)>;

/// A request's signature, as presented.
pub enum Signed {
    /// The V4 signature, the query pairs it signs, and the payload mode.
    V4(Presented, Query, PayloadMode),
    V2(V2Presented),
}

impl Signed {
    pub fn access_key_id(&self) -> &str {
        match self {
            Signed::V4(p, ..) => &p.credential.access_key_id,
            Signed::V2(p) => &p.access_key_id,
        }
    }

    /// Check the signature with the credential's `secret`, at `now`.
    pub fn verify(
        &self,
        req: &RequestHeader,
        secret: &str,
        region: &str,
        now: i64,
    ) -> Result<VerifiedSignature, SigError> {
        match self {
            Signed::V4(p, query, mode) => verify(req, p, query, mode, secret, region, now),
            Signed::V2(p) => sigv2::verify(req, p, secret, now),
        }
    }
}

/// The request time of V4 header auth: `X-Amz-Date`, or `Date` (botocore
/// sends only `Date` when the caller set one), as `YYYYMMDDTHHMMSSZ`.
fn v4_date(req: &RequestHeader) -> Option<String> {
    if let Some(d) = header_str(req, "x-amz-date") {
        return Some(d.to_string());
    }
    header_str(req, "date")
        .and_then(sigv4::parse_http_date)
        .map(sigv4::format_amz_date)
}

/// The signature a request presents: V4 header auth, a V4 presigned
/// query, or V2 (header or query).
pub fn presented(req: &RequestHeader) -> Result<Signed, SigError> {
    let raw_query = req.uri.query().unwrap_or("");
    let query = sigv4::parse_query(raw_query).ok_or_else(|| {
        SigError::Malformed("the query string is not valid percent-encoding".into())
    })?;
    let auth = header_str(req, "authorization");
    if req.headers.get_all("authorization").iter().count() > 1 {
        return Err(SigError::Malformed(
            "more than one Authorization header".into(),
        ));
    }
    if let Some(auth) = auth.filter(|a| a.starts_with(sigv4::ALGORITHM)) {
        let p = sigv4::parse_authorization(auth, v4_date(req).as_deref())?;
        let mode =
            PayloadMode::parse(header_str(req, "x-amz-content-sha256").ok_or_else(|| {
                SigError::Malformed("header auth needs x-amz-content-sha256".into())
            })?)?;
        return Ok(Signed::V4(p, query, mode));
    }
    if query.iter().any(|(k, _)| k == "X-Amz-Algorithm") {
        let p = sigv4::parse_presigned(&query)?;
        let mode = match query.iter().find(|(k, _)| k == "X-Amz-Content-Sha256") {
            Some((_, v)) => PayloadMode::parse(v)?,
            None => PayloadMode::Unsigned,
        };
        // The signature is not part of what it signs.
        let query = query
            .into_iter()
            .filter(|(k, _)| k != "X-Amz-Signature")
            .collect();
        return Ok(Signed::V4(p, query, mode));
    }
    match sigv2::parse(auth, &query)? {
        Some(p) => Ok(Signed::V2(p)),
        None => Err(SigError::Missing),
    }
}

/// Every `x-amz-*` header must be signed (AWS's rule): presigned, it may
/// instead travel in the query with the same value. Otherwise whoever holds
/// a presigned PUT could add `x-amz-copy-source` or metadata to it.
fn check_amz_headers_signed(
    req: &RequestHeader,
    signed: &[String],
    query: &[(String, String)],
) -> Result<(), SigError> {
    let mut unsigned: Vec<String> = Vec::new();
    for (name, value) in req.headers.iter() {
        let n = name.as_str();
        if !n.starts_with("x-amz-") || signed.iter().any(|s| s == n) {
            continue;
        }
        let in_query = query.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case(n) && header_text(value).is_some_and(|h| h.trim() == v)
        });
        if !in_query && !unsigned.iter().any(|u| u == n) {
            unsigned.push(n.to_string());
        }
    }
    if unsigned.is_empty() {
        Ok(())
    } else {
        Err(SigError::UnsignedHeaders(unsigned))
    }
}

/// The values of the signed headers, as the client signed them.
fn signed_header_values(
    req: &RequestHeader,
    names: &[String],
) -> Result<Vec<(String, String)>, SigError> {
    if !names.iter().any(|n| n == "host") {
        return Err(SigError::Malformed(
            "SignedHeaders must include host".into(),
        ));
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let value = if name == "host" {
            header_str(req, "host")
                .map(str::to_string)
                .or_else(|| req.uri.authority().map(|a| a.to_string()))
        } else {
            let values: Vec<String> = req
                .headers
                .get_all(name.as_str())
                .iter()
                .filter_map(header_text)
                .map(|v| v.trim().to_string())
                .collect();
            (!values.is_empty()).then(|| values.join(","))
        };
        let value = value.ok_or_else(|| {
            SigError::Malformed(format!("signed header {name} is not in the request"))
        })?;
        out.push((name.clone(), value));
    }
    Ok(out)
}

/// Verify the request's V4 signature with `secret`; the credential scope
/// must name `region`.
pub fn verify(
    req: &RequestHeader,
    p: &Presented,
    query: &[(String, String)],
    mode: &PayloadMode,
    secret: &str,
    region: &str,
    now: i64,
) -> Result<VerifiedSignature, SigError> {
    if p.credential.service != "s3" {
        return Err(SigError::Malformed(format!(
            "credential service is {:?}, expected s3",
            p.credential.service
        )));
    }
    if p.credential.region != region {
        return Err(SigError::WrongRegion {
            got: p.credential.region.clone(),
            expected: region.to_string(),
        });
    }
    sigv4::check_time(p, now)?;
    check_amz_headers_signed(req, &p.signed_headers, query)?;
    let path = sigv4::percent_decode(req.uri.path())
        .ok_or_else(|| SigError::Malformed("the path is not valid percent-encoding".into()))?;
    let headers = signed_header_values(req, &p.signed_headers)?;
    let payload_hash = match (p.expires, mode) {
        (Some(_), PayloadMode::Unsigned) => sigv4::UNSIGNED_PAYLOAD.to_string(),
        _ => header_str(req, "x-amz-content-sha256")
            .map(str::to_string)
            .or_else(|| {
                query
                    .iter()
                    .find(|(k, _)| k == "X-Amz-Content-Sha256")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_else(|| sigv4::UNSIGNED_PAYLOAD.to_string()),
    };
    let canonical = sigv4::canonical_request(&CanonicalInput {
        method: req.method.as_str(),
        path: &path,
        query,
        headers: &headers,
        payload_hash: &payload_hash,
    });
    let scope = p.credential.scope();
    let key = sigv4::signing_key(
        secret,
        &p.credential.date,
        &p.credential.region,
        &p.credential.service,
    );
    let expected = sigv4::sign(
        &key,
        &sigv4::string_to_sign(&p.amz_date, &scope, &canonical),
    );
    if !sigv4::signatures_match(&expected, &p.signature) {
        return Err(SigError::Mismatch);
    }
    Ok(VerifiedSignature {
        signing_key: key,
        signature: p.signature.clone(),
        amz_date: p.amz_date.clone(),
        scope,
        payload: mode.clone(),
        presigned: p.expires.is_some(),
    })
}

#[async_trait]
impl Filter for S3Auth {
    fn name(&self) -> &'static str {
        "s3_auth"
    }

    async fn on_request(
        &self,
        req: &RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<(), GatewayError> {
        ctx.error_format = ErrorFormat::S3Xml;
        let signed = presented(req).map_err(sig_error)?;
        let key = self
            .find(signed.access_key_id())
            .await?
            .ok_or_else(|| sig_error(SigError::UnknownAccessKey))?;
        // A switched-off credential is as unknown as one never made.
        let secret = key
            .active_credential(signed.access_key_id())
            .map(|c| c.secret_access_key.clone())
            .ok_or_else(|| sig_error(SigError::UnknownAccessKey))?;
        let now = now_unix();
        let verified = signed
            .verify(req, &secret, &self.region, now)
            .map_err(sig_error)?;
        check_usable(&key).map_err(|e| {
            let msg = e.message.clone();
            GatewayError::new(e.kind, msg).with_s3(403, "AccessDenied")
        })?;
        ctx.key = Some(key);
        ctx.s3 = Some(verified);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigv4::{format_amz_date, sign_request, SigningCredential};

    const SECRET: &str = "kikaku-demo-secret-key-for-local-use-only";

    fn signed_request(now: i64, secret: &str) -> RequestHeader {
        let mut headers = vec![("host".to_string(), "127.0.0.1:8080".to_string())];
        let auth = sign_request(
            "GET",
            b"/demo/a b.txt",
            &[("prefix".into(), "x y".into())],
            &mut headers,
            sigv4::UNSIGNED_PAYLOAD,
            &SigningCredential {
                access_key_id: "KIKAKUDEMOACCESSKEY0",
                secret_access_key: secret,
                region: "us-east-1",
            },
            now,
        );
        let mut req = RequestHeader::build("GET", b"/demo/a%20b.txt?prefix=x%20y", None).unwrap();
        for (n, v) in headers {
            req.insert_header(n, v).unwrap();
        }
        req.insert_header("authorization", auth).unwrap();
        req
    }

    fn check(req: &RequestHeader, now: i64) -> Result<VerifiedSignature, SigError> {
        presented(req)?.verify(req, SECRET, "us-east-1", now)
    }

    #[test]
    fn a_correct_signature_verifies() {
        let now = 1_800_000_000;
        let v = check(&signed_request(now, SECRET), now).unwrap();
        assert_eq!(v.payload, PayloadMode::Unsigned);
        assert_eq!(v.amz_date, format_amz_date(now));
    }

    #[test]
    fn wrong_secret_tampering_and_skew_are_refused() {
        let now = 1_800_000_000;
        assert_eq!(
            check(&signed_request(now, "wrong-secret"), now).unwrap_err(),
            SigError::Mismatch
        );
        let mut req = signed_request(now, SECRET);
        req.set_uri("/demo/other.txt?prefix=x%20y".parse().unwrap());
        assert_eq!(check(&req, now).unwrap_err(), SigError::Mismatch);
        assert_eq!(
            check(&signed_request(now, SECRET), now + 16 * 60).unwrap_err(),
            SigError::Skewed
        );
    }

    #[test]
    fn presigned_urls_verify_and_expire() {
        let now = 1_800_000_000;
        let q = sigv4::presign_query(
            "GET",
            b"/demo/k.txt",
            "127.0.0.1:8080",
            60,
            &SigningCredential {
                access_key_id: "KIKAKUDEMOACCESSKEY0",
                secret_access_key: SECRET,
                region: "us-east-1",
            },
            now,
        );
        let mut req =
            RequestHeader::build("GET", format!("/demo/k.txt?{q}").as_bytes(), None).unwrap();
        req.insert_header("host", "127.0.0.1:8080").unwrap();
        assert!(check(&req, now + 30).unwrap().presigned);
        assert_eq!(check(&req, now + 61).unwrap_err(), SigError::Expired);
        let mut put = req.clone();
        put.set_method(http::Method::PUT);
        assert_eq!(check(&put, now).unwrap_err(), SigError::Mismatch);
    }

    #[test]
    fn unsigned_amz_headers_wrong_region_and_date_header() {
        let now = 1_800_000_000;
        let mut req = signed_request(now, SECRET);
        req.insert_header("x-amz-copy-source", "/demo/secret.txt")
            .unwrap();
        assert_eq!(
            check(&req, now).unwrap_err(),
            SigError::UnsignedHeaders(vec!["x-amz-copy-source".into()])
        );
        let mut headers = vec![("host".to_string(), "h".to_string())];
        let cred = SigningCredential {
            access_key_id: "KIKAKUDEMOACCESSKEY0",
            secret_access_key: SECRET,
            region: "eu-west-1",
        };
        let auth = sign_request(
            "GET",
            b"/demo",
            &[],
            &mut headers,
            sigv4::UNSIGNED_PAYLOAD,
            &cred,
            now,
        );
        let mut req = RequestHeader::build("GET", b"/demo", None).unwrap();
        for (n, v) in headers {
            req.insert_header(n, v).unwrap();
        }
        req.insert_header("authorization", auth).unwrap();
        assert!(matches!(
            check(&req, now).unwrap_err(),
            SigError::WrongRegion { .. }
        ));
        // Dated by `Date` (botocore drops X-Amz-Date when the caller sets
        // Date): the string to sign still carries the ISO form of that time.
        let date = "Fri, 15 Jan 2027 08:00:00 GMT";
        let at = sigv4::parse_http_date(date).unwrap();
        let headers = vec![
            ("date".to_string(), date.to_string()),
            ("host".to_string(), "h".to_string()),
            (
                "x-amz-content-sha256".to_string(),
                sigv4::UNSIGNED_PAYLOAD.to_string(),
            ),
        ];
        let canonical = sigv4::canonical_request(&CanonicalInput {
            method: "GET",
            path: b"/demo",
            query: &[],
            headers: &headers,
            payload_hash: sigv4::UNSIGNED_PAYLOAD,
        });
        let amz = format_amz_date(at);
        let scope = format!("{}/us-east-1/s3/aws4_request", &amz[..8]);
        let key = sigv4::signing_key(SECRET, &amz[..8], "us-east-1", "s3");
        let sig = sigv4::sign(&key, &sigv4::string_to_sign(&amz, &scope, &canonical));
        let mut req = RequestHeader::build("GET", b"/demo", None).unwrap();
        for (n, v) in &headers {
            req.insert_header(n.clone(), v.clone()).unwrap();
        }
        req.insert_header(
            "authorization",
            format!(
                "{} Credential=KIKAKUDEMOACCESSKEY0/{scope}, SignedHeaders=date;host;x-amz-content-sha256, Signature={sig}",
                sigv4::ALGORITHM
            ),
        )
        .unwrap();
        assert_eq!(check(&req, at + 5).unwrap().amz_date, amz);
        assert_eq!(check(&req, at + 3600).unwrap_err(), SigError::Skewed);
    }
}
