//! aws-chunked bodies (signed chunks, and unsigned ones with a checksum
//! trailer) as the S3 endpoint decodes them: any bytes, cut anywhere, give
//! the same answer as in one piece, and a body the chunk signer writes
//! decodes to exactly its data.
#![no_main]

use bytes::Bytes;
use kikaku_edge::storage::payload::{PayloadError, PayloadVerifier};
use libfuzzer_sys::fuzz_target;
use sigv4::{sha256_hex, signing_key, ChunkSigner, PayloadMode};

const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";

fn signer() -> ChunkSigner {
    let key = signing_key(
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "20130524",
        "us-east-1",
        "s3",
    );
    ChunkSigner::new(
        key,
        "20130524T000000Z",
        "20130524/us-east-1/s3/aws4_request",
        SEED,
    )
}

fn verifier(signed: bool, declared: u64) -> PayloadVerifier {
    if signed {
        PayloadVerifier::new(
            &PayloadMode::StreamingSigned { trailer: false },
            declared,
            Some(signer()),
            None,
        )
    } else {
        PayloadVerifier::new(
            &PayloadMode::StreamingUnsignedTrailer,
            declared,
            None,
            Some("x-amz-checksum-crc32"),
        )
    }
    .unwrap()
}

/// Feed `body` cut at `cuts`; what comes out, or the error.
fn run(mut v: PayloadVerifier, body: &[u8], cuts: &[usize]) -> Result<Vec<u8>, PayloadError> {
    let mut out = Vec::new();
    let mut at = 0;
    for &c in cuts.iter().chain(std::iter::once(&body.len())) {
        let c = c.clamp(at, body.len());
        for b in v.push(Bytes::copy_from_slice(&body[at..c]))? {
            out.extend_from_slice(&b);
        }
        at = c;
    }
    if let Some(last) = v.finish()? {
        out.extend_from_slice(&last);
    }
    Ok(out)
}

/// A signed aws-chunked body of `data` in chunks of `sizes`.
fn encode_signed(data: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut s = signer();
    let mut body = Vec::new();
    let mut rest = data;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        let sig = s.next_chunk(&sha256_hex(chunk));
        body.extend_from_slice(format!("{n:x};chunk-signature={sig}\r\n").as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
        rest = tail;
    }
    let sig = s.next_chunk(&sha256_hex(b""));
    body.extend_from_slice(format!("0;chunk-signature={sig}\r\n\r\n").as_bytes());
    body
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let Some((&cut_byte, body)) = rest.split_first() else {
        return;
    };
    let cuts: Vec<usize> = (1..=(cut_byte as usize % 5))
        .map(|i| i * (cut_byte as usize + 1) % (body.len() + 1))
        .collect();
    let mut sorted = cuts.clone();
    sorted.sort_unstable();
    match mode % 3 {
        // Any bytes as a body: cut or whole, the same answer.
        0 | 1 => {
            let signed = mode % 3 == 0;
            let declared = body.len() as u64 / 2;
            let whole = run(verifier(signed, declared), body, &[]);
            let cut = run(verifier(signed, declared), body, &sorted);
            match (&whole, &cut) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(_), Err(_)) => {}
                _ => panic!("whole {whole:?} but cut at {sorted:?} {cut:?}"),
            }
        }
        // What the signer writes decodes to its data.
        _ => {
            let sizes: Vec<usize> = cuts.iter().map(|c| c % 97 + 1).chain([8192]).collect();
            let encoded = encode_signed(body, &sizes);
            let out = run(verifier(true, body.len() as u64), &encoded, &sorted)
                .unwrap_or_else(|e| panic!("a signed body was refused: {e}"));
            assert_eq!(out, body);
        }
    }
});
