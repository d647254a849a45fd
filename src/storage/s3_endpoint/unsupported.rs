//! Request headers that ask S3 for something this gateway does not do:
//! server-side encryption (SSE-C, SSE-KMS, SSE-S3), canned ACLs other than
//! private, grants, and object lock. They are refused with 501
//! `NotImplemented` instead of being dropped, so no client believes its
//! object is encrypted, public or locked when it is not.

use kikaku_filters::{ErrorKind, GatewayError};
use pingora::http::RequestHeader;

use super::s3_error;

/// Canned ACLs that say what every object here already is.
const HARMLESS_ACLS: &[&str] = &["private", "bucket-owner-full-control"];

fn refuse(what: &str, header: &str) -> GatewayError {
    s3_error(
        ErrorKind::NotImplemented,
        501,
        "NotImplemented",
        format!(
            "{what} is not supported by this gateway ({header}); send the request \
             without it. Objects are stored as sent, private to your key."
        ),
    )
}

/// The first unsupported header of the request, as its refusal.
pub(super) fn check(req: &RequestHeader) -> Result<(), GatewayError> {
    for (name, value) in req.headers.iter() {
        let n = name.as_str();
        let v = value.to_str().unwrap_or("").trim();
        if n.starts_with("x-amz-server-side-encryption")
            || n.starts_with("x-amz-copy-source-server-side-encryption")
        {
            return Err(refuse("Server-side encryption", n));
        }
        if n == "x-amz-acl" && !HARMLESS_ACLS.iter().any(|a| a.eq_ignore_ascii_case(v)) {
            return Err(refuse("A canned ACL other than private", n));
        }
        if n.starts_with("x-amz-grant-") {
            return Err(refuse("Access grants", n));
        }
        if n.starts_with("x-amz-object-lock-")
            || (n == "x-amz-bucket-object-lock-enabled" && !v.eq_ignore_ascii_case("false"))
        {
            return Err(refuse("Object lock", n));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("PUT", b"/b/k", None).unwrap();
        for (n, v) in headers {
            r.insert_header(n.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn sse_acls_grants_and_locks_are_refused() {
        for h in [
            ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
            ("x-amz-server-side-encryption", "aws:kms"),
            ("x-amz-copy-source-server-side-encryption-customer-key", "k"),
            ("x-amz-acl", "public-read"),
            (
                "x-amz-grant-read",
                "uri=http://acs.amazonaws.com/groups/global/AllUsers",
            ),
            ("x-amz-object-lock-mode", "GOVERNANCE"),
            ("x-amz-bucket-object-lock-enabled", "true"),
        ] {
            let e = check(&req(&[h])).unwrap_err();
            assert_eq!(e.s3.map(|s| s.1), Some("NotImplemented"), "{h:?}");
        }
    }

    #[test]
    fn what_is_already_true_passes() {
        assert!(check(&req(&[("x-amz-acl", "private"), ("x-amz-meta-a", "1")])).is_ok());
        assert!(check(&req(&[("x-amz-bucket-object-lock-enabled", "false")])).is_ok());
    }
}
