//! SigV4 and V2 as the `s3_auth` filter reads them: any request head gives
//! an answer (never a panic), and a request the client signer signs
//! verifies, while one changed byte of its signature does not.
#![no_main]

use kikaku_filters::s3_auth::presented;
use libfuzzer_sys::fuzz_target;
use pingora_http::RequestHeader;
use sigv4::{sign_request, uri_encode, SigError, SigningCredential, UNSIGNED_PAYLOAD};

const SECRET: &str = "fuzz-secret-key-0123456789abcdefghij";
const NOW: i64 = 1_800_000_000;

/// Method, URI, then `name: value` header lines.
fn any_request(text: &str) {
    let mut lines = text.split('\n');
    let (Some(method), Some(uri)) = (lines.next(), lines.next()) else {
        return;
    };
    let Ok(mut req) = RequestHeader::build(method, uri.as_bytes(), None) else {
        return;
    };
    for line in lines {
        if let Some((n, v)) = line.split_once(':') {
            let _ = req.append_header(n.trim().to_string(), v.trim());
        }
    }
    if let Ok(signed) = presented(&req) {
        let _ = signed.access_key_id();
        let _ = signed.verify(&req, SECRET, "us-east-1", NOW);
    }
}

/// Sign `path`, `query` and one extra header, then verify.
fn round_trip(data: &[u8]) {
    let mut parts = data.split(|b| *b == 0);
    let path: Vec<u8> = std::iter::once(b'/')
        .chain(parts.next().unwrap_or_default().iter().copied())
        .collect();
    let query: Vec<(String, String)> = parts
        .next()
        .unwrap_or_default()
        .split(|b| *b == b'&')
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=').unwrap_or((&kv, ""));
            (!k.is_empty() && !k.starts_with("X-Amz-")).then(|| (k.to_string(), v.to_string()))
        })
        .collect();
    let extra: String = String::from_utf8_lossy(parts.next().unwrap_or_default())
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect::<String>()
        .trim()
        .to_string();
    let mut headers = vec![("host".to_string(), "127.0.0.1:8080".to_string())];
    if !extra.is_empty() {
        headers.push(("x-amz-meta-fuzz".to_string(), extra));
    }
    let cred = SigningCredential {
        access_key_id: "FUZZACCESSKEY0000001",
        secret_access_key: SECRET,
        region: "us-east-1",
    };
    let auth = sign_request(
        "PUT",
        &path,
        &query,
        &mut headers,
        UNSIGNED_PAYLOAD,
        &cred,
        NOW,
    );
    let q: Vec<String> = query
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                uri_encode(k.as_bytes(), false),
                uri_encode(v.as_bytes(), false)
            )
        })
        .collect();
    let mut uri = uri_encode(&path, true);
    if !q.is_empty() {
        uri = format!("{uri}?{}", q.join("&"));
    }
    let build = |auth: &str| {
        let mut req = RequestHeader::build("PUT", uri.as_bytes(), None).expect("an encoded URI");
        for (n, v) in &headers {
            req.insert_header(n.clone(), v.as_str()).unwrap();
        }
        req.insert_header("authorization", auth).unwrap();
        req
    };
    let req = build(&auth);
    let signed = presented(&req).expect("the signer's own Authorization parses");
    if let Err(e) = signed.verify(&req, SECRET, "us-east-1", NOW) {
        panic!("a correctly signed request was refused: {e:?}\nuri {uri}\nheaders {headers:?}");
    }
    // One hex digit of the signature changed: refused as a mismatch.
    let last = auth.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &auth[..auth.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    let req = build(&flipped);
    let signed = presented(&req).unwrap();
    assert_eq!(
        signed.verify(&req, SECRET, "us-east-1", NOW).unwrap_err(),
        SigError::Mismatch
    );
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0, rest)) => round_trip(rest),
        Some((_, rest)) => any_request(&String::from_utf8_lossy(rest)),
        None => {}
    }
});
