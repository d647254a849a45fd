//! Which S3 operation a request is, from its method, path and query — the
//! same rules S3 itself applies. Anything not listed is answered
//! `NotImplemented` rather than forwarded blind.

use http::Method;

/// What the path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Service,
    Bucket(String),
    Object(String, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    ListBuckets,
    CreateBucket,
    HeadBucket,
    DeleteBucket,
    GetBucketLocation,
    ListObjects,
    ListObjectsV2,
    ListMultipartUploads,
    DeleteObjects,
    PutObject,
    CopyObject,
    GetObject,
    HeadObject,
    DeleteObject,
    CreateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::ListBuckets => "ListBuckets",
            Op::CreateBucket => "CreateBucket",
            Op::HeadBucket => "HeadBucket",
            Op::DeleteBucket => "DeleteBucket",
            Op::GetBucketLocation => "GetBucketLocation",
            Op::ListObjects => "ListObjects",
            Op::ListObjectsV2 => "ListObjectsV2",
            Op::ListMultipartUploads => "ListMultipartUploads",
            Op::DeleteObjects => "DeleteObjects",
            Op::PutObject => "PutObject",
            Op::CopyObject => "CopyObject",
            Op::GetObject => "GetObject",
            Op::HeadObject => "HeadObject",
            Op::DeleteObject => "DeleteObject",
            Op::CreateMultipartUpload => "CreateMultipartUpload",
            Op::UploadPart => "UploadPart",
            Op::UploadPartCopy => "UploadPartCopy",
            Op::CompleteMultipartUpload => "CompleteMultipartUpload",
            Op::AbortMultipartUpload => "AbortMultipartUpload",
            Op::ListParts => "ListParts",
        }
    }
}

/// Query parameters that select a sub-resource we do not serve (ACLs,
/// policies, tagging, versioning, ...).
const UNSUPPORTED_SUBRESOURCES: &[&str] = &[
    "acl",
    "policy",
    "cors",
    "lifecycle",
    "tagging",
    "versioning",
    "versions",
    "website",
    "replication",
    "encryption",
    "notification",
    "logging",
    "object-lock",
    "retention",
    "legal-hold",
    "torrent",
    "restore",
    "select",
    "attributes",
    "accelerate",
    "requestPayment",
    "ownershipControls",
    "publicAccessBlock",
    "analytics",
    "inventory",
    "metrics",
    "intelligent-tiering",
];

/// Classify; `Err(name)` names an operation that is not supported.
pub fn classify(
    method: &Method,
    target: &Target,
    query: &[(String, String)],
    copy_source: bool,
) -> Result<Op, String> {
    let has = |k: &str| query.iter().any(|(n, _)| n == k);
    if let Some((name, _)) = query
        .iter()
        .find(|(n, _)| UNSUPPORTED_SUBRESOURCES.contains(&n.as_str()))
    {
        return Err(format!("the ?{name} sub-resource"));
    }
    let m = method.as_str();
    let op = match target {
        Target::Service => match m {
            "GET" => Op::ListBuckets,
            _ => return Err(format!("{m} on the service")),
        },
        Target::Bucket(_) => match m {
            "PUT" => Op::CreateBucket,
            "HEAD" => Op::HeadBucket,
            "DELETE" => Op::DeleteBucket,
            "GET" if has("location") => Op::GetBucketLocation,
            "GET" if has("uploads") => Op::ListMultipartUploads,
            "GET" if query.iter().any(|(n, v)| n == "list-type" && v == "2") => Op::ListObjectsV2,
            "GET" => Op::ListObjects,
            "POST" if has("delete") => Op::DeleteObjects,
            _ => return Err(format!("{m} on a bucket")),
        },
        Target::Object(..) => match m {
            "PUT" if has("partNumber") && has("uploadId") && copy_source => Op::UploadPartCopy,
            "PUT" if has("partNumber") && has("uploadId") => Op::UploadPart,
            "PUT" if copy_source => Op::CopyObject,
            "PUT" => Op::PutObject,
            "GET" if has("uploadId") => Op::ListParts,
            "GET" => Op::GetObject,
            "HEAD" => Op::HeadObject,
            "DELETE" if has("uploadId") => Op::AbortMultipartUpload,
            "DELETE" => Op::DeleteObject,
            "POST" if has("uploads") => Op::CreateMultipartUpload,
            "POST" if has("uploadId") => Op::CompleteMultipartUpload,
            _ => return Err(format!("{m} on an object")),
        },
    };
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn operations_are_told_apart_as_s3_does() {
        let obj = Target::Object("b".into(), "k".into());
        let bucket = Target::Bucket("b".into());
        assert_eq!(classify(&Method::PUT, &obj, &[], false), Ok(Op::PutObject));
        assert_eq!(classify(&Method::PUT, &obj, &[], true), Ok(Op::CopyObject));
        assert_eq!(
            classify(
                &Method::PUT,
                &obj,
                &q(&[("partNumber", "1"), ("uploadId", "u")]),
                false
            ),
            Ok(Op::UploadPart)
        );
        assert_eq!(
            classify(&Method::POST, &obj, &q(&[("uploads", "")]), false),
            Ok(Op::CreateMultipartUpload)
        );
        assert_eq!(
            classify(&Method::GET, &bucket, &q(&[("list-type", "2")]), false),
            Ok(Op::ListObjectsV2)
        );
        assert_eq!(
            classify(&Method::POST, &bucket, &q(&[("delete", "")]), false),
            Ok(Op::DeleteObjects)
        );
        assert!(classify(&Method::GET, &bucket, &q(&[("acl", "")]), false).is_err());
        assert!(classify(&Method::POST, &Target::Service, &[], false).is_err());
    }
}
