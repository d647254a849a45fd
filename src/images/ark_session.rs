//! One Ark answer being read, over either transport of [`ArkClient`]:
//! HTTP/1.1 on the client's own connections (the request written by hand,
//! the fast path), or whatever a TLS upstream picks by ALPN, HTTP/2 as Ark
//! offers it, through Pingora's HTTP connector (`tls.http2`, the default).
//!
//! [`ArkClient`]: super::ark_client::ArkClient

use bytes::Bytes;
use pingora::protocols::http::client::HttpSession as ClientSession;
use pingora::protocols::http::v1::client::HttpSession as H1Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::Error;
use pingora_http::RequestHeader;

pub enum ArkSession {
    H1(H1Session),
    Negotiated(ClientSession),
}

/// A piece of an answer's body: borrowed from the HTTP/1.1 session's
/// buffer, or owned.
pub enum Piece<'a> {
    Borrowed(&'a [u8]),
    Owned(Bytes),
}

impl std::ops::Deref for Piece<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Piece::Borrowed(b) => b,
            Piece::Owned(b) => b,
        }
    }
}

impl ArkSession {
    /// The answer's status (0 before a header was read).
    pub fn status(&self) -> u16 {
        match self {
            ArkSession::H1(s) => s.get_status().map(|c| c.as_u16()).unwrap_or(0),
            ArkSession::Negotiated(s) => s.response_header().map_or(0, |h| h.status.as_u16()),
        }
    }

    /// The next piece of the body; `None` at its end.
    pub async fn read_body(&mut self) -> Result<Option<Piece<'_>>, Box<Error>> {
        match self {
            ArkSession::H1(s) => Ok(s.read_body_ref().await?.map(Piece::Borrowed)),
            ArkSession::Negotiated(s) => Ok(s.read_response_body().await?.map(Piece::Owned)),
        }
    }
}

/// Send one request on a negotiated session and read the answer's header.
pub(super) async fn send_negotiated(
    s: &mut ClientSession,
    peer: &HttpPeer,
    req: &RequestHeader,
    payload: &Bytes,
) -> Result<(), Box<Error>> {
    s.set_read_timeout(peer.options.read_timeout);
    s.set_write_timeout(peer.options.write_timeout);
    s.write_request_header(Box::new(req.clone())).await?;
    s.write_request_body(payload.clone(), true).await?;
    s.finish_request_body().await?;
    s.read_response_header().await
}
