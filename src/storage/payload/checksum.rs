//! Flexible checksums (`x-amz-checksum-<name>`): CRC32, CRC32C, CRC64NVME,
//! SHA-1 and SHA-256, computed as the body streams.

use base64::Engine;
use sha2::{Digest, Sha256};

/// A flexible-checksum algorithm (`x-amz-checksum-<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    /// From a header name such as `x-amz-checksum-crc32`.
    pub fn from_header(name: &str) -> Option<ChecksumAlgorithm> {
        Some(
            match name
                .trim()
                .to_ascii_lowercase()
                .strip_prefix("x-amz-checksum-")?
            {
                "crc32" => ChecksumAlgorithm::Crc32,
                "crc32c" => ChecksumAlgorithm::Crc32c,
                "crc64nvme" => ChecksumAlgorithm::Crc64Nvme,
                "sha1" => ChecksumAlgorithm::Sha1,
                "sha256" => ChecksumAlgorithm::Sha256,
                _ => return None,
            },
        )
    }
}

static CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
static CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
static CRC64NVME: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_NVME);

/// A running checksum of the decoded body.
pub enum Checksum {
    Crc32(crc::Digest<'static, u32>),
    Crc32c(crc::Digest<'static, u32>),
    Crc64Nvme(crc::Digest<'static, u64>),
    Sha1(sha1::Sha1),
    Sha256(Sha256),
}

impl Checksum {
    pub fn new(alg: ChecksumAlgorithm) -> Checksum {
        match alg {
            ChecksumAlgorithm::Crc32 => Checksum::Crc32(CRC32.digest()),
            ChecksumAlgorithm::Crc32c => Checksum::Crc32c(CRC32C.digest()),
            ChecksumAlgorithm::Crc64Nvme => Checksum::Crc64Nvme(CRC64NVME.digest()),
            ChecksumAlgorithm::Sha1 => Checksum::Sha1(sha1::Sha1::new()),
            ChecksumAlgorithm::Sha256 => Checksum::Sha256(Sha256::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Checksum::Crc32(d) | Checksum::Crc32c(d) => d.update(data),
            Checksum::Crc64Nvme(d) => d.update(data),
            Checksum::Sha1(h) => h.update(data),
            Checksum::Sha256(h) => h.update(data),
        }
    }

    /// Base64 of the big-endian result, as S3 writes it.
    pub fn finish_base64(self) -> String {
        let bytes: Vec<u8> = match self {
            Checksum::Crc32(d) | Checksum::Crc32c(d) => d.finalize().to_be_bytes().to_vec(),
            Checksum::Crc64Nvme(d) => d.finalize().to_be_bytes().to_vec(),
            Checksum::Sha1(h) => h.finalize().to_vec(),
            Checksum::Sha256(h) => h.finalize().to_vec(),
        };
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}
