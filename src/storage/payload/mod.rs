//! Verifying an S3 request body while it streams through, in each of the
//! payload modes SigV4 allows: unsigned, a SHA-256 of the whole body, and
//! aws-chunked with chunk signatures and/or a trailing checksum.
//!
//! The verifier is fed the body as it arrives and hands back the bytes to
//! forward. It always holds back the last piece until the next one (or the
//! end) has been verified: the backend is told the decoded length up front,
//! so it never sees a complete object unless every signature and checksum
//! held. A tampered chunk, a bad trailer or a body longer or shorter than
//! declared therefore stores nothing.

use base64::Engine;
use bytes::Bytes;
use md5::{Digest as _, Md5};
use sha2::{Digest, Sha256};
use sigv4::{signatures_match, ChunkSigner, PayloadMode};

mod checksum;
mod chunked;

pub use checksum::{Checksum, ChecksumAlgorithm};
use chunked::Chunked;

/// What S3 says of a malformed `Content-MD5` (InvalidDigest) and of a body
/// that does not match it (BadDigest).
pub const INVALID_DIGEST: &str = "The Content-MD5 you specified is not valid.";
pub const BAD_DIGEST: &str = "The Content-MD5 you specified did not match what we received.";

/// The largest chunk accepted in aws-chunked bodies. A signed chunk is held
/// whole until its signature is checked, so this bounds memory per upload.
pub const MAX_CHUNK: usize = 16 << 20;
/// The longest chunk-header or trailer line.
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError(pub String);

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, PayloadError> {
    Err(PayloadError(msg.into()))
}

/// Feeds a request body through verification; see the module comment.
pub struct PayloadVerifier {
    kind: Kind,
    /// The verified piece not yet released.
    held: Option<Bytes>,
    /// Decoded bytes seen so far.
    decoded: u64,
    /// `Content-MD5`, when the client sent one: the MD5 it names, and the
    /// MD5 of the decoded body so far.
    content_md5: Option<([u8; 16], Md5)>,
    /// The decoded length the client declared (Content-Length or
    /// x-amz-decoded-content-length).
    declared: u64,
}

enum Kind {
    /// Nothing to verify beyond the length.
    Plain,
    /// The body's SHA-256 must equal the signed one.
    Sha256 {
        expected: String,
        hasher: Sha256,
    },
    Chunked(Box<Chunked>),
}

impl PayloadVerifier {
    /// `signer`: for signed chunks, the chain seeded with the request's
    /// signature. `trailer`: the value of `x-amz-trailer`, if any.
    pub fn new(
        mode: &PayloadMode,
        declared: u64,
        signer: Option<ChunkSigner>,
        trailer: Option<&str>,
    ) -> Result<PayloadVerifier, PayloadError> {
        let kind = match mode {
            PayloadMode::Unsigned => Kind::Plain,
            PayloadMode::Sha256(expected) => Kind::Sha256 {
                expected: expected.clone(),
                hasher: Sha256::new(),
            },
            PayloadMode::StreamingSigned { trailer: with } => {
                let signer = match signer {
                    Some(s) => s,
                    None => return err("signed chunks need the request's signature"),
                };
                Kind::Chunked(Box::new(Chunked::new(
                    Some(signer),
                    trailer_checksum(*with, trailer)?,
                )))
            }
            PayloadMode::StreamingUnsignedTrailer => Kind::Chunked(Box::new(Chunked::new(
                None,
                trailer_checksum(true, trailer)?,
            ))),
        };
        Ok(PayloadVerifier {
            kind,
            held: None,
            decoded: 0,
            content_md5: None,
            declared,
        })
    }

    /// Also check the decoded body against `Content-MD5` (base64 of 16
    /// bytes), so a body that fails it never completes at the backend,
    /// whatever the backend checks itself.
    pub fn with_content_md5(mut self, value: Option<&str>) -> Result<Self, PayloadError> {
        if let Some(v) = value {
            let digest = base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
                .and_then(|d| <[u8; 16]>::try_from(d).ok());
            match digest {
                Some(d) => self.content_md5 = Some((d, Md5::new())),
                None => return err(INVALID_DIGEST),
            }
        }
        Ok(self)
    }

    pub fn declared(&self) -> u64 {
        self.declared
    }

    /// Feed the next raw bytes of the body; returns what may be forwarded.
    pub fn push(&mut self, input: Bytes) -> Result<Vec<Bytes>, PayloadError> {
        let verified = match &mut self.kind {
            Kind::Plain => vec![input],
            Kind::Sha256 { hasher, .. } => {
                hasher.update(&input);
                vec![input]
            }
            Kind::Chunked(c) => c.push(input)?,
        };
        let mut out = Vec::with_capacity(verified.len());
        for piece in verified.into_iter().filter(|p| !p.is_empty()) {
            if let Some((_, md5)) = &mut self.content_md5 {
                md5.update(&piece);
            }
            self.decoded += piece.len() as u64;
            if self.decoded > self.declared {
                return err(format!(
                    "the body is longer than the declared {} bytes",
                    self.declared
                ));
            }
            if let Some(prev) = self.held.replace(piece) {
                out.push(prev);
            }
        }
        Ok(out)
    }

    /// The body ended: verify what is left and release the held piece.
    pub fn finish(&mut self) -> Result<Option<Bytes>, PayloadError> {
        match &mut self.kind {
            Kind::Plain => {}
            Kind::Sha256 { expected, hasher } => {
                let got = kikaku_filters::keys::hex(&std::mem::take(hasher).finalize());
                if !signatures_match(expected, &got) {
                    return err("The provided 'x-amz-content-sha256' header does not match what was computed.");
                }
            }
            Kind::Chunked(c) => c.finish()?,
        }
        if self.decoded != self.declared {
            return err(format!(
                "the body has {} bytes, {} were declared",
                self.decoded, self.declared
            ));
        }
        if let Some((expected, md5)) = self.content_md5.take() {
            if md5.finalize().as_slice() != expected {
                return err(BAD_DIGEST);
            }
        }
        Ok(self.held.take())
    }
}

/// The checksum a trailer will carry: `x-amz-trailer` names it.
fn trailer_checksum(
    expected: bool,
    trailer: Option<&str>,
) -> Result<Option<(String, Checksum)>, PayloadError> {
    match (expected, trailer) {
        (false, _) | (true, None) => Ok(None),
        (true, Some(name)) => {
            let alg = ChecksumAlgorithm::from_header(name).ok_or_else(|| {
                PayloadError(format!("unsupported x-amz-trailer {:?}", name.trim()))
            })?;
            Ok(Some((name.trim().to_ascii_lowercase(), Checksum::new(alg))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigv4::{sha256_hex, signing_key};

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

    /// AWS's documented example body: 64 KiB + 1 KiB of 'a'.
    fn aws_example_body() -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n");
        body.extend(std::iter::repeat_n(b'a', 65536));
        body.extend_from_slice(b"\r\n400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n");
        body.extend(std::iter::repeat_n(b'a', 1024));
        body.extend_from_slice(b"\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n");
        body
    }

    /// Feed `body` in pieces of `step` bytes; the forwarded bytes, or the error.
    fn run(mut v: PayloadVerifier, body: &[u8], step: usize) -> Result<Vec<u8>, PayloadError> {
        let mut out = Vec::new();
        for piece in body.chunks(step) {
            for b in v.push(Bytes::copy_from_slice(piece))? {
                out.extend_from_slice(&b);
            }
        }
        if let Some(last) = v.finish()? {
            out.extend_from_slice(&last);
        }
        Ok(out)
    }

    fn signed(declared: u64) -> PayloadVerifier {
        PayloadVerifier::new(
            &PayloadMode::StreamingSigned { trailer: false },
            declared,
            Some(signer()),
            None,
        )
        .unwrap()
    }

    #[test]
    fn the_aws_streaming_example_decodes_at_any_split() {
        for step in [1, 7, 100, 4096, 70_000] {
            let out = run(signed(66560), &aws_example_body(), step).unwrap();
            assert_eq!(out.len(), 66560);
            assert!(out.iter().all(|&b| b == b'a'));
        }
    }

    #[test]
    fn a_tampered_chunk_is_refused_before_the_body_completes() {
        let mut body = aws_example_body();
        let i = body.len() - 200;
        body[i] = b'b'; // inside the second chunk's data
        let mut v = signed(66560);
        let mut forwarded = 0;
        let mut failed = false;
        for piece in body.chunks(1000) {
            match v.push(Bytes::copy_from_slice(piece)) {
                Ok(out) => forwarded += out.iter().map(|b| b.len()).sum::<usize>(),
                Err(e) => {
                    assert!(e.0.contains("signature"), "{e}");
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed);
        assert!(
            forwarded < 66560,
            "the backend must never see the whole body"
        );
    }

    #[test]
    fn lying_about_the_length_is_refused() {
        assert!(run(signed(1000), &aws_example_body(), 4096).is_err());
        assert!(run(signed(70_000), &aws_example_body(), 4096).is_err());
    }

    fn unsigned_trailer_body(data: &[u8], checksum: &str) -> Vec<u8> {
        let mut body = format!("{:x}\r\n", data.len()).into_bytes();
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n0\r\n");
        body.extend_from_slice(format!("x-amz-checksum-crc32:{checksum}\r\n\r\n").as_bytes());
        body
    }

    fn crc32_b64(data: &[u8]) -> String {
        let mut c = Checksum::new(ChecksumAlgorithm::Crc32);
        c.update(data);
        c.finish_base64()
    }

    #[test]
    fn unsigned_trailer_checksum_is_verified() {
        let data = b"hello world, this is a trailer test".repeat(100);
        let mk = || {
            PayloadVerifier::new(
                &PayloadMode::StreamingUnsignedTrailer,
                data.len() as u64,
                None,
                Some("x-amz-checksum-crc32"),
            )
            .unwrap()
        };
        let good = unsigned_trailer_body(&data, &crc32_b64(&data));
        assert_eq!(run(mk(), &good, 333).unwrap(), data);
        let bad = unsigned_trailer_body(&data, &crc32_b64(b"other"));
        let e = run(mk(), &bad, 333).unwrap_err();
        assert!(e.0.contains("did not match"), "{e}");
    }

    #[test]
    fn crc32_matches_s3s_known_value() {
        // The value s3s-fs answered for b"hello" * 1000 in a boto3 PutObject.
        assert_eq!(crc32_b64(&b"hello".repeat(1000)), "ksWq1g==");
    }

    #[test]
    fn whole_body_sha256_is_verified() {
        let data = b"abc".to_vec();
        let mk = |hash: &str| {
            PayloadVerifier::new(&PayloadMode::Sha256(hash.into()), 3, None, None).unwrap()
        };
        assert_eq!(run(mk(&sha256_hex(&data)), &data, 1).unwrap(), data);
        assert!(run(mk(&sha256_hex(b"abd")), &data, 1).is_err());
    }

    #[test]
    fn content_md5_is_checked_on_the_decoded_body() {
        let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(Md5::digest(d));
        let data = b"second version".to_vec();
        let mk = |md5: Option<&str>| {
            PayloadVerifier::new(&PayloadMode::Unsigned, data.len() as u64, None, None)
                .unwrap()
                .with_content_md5(md5)
        };
        assert_eq!(run(mk(None).unwrap(), &data, 3).unwrap(), data);
        assert_eq!(run(mk(Some(&b64(&data))).unwrap(), &data, 3).unwrap(), data);
        let e = run(mk(Some(&b64(b"something else"))).unwrap(), &data, 3).unwrap_err();
        assert_eq!(e.0, BAD_DIGEST);
        // Through aws-chunked too: the digest is of the decoded bytes.
        let body = unsigned_trailer_body(&data, &crc32_b64(&data));
        let v = PayloadVerifier::new(
            &PayloadMode::StreamingUnsignedTrailer,
            data.len() as u64,
            None,
            Some("x-amz-checksum-crc32"),
        )
        .unwrap()
        .with_content_md5(Some(&b64(&data)))
        .unwrap();
        assert_eq!(run(v, &body, 5).unwrap(), data);
        let Err(e) = mk(Some("not base64!")) else {
            panic!("a malformed Content-MD5 was taken");
        };
        assert_eq!(e.0, INVALID_DIGEST);
    }
}
