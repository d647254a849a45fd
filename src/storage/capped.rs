//! A body stream cut off at a size: more bytes than allowed end it with
//! an error, and the stream remembers that it was the size that ended it.

use std::fmt::Display;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

pub struct Capped<S> {
    inner: S,
    left: u64,
    /// The stream went over its size.
    pub over: bool,
    /// Bytes passed on.
    pub seen: u64,
}

impl<S> Capped<S> {
    pub fn new(inner: S, max: u64) -> Capped<S> {
        Capped {
            inner,
            left: max,
            over: false,
            seen: 0,
        }
    }
}

impl<S, E> Stream for Capped<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Display,
{
    type Item = Result<Bytes, String>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.over {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(b))) => {
                let n = b.len() as u64;
                if n > self.left {
                    self.over = true;
                    return Poll::Ready(Some(Err("the file is too large".into())));
                }
                self.left -= n;
                self.seen += n;
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.to_string()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cuts_at_the_size() {
        let chunks = vec![
            Ok::<_, String>(Bytes::from_static(b"abc")),
            Ok(Bytes::from_static(b"defg")),
        ];
        let mut c = Capped::new(futures_util::stream::iter(chunks.clone()), 7);
        while c.next().await.is_some() {}
        assert!(!c.over);
        assert_eq!(c.seen, 7);
        let mut c = Capped::new(futures_util::stream::iter(chunks), 6);
        assert!(c.next().await.unwrap().is_ok());
        assert!(c.next().await.unwrap().is_err());
        assert!(c.over && c.next().await.is_none());
    }
}
