//! One accepted connection's clock: which phase it is in, and when that phase must end.
//!
//! A connection is always in one of three phases:
//! - **receiving** a request's headers: from accept (the TLS handshake included), or from the
//!   first byte that arrives on an idle connection, until the headers are parsed. Bounded by
//!   `header_timeout_secs`; past it the connection is dropped, whatever it has sent (a
//!   slowloris peer dribbling one byte at a time is cut here).
//! - **busy**: at least one request is being answered (from parsed headers until its response
//!   body is done). Not bounded here: the request timeout, the body's minimum rate
//!   ([`super::body`]) and the handlers' own limits bound it.
//!
//! Across the phases, a write that the socket refuses (the client does not read, its window
//! and our send buffer are full) may stay refused for `send_timeout_secs` at most, counted
//! from the first refusal until the socket takes bytes again; past it the connection is
//! dropped. In every phase, since hyper may still be flushing a response whose body is done.
//! - **idle**: a keep-alive connection between requests, with no byte of a next request yet.
//!   Bounded by `keepalive_timeout_secs`; past it the connection is shut down gracefully.
//!
//! hyper's own `header_read_timeout` is not used: it starts as soon as hyper waits for the next
//! request, so it would also close idle keep-alive connections after the header timeout, and
//! the two bounds could not differ (nginx and Go's `net/http` distinguish them the same way).
//!
//! Who moves the clock: the socket wrapper [`Watched`] (a byte read while idle, a write that
//! blocks or flows again), the
//! per-connection service (`super::service`: headers parsed, response done). Who reads it:
//! [`ConnState::expiry`], awaited by the connection's task next to hyper's connection future.
//! After a WebSocket upgrade hyper's connection future has ended and nobody waits on the
//! clock; the socket wrapper lives on inside the upgraded stream, holding the connection's
//! per-address slots until the socket closes.

use super::limits::Slot;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Where a connection stands; see the module doc.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Receiving a request's headers since then.
    Receiving(Instant),
    /// This many requests in flight.
    Busy(usize),
    /// Idle since then.
    Idle(Instant),
}

/// Which bound a connection overran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// Its request headers did not arrive within the header timeout: drop it.
    Headers,
    /// A response's write stayed blocked for the send timeout (the client stopped reading): drop
    /// it.
    Stalled,
    /// It stayed idle for the keep-alive timeout: shut it down gracefully.
    Idle,
}

/// What a connection's task, its socket and its service share.
pub(crate) struct ConnState {
    /// The phase; a std mutex, per connection and uncontended, held for a copy or an
    /// assignment, never across an `.await`.
    phase: Mutex<Phase>,
    /// A cheap check for the socket's hot path: only a read while idle changes the phase.
    idle: AtomicBool,
    /// Woken on every phase change, so [`ConnState::expiry`] picks its next deadline.
    changed: Notify,
    /// Whether the socket's last write was refused (the client's window and our send buffer
    /// are full), for the hot path's cheap check; `blocked_since` says since when.
    blocked: AtomicBool,
    /// When the current blocked spell began.
    blocked_since: Mutex<Instant>,
    /// A forwarded client's slot, moved here when its request upgraded the connection (after a
    /// 101 the connection is that client's WebSocket, for as long as the socket lives).
    adopted: Mutex<Option<Slot>>,
}

impl ConnState {
    /// A connection accepted now: receiving its first request.
    pub(crate) fn accepted() -> Arc<Self> {
        Arc::new(Self {
            phase: Mutex::new(Phase::Receiving(Instant::now())),
            idle: AtomicBool::new(false),
            blocked: AtomicBool::new(false),
            blocked_since: Mutex::new(Instant::now()),
            changed: Notify::new(),
            adopted: Mutex::new(None),
        })
    }

    fn set(&self, change: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        *phase = change(*phase);
        self.idle
            .store(matches!(*phase, Phase::Idle(_)), Ordering::Relaxed);
        drop(phase);
        self.changed.notify_one();
    }

    /// A request's headers are parsed.
    pub(crate) fn request_started(&self) {
        self.set(|phase| match phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            Phase::Receiving(_) | Phase::Idle(_) => Phase::Busy(1),
        });
    }

    /// A request's response is done (or its handler was dropped).
    pub(crate) fn request_done(&self) {
        self.set(|phase| match phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        });
    }

    /// A byte arrived: on an idle connection, the next request's headers have started.
    fn bytes_read(&self) {
        if self.idle.load(Ordering::Relaxed) {
            self.set(|phase| match phase {
                Phase::Idle(_) => Phase::Receiving(Instant::now()),
                other => other,
            });
        }
    }

    /// A write found the socket full: the send timeout runs from now, unless it already runs.
    fn write_blocked(&self) {
        if !self.blocked.load(Ordering::Relaxed) {
            *self.blocked_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            self.blocked.store(true, Ordering::Release);
            self.changed.notify_one();
        }
    }

    /// A write went through: the client is reading.
    fn write_flowed(&self) {
        if self.blocked.load(Ordering::Relaxed) {
            self.blocked.store(false, Ordering::Release);
            self.changed.notify_one();
        }
    }

    /// Keeps `slot` for as long as the socket lives.
    pub(crate) fn adopt(&self, slot: Slot) {
        *self.adopted.lock().unwrap_or_else(|e| e.into_inner()) = Some(slot);
    }

    /// Resolves when the connection overruns a bound: the header timeout while receiving, the
    /// keep-alive timeout while idle (`keepalive: None` watches the header timeout only, for a
    /// connection already shutting down), and in any phase the send timeout while a write stays
    /// refused (`send: None`: no bound).
    pub(crate) async fn expiry(
        &self,
        header: Duration,
        keepalive: Option<Duration>,
        send: Option<Duration>,
    ) -> Expiry {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let phase = *self.phase.lock().unwrap_or_else(|e| e.into_inner());
            let deadline = match phase {
                Phase::Receiving(since) => Some((since + header, Expiry::Headers)),
                Phase::Idle(since) => keepalive.map(|keepalive| (since + keepalive, Expiry::Idle)),
                Phase::Busy(_) => None,
            };
            // A blocked write bounds every phase: hyper may still be flushing a response whose
            // body is done (the connection is then idle, or reading a pipelined request).
            let stalled = match send {
                Some(send) if self.blocked.load(Ordering::Acquire) => {
                    let since = *self.blocked_since.lock().unwrap_or_else(|e| e.into_inner());
                    Some((since + send, Expiry::Stalled))
                }
                _ => None,
            };
            let deadline = match (deadline, stalled) {
                (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
                (a, b) => a.or(b),
            };
            match deadline {
                Some((at, why)) if Instant::now() >= at => return why,
                Some((at, _)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// A socket, the clock it moves, and the per-address slot it holds: the connection's count
/// drops when the socket is dropped, which after a WebSocket upgrade is when the WebSocket
/// closes.
pub(crate) struct Watched<S> {
    /// The socket.
    io: S,
    /// The connection's clock and adopted slots.
    state: Arc<ConnState>,
    /// The direct peer's place under `max_connections_per_ip` (`None` when the cap is off or
    /// the peer is a trusted proxy).
    _slot: Option<Slot>,
}

impl<S> Watched<S> {
    /// Moves the send clock: a refused write starts it, a write that went through stops it.
    fn wrote(&self, result: &Poll<std::io::Result<usize>>) {
        match result {
            Poll::Pending => self.state.write_blocked(),
            Poll::Ready(Ok(n)) if *n > 0 => self.state.write_flowed(),
            Poll::Ready(_) => {}
        }
    }

    /// Wraps an accepted socket.
    pub(crate) fn new(io: S, state: Arc<ConnState>, slot: Option<Slot>) -> Self {
        Self {
            io,
            state,
            _slot: slot,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.bytes_read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const KEEPALIVE: Duration = Duration::from_secs(75);
    const SEND: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_must_send_its_headers_within_the_header_timeout() {
        let state = ConnState::accepted();
        let start = Instant::now();
        assert_eq!(
            state.expiry(HEADER, Some(KEEPALIVE), None).await,
            Expiry::Headers
        );
        assert_eq!(start.elapsed(), HEADER);
    }

    #[tokio::test(start_paused = true)]
    async fn busy_connections_have_no_deadline_and_idle_ones_the_keepalive() {
        let state = ConnState::accepted();
        state.request_started();
        let watch = {
            let state = state.clone();
            tokio::spawn(async move { state.expiry(HEADER, Some(KEEPALIVE), None).await })
        };
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!watch.is_finished(), "a long request is not cut here");
        state.request_done();
        let idle_from = Instant::now();
        assert_eq!(watch.await.unwrap(), Expiry::Idle);
        assert_eq!(idle_from.elapsed(), KEEPALIVE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_byte_on_an_idle_connection_starts_the_header_timeout() {
        let state = ConnState::accepted();
        state.request_started();
        state.request_done();
        tokio::time::sleep(Duration::from_secs(5)).await;
        state.bytes_read();
        let from = Instant::now();
        assert_eq!(
            state.expiry(HEADER, Some(KEEPALIVE), None).await,
            Expiry::Headers
        );
        assert_eq!(from.elapsed(), HEADER);
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_blocked_on_its_client_expires_at_the_send_timeout() {
        let state = ConnState::accepted();
        state.request_started();
        let watch = {
            let state = state.clone();
            tokio::spawn(async move { state.expiry(HEADER, Some(KEEPALIVE), Some(SEND)).await })
        };
        // A long response that flows is not cut, nor one blocked for less than the timeout.
        tokio::time::sleep(Duration::from_secs(600)).await;
        state.write_blocked();
        tokio::time::sleep(SEND / 2).await;
        state.write_flowed();
        tokio::time::sleep(SEND * 2).await;
        assert!(!watch.is_finished(), "the client read again in time");
        // Blocked again: the clock starts over, and a second refused write does not restart it.
        state.write_blocked();
        let from = Instant::now();
        tokio::time::sleep(SEND / 2).await;
        state.write_blocked();
        assert_eq!(watch.await.unwrap(), Expiry::Stalled);
        assert_eq!(from.elapsed(), SEND);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_send_timeout_a_blocked_response_is_not_cut() {
        let state = ConnState::accepted();
        state.request_started();
        state.write_blocked();
        let expired = tokio::time::timeout(
            Duration::from_secs(3600),
            state.expiry(HEADER, Some(KEEPALIVE), None),
        )
        .await;
        assert!(expired.is_err());
    }
}
