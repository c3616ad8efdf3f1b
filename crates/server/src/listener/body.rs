//! Request bodies that must keep arriving (`body_min_bytes_per_sec`).
//!
//! A body of n bytes has `grace + n / rate` from its headers to arrive: bursts and pauses are
//! fine as long as the average keeps up, and a peer that trickles a byte now and then (to hold
//! a handler, a spool file, a place in the import queue) is cut off. This covers every route,
//! imports included, which the request timeout does not (they may rightly take longer).
//! A body that falls behind ends with [`BodyError::TooSlow`]; the handler reading it answers
//! with an error and hyper closes the connection, since the body was not read to its end.

use hyper::body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// How a request body ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// The body fell behind its minimum rate.
    #[error("the request body arrived slower than {0} bytes/s")]
    TooSlow(u64),
    /// The connection failed while the body was read.
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

/// The minimum rate a body is held to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MinRate {
    /// Time a body may take on top of what its size at `bytes_per_sec` allows.
    pub(crate) grace: Duration,
    /// The lowest average rate, in bytes per second (> 0).
    pub(crate) bytes_per_sec: u64,
}

/// A request body held to a [`MinRate`].
pub(crate) struct RateLimited<B> {
    /// The body as hyper reads it.
    inner: B,
    /// The bound.
    rate: MinRate,
    /// When the headers were parsed.
    start: Instant,
    /// Data bytes received so far.
    received: u64,
    /// Fires at the current deadline; made on the first wait (most bodies never wait).
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> RateLimited<B> {
    /// Holds `inner` to `rate` from now on.
    pub(crate) fn new(inner: B, rate: MinRate) -> Self {
        Self {
            inner,
            rate,
            start: Instant::now(),
            received: 0,
            timer: None,
        }
    }

    fn deadline(&self) -> Instant {
        let allowed =
            Duration::from_secs_f64(self.received as f64 / self.rate.bytes_per_sec as f64);
        self.start + self.rate.grace + allowed
    }
}

impl<B> Body for RateLimited<B>
where
    B: Body<Data = bytes::Bytes, Error = hyper::Error> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.received += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = self.deadline();
                let timer = match &mut self.timer {
                    Some(timer) => {
                        if timer.deadline() != deadline {
                            timer.as_mut().reset(deadline);
                        }
                        timer
                    }
                    none => none.insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        crate::telemetry::connection_cut("slow_body");
                        Poll::Ready(Some(Err(BodyError::TooSlow(self.rate.bytes_per_sec))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_grows_with_the_bytes_received() {
        let rate = MinRate {
            grace: Duration::from_secs(10),
            bytes_per_sec: 1000,
        };
        let mut body = RateLimited::new((), rate);
        assert_eq!(body.deadline() - body.start, Duration::from_secs(10));
        body.received = 5000;
        assert_eq!(body.deadline() - body.start, Duration::from_secs(15));
    }
}
