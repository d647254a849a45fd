//! Conditional GET and HEAD for the embedded backend (s3s-fs ignores them):
//! `If-Match`, `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since`,
//! evaluated in RFC 9110's order (§13.2.2), which is also S3's:
//!
//! 1. `If-Match` false → 412; when present, `If-Unmodified-Since` is not
//!    looked at (S3: If-Match true and If-Unmodified-Since false → 200).
//! 2. else `If-Unmodified-Since` false → 412.
//! 3. `If-None-Match` false (an ETag matches) → 304; when present,
//!    `If-Modified-Since` is not looked at.
//! 4. else `If-Modified-Since` false (not modified since) → 304.
//!
//! Dates compare in whole seconds, as HTTP dates carry them.

use s3s::dto::{ETag, ETagCondition, GetObjectInput, HeadObjectInput, Timestamp, TimestampFormat};
use s3s::{s3_error, S3Result};

/// What the request asks (copied out: the request moves on to s3s-fs
/// before its answer is checked).
#[derive(Default)]
pub struct Conditions {
    pub if_match: Option<ETagCondition>,
    pub if_none_match: Option<ETagCondition>,
    pub if_modified_since: Option<Timestamp>,
    pub if_unmodified_since: Option<Timestamp>,
}

macro_rules! conditions_of {
    ($input:expr) => {
        Conditions {
            if_match: $input.if_match.clone(),
            if_none_match: $input.if_none_match.clone(),
            if_modified_since: $input.if_modified_since.clone(),
            if_unmodified_since: $input.if_unmodified_since.clone(),
        }
    };
}

impl Conditions {
    pub fn of_get(input: &GetObjectInput) -> Self {
        conditions_of!(input)
    }

    pub fn of_head(input: &HeadObjectInput) -> Self {
        conditions_of!(input)
    }
}

fn seconds(t: &Timestamp) -> Option<i64> {
    let mut buf = Vec::new();
    t.format(TimestampFormat::EpochSeconds, &mut buf).ok()?;
    let s = String::from_utf8(buf).ok()?;
    s.split('.').next()?.parse().ok()
}

fn matches(cond: &ETagCondition, etag: Option<&ETag>, strong: bool) -> bool {
    match (cond, etag) {
        (ETagCondition::Any, _) => true,
        (ETagCondition::ETag(want), Some(have)) => {
            if strong {
                want.strong_cmp(have)
            } else {
                want.weak_cmp(have)
            }
        }
        (ETagCondition::ETag(_), None) => false,
    }
}

impl Conditions {
    /// `Ok` to answer with the object; else 412 `PreconditionFailed` or
    /// 304 `NotModified`.
    pub fn check(&self, etag: Option<&ETag>, last_modified: Option<&Timestamp>) -> S3Result<()> {
        let modified = last_modified.and_then(seconds);
        // `None` when either date is unknown: that never blocks an answer.
        let newer_than = |t: &Timestamp| Some(modified? > seconds(t)?);
        match &self.if_match {
            Some(c) if !matches(c, etag, true) => return Err(s3_error!(PreconditionFailed)),
            Some(_) => {}
            None => {
                if self.if_unmodified_since.as_ref().and_then(newer_than) == Some(true) {
                    return Err(s3_error!(PreconditionFailed));
                }
            }
        }
        match &self.if_none_match {
            Some(c) if matches(c, etag, false) => Err(s3_error!(NotModified)),
            Some(_) => Ok(()),
            None => match &self.if_modified_since {
                Some(t) if newer_than(t) == Some(false) => Err(s3_error!(NotModified)),
                _ => Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::S3ErrorCode;

    fn etag(s: &str) -> ETag {
        ETag::Strong(s.into())
    }

    fn at(s: &str) -> Timestamp {
        Timestamp::parse(TimestampFormat::HttpDate, s).unwrap()
    }

    fn code(r: S3Result<()>) -> Option<S3ErrorCode> {
        r.err().map(|e| e.code().clone())
    }

    #[test]
    fn rfc_9110_order_as_s3_applies_it() {
        let e = etag("abc");
        let lm = at("Tue, 01 Dec 2026 10:00:00 GMT");
        let (before, same, after) = (
            at("Tue, 01 Dec 2026 09:00:00 GMT"),
            at("Tue, 01 Dec 2026 10:00:00 GMT"),
            at("Tue, 01 Dec 2026 11:00:00 GMT"),
        );
        let yes = ETagCondition::ETag(etag("abc"));
        let no = ETagCondition::ETag(etag("xyz"));
        let check = |c: Conditions| code(c.check(Some(&e), Some(&lm)));
        assert_eq!(check(Conditions::default()), None);
        let c = |m: Option<&ETagCondition>,
                 n: Option<&ETagCondition>,
                 ms: Option<&Timestamp>,
                 us: Option<&Timestamp>| Conditions {
            if_match: m.cloned(),
            if_none_match: n.cloned(),
            if_modified_since: ms.cloned(),
            if_unmodified_since: us.cloned(),
        };
        assert_eq!(check(c(Some(&yes), None, None, None)), None);
        assert_eq!(
            check(c(Some(&no), None, None, None)),
            Some(S3ErrorCode::PreconditionFailed)
        );
        assert_eq!(check(c(Some(&ETagCondition::Any), None, None, None)), None);
        assert_eq!(
            check(c(None, Some(&yes), None, None)),
            Some(S3ErrorCode::NotModified)
        );
        assert_eq!(check(c(None, Some(&no), None, None)), None);
        assert_eq!(
            check(c(None, None, Some(&same), None)),
            Some(S3ErrorCode::NotModified)
        );
        assert_eq!(check(c(None, None, Some(&before), None)), None);
        assert_eq!(
            check(c(None, None, None, Some(&before))),
            Some(S3ErrorCode::PreconditionFailed)
        );
        assert_eq!(check(c(None, None, None, Some(&after))), None);
        // If-Match true outranks a failing If-Unmodified-Since (S3: 200) ...
        assert_eq!(check(c(Some(&yes), None, None, Some(&before))), None);
        // ... and If-None-Match false outranks If-Modified-Since (304).
        assert_eq!(
            check(c(None, Some(&yes), Some(&before), None)),
            Some(S3ErrorCode::NotModified)
        );
        assert_eq!(check(c(None, Some(&no), Some(&after), None)), None);
    }
}
