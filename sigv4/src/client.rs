//! SigV4 for the requests the gateway itself sends (to the storage
//! backend) and the presigned URLs it hands out.

use super::*;

/// Sign a request the gateway itself sends (to the storage backend) with
/// header auth. `headers` must already hold `host`; this adds
/// `x-amz-date` and `x-amz-content-sha256` and returns the `Authorization`
/// value. Every header given is signed.
pub fn sign_request(
    method: &str,
    path: &[u8],
    query: &[(String, String)],
    headers: &mut Vec<(String, String)>,
    payload_hash: &str,
    cred: &SigningCredential<'_>,
    now_unix: i64,
) -> String {
    let amz_date = format_amz_date(now_unix);
    headers.push(("x-amz-date".into(), amz_date.clone()));
    headers.push(("x-amz-content-sha256".into(), payload_hash.to_string()));
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let canonical = canonical_request(&CanonicalInput {
        method,
        path,
        query,
        headers,
        payload_hash,
    });
    let date = &amz_date[..8];
    let scope = format!("{date}/{}/s3/aws4_request", cred.region);
    let key = signing_key(cred.secret_access_key, date, cred.region, "s3");
    let signature = sign(&key, &string_to_sign(&amz_date, &scope, &canonical));
    let signed: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
        cred.access_key_id,
        signed.join(";")
    )
}

/// A presigned URL's query for a request the gateway hands out (the
/// management API, the portal). Returns the query string to append.
pub fn presign_query(
    method: &str,
    path: &[u8],
    host: &str,
    expires: i64,
    cred: &SigningCredential<'_>,
    now_unix: i64,
) -> String {
    let amz_date = format_amz_date(now_unix);
    let date = &amz_date[..8];
    let scope = format!("{date}/{}/s3/aws4_request", cred.region);
    let mut query = vec![
        ("X-Amz-Algorithm".to_string(), ALGORITHM.to_string()),
        (
            "X-Amz-Credential".to_string(),
            format!("{}/{scope}", cred.access_key_id),
        ),
        ("X-Amz-Date".to_string(), amz_date.clone()),
        ("X-Amz-Expires".to_string(), expires.to_string()),
        ("X-Amz-SignedHeaders".to_string(), "host".to_string()),
    ];
    let canonical = canonical_request(&CanonicalInput {
        method,
        path,
        query: &query,
        headers: &[("host".to_string(), host.to_string())],
        payload_hash: UNSIGNED_PAYLOAD,
    });
    let key = signing_key(cred.secret_access_key, date, cred.region, "s3");
    let signature = sign(&key, &string_to_sign(&amz_date, &scope, &canonical));
    query.push(("X-Amz-Signature".to_string(), signature));
    query
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                uri_encode(k.as_bytes(), false),
                uri_encode(v.as_bytes(), false)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Who signs: an access key id, its secret and the region.
#[derive(Debug, Clone, Copy)]
pub struct SigningCredential<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub region: &'a str,
}

#[cfg(test)]
mod tests {
    use super::super::examples::SECRET;
    use super::*;

    #[test]
    fn what_is_signed_is_verified() {
        let cred = SigningCredential {
            access_key_id: "AKID",
            secret_access_key: SECRET,
            region: "us-east-1",
        };
        let mut headers = vec![("host".to_string(), "127.0.0.1:9000".to_string())];
        let auth = sign_request(
            "PUT",
            b"/bucket/key with space",
            &[],
            &mut headers,
            UNSIGNED_PAYLOAD,
            &cred,
            1_700_000_000,
        );
        let p = parse_authorization(&auth, Some(&format_amz_date(1_700_000_000))).unwrap();
        assert_eq!(
            p.signed_headers,
            vec!["host", "x-amz-content-sha256", "x-amz-date"]
        );
        let canonical = canonical_request(&CanonicalInput {
            method: "PUT",
            path: b"/bucket/key with space",
            query: &[],
            headers: &headers,
            payload_hash: UNSIGNED_PAYLOAD,
        });
        let k = signing_key(SECRET, &p.credential.date, "us-east-1", "s3");
        let expected = sign(
            &k,
            &string_to_sign(&p.amz_date, &p.credential.scope(), &canonical),
        );
        assert!(signatures_match(&expected, &p.signature));
    }
}
