//! The image route's Ark calls under the pool's rules, as proxied routes
//! are: the endpoint is picked by the pool's `balance` (`hash_on: key`
//! keeps a key on one endpoint), the try counts in flight and feeds passive
//! health, a connection that cannot be made goes to another endpoint, and
//! the `retry` settings (`on_status`, `methods` with POST) and its budget
//! apply to the rest.

use pingora::upstreams::peer::HttpPeer;

use super::ark_client::{failure_kind, ArkClient, ArkFailure};
use super::ark_session::ArkSession;
use crate::upstreams::{Affinity, Attempt, Failure, PickError};

/// How starting a call failed: before a connection existed (the request
/// never left, so it may go elsewhere) or after it was sent.
pub(super) enum StartError {
    Connect(ArkFailure),
    Sent(ArkFailure),
}

/// A call whose answer's header has arrived.
pub(super) struct Started {
    pub session: ArkSession,
    pub peer: HttpPeer,
    /// Holds the endpoint's place in flight while the answer is read.
    pub attempt: Attempt,
}

impl ArkClient {
    /// Send `payload` to an endpoint of the pool and read the answer's
    /// header, trying others as the pool's retry rules allow.
    pub(super) async fn start_tried(
        &self,
        aff: &Affinity<'_>,
        payload: &[u8],
    ) -> Result<Started, ArkFailure> {
        let up = self.upstream_arc();
        let mut tried = Vec::new();
        let post_retried = up.retries_method(&http::Method::POST);
        loop {
            let mut attempt = up.pick(aff, &tried).map_err(|e| match e {
                PickError::Full => ArkFailure::Full(up.retry_after()),
                PickError::NoEndpoint => ArkFailure::NoEndpoint,
            })?;
            let peer = attempt.peer();
            let host = attempt.endpoint().host_header.clone();
            attempt.sending();
            let (why, err) = match self.start(&peer, &host, payload).await {
                Ok(session) => {
                    let status = session.status();
                    attempt.answered(status);
                    let mut again = tried.clone();
                    again.push(attempt.index());
                    if status != 200
                        && post_retried
                        && up.retries_status(status)
                        && up.may_retry(&again, Failure::Status)
                    {
                        log::debug!("Ark answered {status}; trying another endpoint");
                        tried = again;
                        continue;
                    }
                    return Ok(Started {
                        session,
                        peer,
                        attempt,
                    });
                }
                Err(StartError::Connect(f)) => (Failure::Connect, f),
                Err(StartError::Sent(f)) => (failure_kind(&f), f),
            };
            attempt.failed(why);
            tried.push(attempt.index());
            let may = up.config.retry.retries > 0 && (why == Failure::Connect || post_retried);
            if !(may && up.may_retry(&tried, why)) {
                return Err(err);
            }
            log::debug!("Ark call failed ({}); trying another endpoint", why.label());
        }
    }
}
