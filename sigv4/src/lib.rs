//! AWS Signature Version 4 for S3: the canonical request, the signing key,
//! and the three things the gateway does with them — verify a client's
//! header or presigned signature, verify the chunk and trailer signatures of
//! a streaming upload, and sign its own requests to the storage backend.
//!
//! One implementation serves both directions, so what the gateway accepts
//! and what it sends cannot drift apart.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
pub const STREAMING_SIGNED: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
pub const STREAMING_SIGNED_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
pub const STREAMING_UNSIGNED_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
/// SHA-256 of the empty string, part of every chunk's string to sign.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// How long a header signature stays valid around the server's clock.
pub const MAX_SKEW_SECONDS: i64 = 15 * 60;
/// The longest a presigned URL may live (S3's own limit: 7 days).
pub const MAX_PRESIGN_SECONDS: i64 = 7 * 24 * 3600;

pub mod amz_date;
pub mod sigv2;

pub use amz_date::{format_amz_date, parse_amz_date, parse_http_date};
pub use chunked::{ChunkSigner, VerifiedSignature};
pub use client::{presign_query, sign_request, SigningCredential};
pub use encoding::{parse_query, percent_decode, uri_encode};

mod chunked;
mod client;
mod encoding;

type HmacSha256 = Hmac<Sha256>;

pub fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail here.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The key a signature is made with, derived from the secret and the scope.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// `<date>/<region>/<service>/aws4_request`, and who signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub access_key_id: String,
    /// `YYYYMMDD`.
    pub date: String,
    pub region: String,
    pub service: String,
}

impl Credential {
    /// Parse `AKID/20130524/us-east-1/s3/aws4_request`.
    pub fn parse(s: &str) -> Result<Credential, SigError> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() != 5 || parts[4] != "aws4_request" || parts[0].is_empty() {
            return Err(SigError::Malformed(format!(
                "credential {s:?} is not <key id>/<date>/<region>/<service>/aws4_request"
            )));
        }
        if parts[1].len() != 8 || !parts[1].bytes().all(|b| b.is_ascii_digit()) {
            return Err(SigError::Malformed(format!(
                "credential date {:?} is not YYYYMMDD",
                parts[1]
            )));
        }
        Ok(Credential {
            access_key_id: parts[0].to_string(),
            date: parts[1].to_string(),
            region: parts[2].to_string(),
            service: parts[3].to_string(),
        })
    }

    pub fn scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

/// Why a signature was refused. Each maps to an S3 error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigError {
    /// The request carries no SigV4 at all.
    Missing,
    /// The Authorization header or the query parameters do not parse.
    Malformed(String),
    /// Unknown access key id.
    UnknownAccessKey,
    /// The signature does not match.
    Mismatch,
    /// The request's date is too far from the server's clock.
    Skewed,
    /// A presigned URL past its expiry.
    Expired,
    /// The payload does not match its declared hash or chunk signature.
    PayloadMismatch(String),
    /// The credential scope names another region than the gateway's.
    WrongRegion { got: String, expected: String },
    /// `x-amz-*` headers the signature does not cover.
    UnsignedHeaders(Vec<String>),
}

impl SigError {
    /// The S3 error code for this refusal.
    pub fn s3_code(&self) -> &'static str {
        match self {
            SigError::Missing => "AccessDenied",
            SigError::Malformed(_) => "AuthorizationHeaderMalformed",
            SigError::UnknownAccessKey => "InvalidAccessKeyId",
            SigError::Mismatch => "SignatureDoesNotMatch",
            SigError::Skewed => "RequestTimeTooSkewed",
            SigError::Expired => "AccessDenied",
            SigError::PayloadMismatch(_) => "XAmzContentSHA256Mismatch",
            SigError::WrongRegion { .. } => "AuthorizationHeaderMalformed",
            SigError::UnsignedHeaders(_) => "AccessDenied",
        }
    }

    pub fn message(&self) -> String {
        match self {
            SigError::Missing => "Request is not signed with AWS Signature Version 4.".into(),
            SigError::Malformed(m) => format!("Malformed authorization: {m}"),
            SigError::UnknownAccessKey => {
                "The AWS access key Id you provided does not exist in our records.".into()
            }
            SigError::Mismatch => "The request signature we calculated does not match the \
                                   signature you provided. Check your key and signing method."
                .into(),
            SigError::Skewed => {
                "The difference between the request time and the server's time is too large.".into()
            }
            SigError::Expired => "Request has expired".into(),
            SigError::PayloadMismatch(m) => m.clone(),
            SigError::WrongRegion { got, expected } => format!(
                "the region '{got}' is wrong; expecting '{expected}': sign for region {expected}"
            ),
            SigError::UnsignedHeaders(names) => format!(
                "There were headers present in the request which were not signed: {}. \
                 Sign every x-amz-* header, or leave it out.",
                names.join(", ")
            ),
        }
    }
}

/// What the client says about the body, from `x-amz-content-sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadMode {
    /// `UNSIGNED-PAYLOAD` (and presigned URLs).
    Unsigned,
    /// The hex SHA-256 of the whole body.
    Sha256(String),
    /// aws-chunked with a signature per chunk.
    StreamingSigned { trailer: bool },
    /// aws-chunked without chunk signatures, a checksum in the trailer.
    StreamingUnsignedTrailer,
}

impl PayloadMode {
    pub fn parse(value: &str) -> Result<PayloadMode, SigError> {
        Ok(match value {
            UNSIGNED_PAYLOAD => PayloadMode::Unsigned,
            STREAMING_SIGNED => PayloadMode::StreamingSigned { trailer: false },
            STREAMING_SIGNED_TRAILER => PayloadMode::StreamingSigned { trailer: true },
            STREAMING_UNSIGNED_TRAILER => PayloadMode::StreamingUnsignedTrailer,
            v if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
                PayloadMode::Sha256(v.to_ascii_lowercase())
            }
            v => {
                return Err(SigError::Malformed(format!(
                    "x-amz-content-sha256 {v:?} is not a SHA-256 or a known payload mode"
                )))
            }
        })
    }

    pub fn is_streaming(&self) -> bool {
        matches!(
            self,
            PayloadMode::StreamingSigned { .. } | PayloadMode::StreamingUnsignedTrailer
        )
    }
}

/// A SigV4 signature as the request presents it (header or query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub credential: Credential,
    /// Lower-case header names, in the order given.
    pub signed_headers: Vec<String>,
    pub signature: String,
    /// `YYYYMMDDTHHMMSSZ`.
    pub amz_date: String,
    /// Presigned URL lifetime in seconds; `None` for header auth.
    pub expires: Option<i64>,
}

/// Does the request carry an AWS signature (SigV4, or SigV2, which boto3
/// still presigns with against a custom endpoint)?
pub fn is_aws_signed(authorization: Option<&str>, query: Option<&str>) -> bool {
    authorization.is_some_and(|a| a.starts_with(ALGORITHM) || a.starts_with("AWS "))
        || query.is_some_and(|q| {
            q.split('&')
                .any(|p| p.starts_with("X-Amz-Algorithm=") || p.starts_with("AWSAccessKeyId="))
        })
}

/// A header's value as text: UTF-8 when it is, else ISO-8859-1 (what
/// Python's http.client puts on the wire for a non-ASCII `str`, which
/// botocore signed as UTF-8).
pub fn header_text(v: &http::HeaderValue) -> Option<String> {
    let b = v.as_bytes();
    match std::str::from_utf8(b) {
        Ok(s) => Some(s.to_string()),
        Err(_) => Some(b.iter().map(|&c| c as char).collect()),
    }
}

/// Parse `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
pub fn parse_authorization(value: &str, amz_date: Option<&str>) -> Result<Presented, SigError> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .ok_or(SigError::Missing)?
        .trim_start();
    let (mut cred, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            cred = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            sig = Some(v);
        }
    }
    let missing = |what: &str| SigError::Malformed(format!("Authorization lacks {what}"));
    let credential = Credential::parse(cred.ok_or_else(|| missing("Credential"))?)?;
    let amz_date = amz_date.ok_or_else(|| missing("an X-Amz-Date header"))?;
    Ok(Presented {
        credential,
        signed_headers: split_signed_headers(signed.ok_or_else(|| missing("SignedHeaders"))?),
        signature: check_signature_hex(sig.ok_or_else(|| missing("Signature"))?)?,
        amz_date: check_amz_date(amz_date)?,
        expires: None,
    })
}

/// Parse the `X-Amz-*` parameters of a presigned URL.
pub fn parse_presigned(query: &[(String, String)]) -> Result<Presented, SigError> {
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| SigError::Malformed(format!("presigned URL lacks {name}")))
    };
    if get("X-Amz-Algorithm")? != ALGORITHM {
        return Err(SigError::Malformed(
            "X-Amz-Algorithm must be AWS4-HMAC-SHA256".into(),
        ));
    }
    let expires: i64 = get("X-Amz-Expires")?
        .parse()
        .map_err(|_| SigError::Malformed("X-Amz-Expires is not a number".into()))?;
    if !(1..=MAX_PRESIGN_SECONDS).contains(&expires) {
        return Err(SigError::Malformed(format!(
            "X-Amz-Expires must be between 1 and {MAX_PRESIGN_SECONDS} seconds"
        )));
    }
    Ok(Presented {
        credential: Credential::parse(get("X-Amz-Credential")?)?,
        signed_headers: split_signed_headers(get("X-Amz-SignedHeaders")?),
        signature: check_signature_hex(get("X-Amz-Signature")?)?,
        amz_date: check_amz_date(get("X-Amz-Date")?)?,
        expires: Some(expires),
    })
}

fn split_signed_headers(s: &str) -> Vec<String> {
    s.split(';')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect()
}

fn check_signature_hex(s: &str) -> Result<String, SigError> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(SigError::Malformed("Signature is not 64 hex digits".into()))
    }
}

fn check_amz_date(s: &str) -> Result<String, SigError> {
    parse_amz_date(s)
        .map(|_| s.to_string())
        .ok_or_else(|| SigError::Malformed(format!("X-Amz-Date {s:?} is not YYYYMMDDTHHMMSSZ")))
}

/// The parts of a request that go into its canonical form.
pub struct CanonicalInput<'a> {
    pub method: &'a str,
    /// The decoded path, e.g. `/bucket/a key.txt`.
    pub path: &'a [u8],
    /// Decoded query pairs (presigned: without `X-Amz-Signature`).
    pub query: &'a [(String, String)],
    /// `(lower-case name, value)` for each signed header, in signed order.
    pub headers: &'a [(String, String)],
    pub payload_hash: &'a str,
}

/// The canonical request, exactly as SigV4 for S3 defines it (the path is
/// encoded once, not normalised).
pub fn canonical_request(input: &CanonicalInput<'_>) -> String {
    let mut query: Vec<(String, String)> = input
        .query
        .iter()
        .map(|(k, v)| {
            (
                uri_encode(k.as_bytes(), false),
                uri_encode(v.as_bytes(), false),
            )
        })
        .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut headers = String::new();
    for (name, value) in input.headers {
        headers.push_str(name);
        headers.push(':');
        headers.push_str(&normalize_header_value(value));
        headers.push('\n');
    }
    let signed: Vec<&str> = input.headers.iter().map(|(n, _)| n.as_str()).collect();
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        input.method,
        uri_encode(input.path, true),
        query,
        headers,
        signed.join(";"),
        input.payload_hash
    )
}

/// Trim, and collapse runs of spaces to one.
fn normalize_header_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut space = false;
    for c in v.trim().chars() {
        if c == ' ' {
            if !space {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    out
}

pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// The hex signature of a string to sign.
pub fn sign(key: &[u8; 32], string_to_sign: &str) -> String {
    hex::encode(hmac(key, string_to_sign.as_bytes()))
}

/// Constant-time comparison of two hex signatures.
pub fn signatures_match(expected: &str, presented: &str) -> bool {
    expected.len() == presented.len() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// Check the request time: header auth within the skew window, presigned
/// URLs not before their date (minus the skew) and not after it + expiry.
pub fn check_time(p: &Presented, now_unix: i64) -> Result<(), SigError> {
    let at = parse_amz_date(&p.amz_date).ok_or(SigError::Malformed("bad X-Amz-Date".into()))?;
    if !p.amz_date.starts_with(&p.credential.date) {
        return Err(SigError::Malformed(
            "credential date does not match X-Amz-Date".into(),
        ));
    }
    match p.expires {
        None if (now_unix - at).abs() > MAX_SKEW_SECONDS => Err(SigError::Skewed),
        Some(_) if at - now_unix > MAX_SKEW_SECONDS => Err(SigError::Skewed),
        Some(exp) if now_unix > at + exp => Err(SigError::Expired),
        _ => Ok(()),
    }
}

/// The secret and signing key of AWS's worked examples ("Signature
/// Calculations for the Authorization Header", "Authenticating Requests:
/// Using Query Parameters"), for the tests of this module's files.
#[cfg(test)]
mod examples {
    pub const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    pub fn key() -> [u8; 32] {
        super::signing_key(SECRET, "20130524", "us-east-1", "s3")
    }
}

#[cfg(test)]
mod tests {
    use super::examples::key;
    use super::*;

    #[test]
    fn get_object_example_signature() {
        let headers = vec![
            (
                "host".to_string(),
                "examplebucket.s3.amazonaws.com".to_string(),
            ),
            ("range".to_string(), "bytes=0-9".to_string()),
            ("x-amz-content-sha256".to_string(), EMPTY_SHA256.to_string()),
            ("x-amz-date".to_string(), "20130524T000000Z".to_string()),
        ];
        let canonical = canonical_request(&CanonicalInput {
            method: "GET",
            path: b"/test.txt",
            query: &[],
            headers: &headers,
            payload_hash: EMPTY_SHA256,
        });
        let sts = string_to_sign(
            "20130524T000000Z",
            "20130524/us-east-1/s3/aws4_request",
            &canonical,
        );
        assert_eq!(
            sign(&key(), &sts),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn list_objects_example_sorts_and_encodes_the_query() {
        let headers = vec![
            (
                "host".to_string(),
                "examplebucket.s3.amazonaws.com".to_string(),
            ),
            ("x-amz-content-sha256".to_string(), EMPTY_SHA256.to_string()),
            ("x-amz-date".to_string(), "20130524T000000Z".to_string()),
        ];
        let query = vec![
            ("prefix".to_string(), "J".to_string()),
            ("max-keys".to_string(), "2".to_string()),
        ];
        let canonical = canonical_request(&CanonicalInput {
            method: "GET",
            path: b"/",
            query: &query,
            headers: &headers,
            payload_hash: EMPTY_SHA256,
        });
        assert!(canonical.contains("\nmax-keys=2&prefix=J\n"));
        let sts = string_to_sign(
            "20130524T000000Z",
            "20130524/us-east-1/s3/aws4_request",
            &canonical,
        );
        assert_eq!(
            sign(&key(), &sts),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn presigned_example_signature() {
        let query: Vec<(String, String)> = [
            ("X-Amz-Algorithm", ALGORITHM),
            (
                "X-Amz-Credential",
                "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request",
            ),
            ("X-Amz-Date", "20130524T000000Z"),
            ("X-Amz-Expires", "86400"),
            ("X-Amz-SignedHeaders", "host"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let canonical = canonical_request(&CanonicalInput {
            method: "GET",
            path: b"/test.txt",
            query: &query,
            headers: &[("host".into(), "examplebucket.s3.amazonaws.com".into())],
            payload_hash: UNSIGNED_PAYLOAD,
        });
        let sts = string_to_sign(
            "20130524T000000Z",
            "20130524/us-east-1/s3/aws4_request",
            &canonical,
        );
        assert_eq!(
            sign(&key(), &sts),
            "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn authorization_header_parses() {
        let p = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
            Some("20130524T000000Z"),
        )
        .unwrap();
        assert_eq!(p.credential.access_key_id, "AKID");
        assert_eq!(p.signed_headers, vec!["host", "x-amz-date"]);
        assert!(matches!(
            parse_authorization("AWS4-HMAC-SHA256 Credential=AKID/2013/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00", Some("20130524T000000Z")),
            Err(SigError::Malformed(_))
        ));
    }

    #[test]
    fn clock_skew_and_expiry_are_bounded() {
        let p = |expires| Presented {
            credential: Credential::parse("A/20130524/us-east-1/s3/aws4_request").unwrap(),
            signed_headers: vec![],
            signature: String::new(),
            amz_date: "20130524T000000Z".into(),
            expires,
        };
        let at = 1_369_353_600;
        assert_eq!(check_time(&p(None), at + 14 * 60), Ok(()));
        assert_eq!(check_time(&p(None), at + 16 * 60), Err(SigError::Skewed));
        assert_eq!(check_time(&p(None), at - 16 * 60), Err(SigError::Skewed));
        assert_eq!(check_time(&p(Some(60)), at + 59), Ok(()));
        assert_eq!(check_time(&p(Some(60)), at + 61), Err(SigError::Expired));
    }
}
