//! The aws-chunked side of SigV4: the chain of chunk and trailer
//! signatures, seeded with the request's, and the verified signature a
//! handler keeps to check the body with.

use super::*;

/// The running signature of an aws-chunked body: each chunk's signature
/// chains on the previous one, starting from the request's (seed) signature.
#[derive(Clone)]
pub struct ChunkSigner {
    key: [u8; 32],
    amz_date: String,
    scope: String,
    previous: String,
}

impl ChunkSigner {
    pub fn new(key: [u8; 32], amz_date: &str, scope: &str, seed_signature: &str) -> Self {
        ChunkSigner {
            key,
            amz_date: amz_date.to_string(),
            scope: scope.to_string(),
            previous: seed_signature.to_string(),
        }
    }

    /// The signature the next chunk must carry, given the SHA-256 of its data.
    pub fn next_chunk(&mut self, data_sha256: &str) -> String {
        let sts = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{EMPTY_SHA256}\n{data_sha256}",
            self.amz_date, self.scope, self.previous
        );
        self.previous = sign(&self.key, &sts);
        self.previous.clone()
    }

    /// The signature of the trailer (its `name:value\n` lines).
    pub fn trailer(&mut self, trailer_lines: &str) -> String {
        let sts = format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{}\n{}",
            self.amz_date,
            self.scope,
            self.previous,
            sha256_hex(trailer_lines.as_bytes())
        );
        self.previous = sign(&self.key, &sts);
        self.previous.clone()
    }
}

/// A request signature that checked out: what the body verification of the
/// same request needs.
#[derive(Clone)]
pub struct VerifiedSignature {
    pub signing_key: [u8; 32],
    pub signature: String,
    pub amz_date: String,
    pub scope: String,
    pub payload: PayloadMode,
    pub presigned: bool,
}

impl VerifiedSignature {
    /// A verified signature that seeds no chunk chain (SigV2: its payload is
    /// unsigned or hashed whole, never aws-chunked).
    pub fn without_chunk_chain(payload: PayloadMode, presigned: bool) -> Self {
        debug_assert!(!payload.is_streaming());
        VerifiedSignature {
            signing_key: [0; 32],
            signature: String::new(),
            amz_date: String::new(),
            scope: String::new(),
            payload,
            presigned,
        }
    }

    /// The chain for aws-chunked bodies, seeded with the request's signature.
    pub fn chunk_signer(&self) -> ChunkSigner {
        ChunkSigner::new(
            self.signing_key,
            &self.amz_date,
            &self.scope,
            &self.signature,
        )
    }
}

/// Never print the signing key.
impl std::fmt::Debug for VerifiedSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedSignature")
            .field("amz_date", &self.amz_date)
            .field("scope", &self.scope)
            .field("payload", &self.payload)
            .field("presigned", &self.presigned)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::examples::key;
    use super::*;

    #[test]
    fn chunk_signatures_of_the_streaming_example() {
        // "Signature Calculations for the Authorization Header: Transferring
        // Payload in Multiple Chunks": 65 KiB + 1 KiB of 'a', seed signature below.
        let mut signer = ChunkSigner::new(
            key(),
            "20130524T000000Z",
            "20130524/us-east-1/s3/aws4_request",
            "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        );
        let first = vec![b'a'; 65536];
        assert_eq!(
            signer.next_chunk(&sha256_hex(&first)),
            "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
        );
        let second = vec![b'a'; 1024];
        assert_eq!(
            signer.next_chunk(&sha256_hex(&second)),
            "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
        );
        assert_eq!(
            signer.next_chunk(EMPTY_SHA256),
            "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
        );
    }
}
