//! AWS Signature Version 2 for S3, header (`Authorization: AWS id:sig`) and
//! query string (`AWSAccessKeyId`, `Signature`, `Expires`) forms.
//!
//! AWS retired it, but boto3 built as the seed prints it (no `Config`)
//! still presigns with it against a custom endpoint, and MinIO and Ceph RGW
//! accept it. It signs the method, `Content-MD5`, `Content-Type`, the date
//! (or, presigned, the expiry), every `x-amz-*` header and the path with its
//! sub-resources: an added `x-amz-*` header breaks the signature, so the V4
//! rule "every x-amz header is signed" holds by construction. The payload
//! is not signed; `Content-MD5` and `x-amz-content-sha256` still are checked
//! as the body streams.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use pingora_http::RequestHeader;
use sha1::Sha1;

use crate as sigv4;
use crate::{header_text, PayloadMode, SigError, VerifiedSignature};

/// Query parameters that name a sub-resource and so are signed (botocore's
/// list, which is AWS's).
const SUB_RESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// A SigV2 signature as the request presents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Presented {
    pub access_key_id: String,
    /// Base64, as sent.
    pub signature: String,
    /// Presigned: unix seconds after which the URL is dead.
    pub expires: Option<i64>,
}

/// The V2 signature of a request, `None` when it carries none.
pub fn parse(
    authorization: Option<&str>,
    query: &[(String, String)],
) -> Result<Option<V2Presented>, SigError> {
    if let Some(rest) = authorization.and_then(|a| a.strip_prefix("AWS ")) {
        let (id, sig) = rest
            .trim()
            .split_once(':')
            .filter(|(id, sig)| !id.is_empty() && !sig.is_empty())
            .ok_or_else(|| {
                SigError::Malformed("a V2 Authorization header is `AWS <id>:<signature>`".into())
            })?;
        return Ok(Some(V2Presented {
            access_key_id: id.to_string(),
            signature: sig.to_string(),
            expires: None,
        }));
    }
    let get = |n: &str| query.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let Some(id) = get("AWSAccessKeyId") else {
        return Ok(None);
    };
    let (sig, expires) = match (get("Signature"), get("Expires")) {
        (Some(s), Some(e)) => (s, e),
        _ => {
            return Err(SigError::Malformed(
                "a V2 presigned URL needs AWSAccessKeyId, Signature and Expires".into(),
            ))
        }
    };
    let expires = expires
        .parse::<i64>()
        .map_err(|_| SigError::Malformed("Expires must be unix seconds".into()))?;
    Ok(Some(V2Presented {
        access_key_id: id.to_string(),
        signature: sig.to_string(),
        expires: Some(expires),
    }))
}

/// `x-amz-*` headers, lower-cased and sorted, one `name:value` line each.
fn canonical_amz_headers(req: &RequestHeader) -> String {
    let mut names: Vec<&str> = req
        .headers
        .keys()
        .map(|n| n.as_str())
        .filter(|n| n.starts_with("x-amz-"))
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut out = String::new();
    for name in names {
        let values: Vec<String> = req
            .headers
            .get_all(name)
            .iter()
            .filter_map(header_text)
            .map(|v| v.trim().to_string())
            .collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out
}

/// The path as sent, then the signed sub-resources, sorted, values decoded.
fn canonical_resource(req: &RequestHeader, path: &str) -> Result<String, SigError> {
    let mut out = path.to_string();
    let mut subs: Vec<(&str, Option<String>)> = Vec::new();
    for pair in req.uri.query().unwrap_or("").split('&') {
        let (name, value) = match pair.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (pair, None),
        };
        if !SUB_RESOURCES.contains(&name) {
            continue;
        }
        let value = match value {
            Some(v) => Some(
                sigv4::percent_decode(v)
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        SigError::Malformed(format!("the query value of {name} is not UTF-8"))
                    })?,
            ),
            None => None,
        };
        subs.push((name, value));
    }
    subs.sort_by(|a, b| a.0.cmp(b.0));
    for (i, (name, value)) in subs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(name);
        if let Some(v) = value {
            out.push('=');
            out.push_str(v);
        }
    }
    Ok(out)
}

/// The string a V2 signature signs.
pub fn string_to_sign(req: &RequestHeader, expires: Option<i64>) -> Result<String, SigError> {
    string_to_sign_for(req, req.uri.path(), expires)
}

/// The same, for the path as the signer saw it.
fn string_to_sign_for(
    req: &RequestHeader,
    path: &str,
    expires: Option<i64>,
) -> Result<String, SigError> {
    let h = |n: &str| {
        req.headers
            .get(n)
            .and_then(header_text)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let date = match expires {
        Some(e) => e.to_string(),
        None => h("date"),
    };
    Ok(format!(
        "{}\n{}\n{}\n{}\n{}{}",
        req.method.as_str(),
        h("content-md5"),
        h("content-type"),
        date,
        canonical_amz_headers(req),
        canonical_resource(req, path)?,
    ))
}

/// Base64 of HMAC-SHA1 over `string_to_sign`.
pub fn sign(secret: &str, string_to_sign: &str) -> String {
    let mut mac = <Hmac<Sha1>>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The request time of a header-signed request: `x-amz-date` (HTTP date or
/// `YYYYMMDDTHHMMSSZ`), else `Date`.
fn request_time(req: &RequestHeader) -> Result<i64, SigError> {
    let raw = req
        .headers
        .get("x-amz-date")
        .or_else(|| req.headers.get("date"))
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| SigError::Malformed("a V2 signed request needs a Date header".into()))?;
    sigv4::parse_http_date(raw)
        .or_else(|| sigv4::parse_amz_date(raw))
        .ok_or_else(|| SigError::Malformed(format!("the request date {raw:?} does not parse")))
}

/// Verify a V2 signature with `secret` at `now` (unix seconds).
pub fn verify(
    req: &RequestHeader,
    p: &V2Presented,
    secret: &str,
    now: i64,
) -> Result<VerifiedSignature, SigError> {
    match p.expires {
        Some(e) if now > e => return Err(SigError::Expired),
        Some(e) if e - now > sigv4::MAX_PRESIGN_SECONDS => {
            return Err(SigError::Malformed(
                "a presigned URL may live at most 7 days (604800 seconds)".into(),
            ))
        }
        Some(_) => {}
        None => {
            if (request_time(req)? - now).abs() > sigv4::MAX_SKEW_SECONDS {
                return Err(SigError::Skewed);
            }
        }
    }
    let payload = match req
        .headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
    {
        Some(v) => match PayloadMode::parse(v)? {
            m if m.is_streaming() => {
                return Err(SigError::Malformed(
                    "aws-chunked uploads need Signature Version 4".into(),
                ))
            }
            m => m,
        },
        None => PayloadMode::Unsigned,
    };
    // botocore signs a bucket-level request (`/bucket`) as `/bucket/`, as
    // virtual-host style would have it; MinIO accepts both, and so do we.
    let path = req.uri.path();
    let bucket_only = path.len() > 1 && !path[1..].contains('/');
    let with_slash = format!("{path}/");
    let paths: &[&str] = if bucket_only {
        &[path, &with_slash]
    } else {
        &[path]
    };
    let mut matched = false;
    for candidate in paths {
        let expected = sign(secret, &string_to_sign_for(req, candidate, p.expires)?);
        matched |= sigv4::signatures_match(&expected, &p.signature);
    }
    if !matched {
        return Err(SigError::Mismatch);
    }
    Ok(VerifiedSignature::without_chunk_chain(
        payload,
        p.expires.is_some(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, uri.as_bytes(), None).unwrap();
        for (n, v) in headers {
            r.append_header(n.to_string(), *v).unwrap();
        }
        r
    }

    /// AWS's own worked example ("Signing and authenticating REST requests",
    /// Object GET): the same string to sign and signature.
    #[test]
    fn aws_documented_example() {
        let r = req(
            "GET",
            "/awsexamplebucket1/photos/puppy.jpg",
            &[("date", "Tue, 27 Mar 2007 19:36:42 +0000")],
        );
        let sts = string_to_sign(&r, None).unwrap();
        assert_eq!(
            sts,
            "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg"
        );
        assert_eq!(sign(SECRET, &sts), "qgk2+6Sv9/oM7G3qLEjTH1a1l1g=");
    }

    #[test]
    fn amz_headers_and_sub_resources_are_signed() {
        let r = req(
            "PUT",
            "/b/k?uploadId=a%2Fb&partNumber=2&x-id=PutObject",
            &[
                ("content-type", "text/plain"),
                ("x-amz-meta-b", "2"),
                ("X-Amz-Meta-A", " 1 "),
                ("x-amz-meta-a", "3"),
            ],
        );
        let sts = string_to_sign(&r, Some(1_800_000_000)).unwrap();
        assert_eq!(
            sts,
            "PUT\n\ntext/plain\n1800000000\nx-amz-meta-a:1,3\nx-amz-meta-b:2\n\
             /b/k?partNumber=2&uploadId=a/b"
        );
        let bare = req("POST", "/b/k?uploads", &[]);
        assert!(string_to_sign(&bare, Some(1))
            .unwrap()
            .ends_with("/b/k?uploads"));
    }

    /// botocore signs `GET /demo?prefix=x` as `/demo/`.
    #[test]
    fn a_bucket_path_verifies_with_or_without_its_slash() {
        let date = "Fri, 15 Jan 2027 08:00:00 GMT";
        let t = sigv4::parse_http_date(date).unwrap();
        for signed in ["/demo/", "/demo"] {
            let sig = sign(SECRET, &format!("GET\n\n\n{date}\n{signed}"));
            let r = req("GET", "/demo?prefix=x", &[("date", date)]);
            let p = V2Presented {
                access_key_id: "AKID".into(),
                signature: sig,
                expires: None,
            };
            assert!(verify(&r, &p, SECRET, t).is_ok(), "{signed}");
        }
        // Not for an object path: `/demo/k/` is another object.
        let sig = sign(SECRET, &format!("GET\n\n\n{date}\n/demo/k/"));
        let r = req("GET", "/demo/k", &[("date", date)]);
        let p = V2Presented {
            access_key_id: "AKID".into(),
            signature: sig,
            expires: None,
        };
        assert_eq!(verify(&r, &p, SECRET, t).unwrap_err(), SigError::Mismatch);
    }

    #[test]
    fn header_and_query_forms_parse() {
        let p = parse(Some("AWS AKID:c2ln"), &[]).unwrap().unwrap();
        assert_eq!((p.access_key_id.as_str(), p.expires), ("AKID", None));
        let q = vec![
            ("AWSAccessKeyId".to_string(), "AKID".to_string()),
            ("Signature".to_string(), "c2ln".to_string()),
            ("Expires".to_string(), "1800000000".to_string()),
        ];
        assert_eq!(
            parse(None, &q).unwrap().unwrap().expires,
            Some(1_800_000_000)
        );
        assert!(parse(None, &q[..2]).is_err());
        assert!(parse(Some("AWS nocolon"), &[]).is_err());
        assert_eq!(parse(None, &[]).unwrap(), None);
    }

    #[test]
    fn verify_checks_signature_expiry_and_skew() {
        let now = 1_800_000_000;
        let uri = |sig: &str, exp: i64| {
            format!(
                "/b/k?AWSAccessKeyId=AKID&Expires={exp}&Signature={}",
                sigv4::uri_encode(sig.as_bytes(), false)
            )
        };
        let exp = now + 60;
        let good = sign(SECRET, "GET\n\n\n1800000060\n/b/k");
        let r = req("GET", &uri(&good, exp), &[]);
        let p = V2Presented {
            access_key_id: "AKID".into(),
            signature: good.clone(),
            expires: Some(exp),
        };
        assert!(verify(&r, &p, SECRET, now).unwrap().presigned);
        assert_eq!(
            verify(&r, &p, SECRET, exp + 1).unwrap_err(),
            SigError::Expired
        );
        assert_eq!(
            verify(&r, &p, "other", now).unwrap_err(),
            SigError::Mismatch
        );
        // An added x-amz header changes what was signed.
        let tampered = req("GET", &uri(&good, exp), &[("x-amz-copy-source", "/b/x")]);
        assert_eq!(
            verify(&tampered, &p, SECRET, now).unwrap_err(),
            SigError::Mismatch
        );
        // Header form: the Date must be near the clock.
        let date = "Fri, 15 Jan 2027 08:00:00 GMT";
        let t = sigv4::parse_http_date(date).unwrap();
        let sig = sign(SECRET, &format!("GET\n\n\n{date}\n/b/k"));
        let r = req("GET", "/b/k", &[("date", date)]);
        let p = V2Presented {
            access_key_id: "AKID".into(),
            signature: sig,
            expires: None,
        };
        assert!(!verify(&r, &p, SECRET, t + 10).unwrap().presigned);
        assert_eq!(
            verify(&r, &p, SECRET, t + 3600).unwrap_err(),
            SigError::Skewed
        );
    }
}
