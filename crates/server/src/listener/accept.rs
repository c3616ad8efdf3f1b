//! The accept loop and each connection's task.
//!
//! The loop accepts, sets TCP_NODELAY, takes the peer's place under `max_connections_per_ip`
//! (a refused peer gets a 503 on a connection of its own, closed after it), and spawns one task
//! per connection. The task runs hyper's HTTP/1.1 connection (with upgrades, for WebSockets)
//! next to the connection's clock ([`super::connection`]): the header timeout drops it, the
//! keep-alive timeout and the server's shutdown close it gracefully (a request in flight is
//! answered first). When the shutdown future resolves the loop stops accepting, asks every
//! connection to close gracefully, and returns once they all have; upgraded connections
//! (WebSockets) are no longer hyper's by then and are closed by the hub.

use super::connection::{ConnState, Expiry, Watched};
use super::limits::Slot;
use super::service::{ConnService, Policy, RETRY_AFTER_SECS};
use crate::error::{render_outside_router, ApiError};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

/// The bounds of a connection's phases.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// From accept (or the first byte on an idle connection) to parsed request headers.
    pub(crate) header: Duration,
    /// How long a keep-alive connection may stay idle.
    pub(crate) keepalive: Duration,
    /// How long a response's write may stay blocked on a client that does not read (`None`:
    /// no bound).
    pub(crate) send: Option<Duration>,
}

/// Everything the accept loop needs besides the socket.
pub(crate) struct Options {
    /// What each connection's service applies.
    pub(crate) policy: Arc<Policy>,
    /// The phases' bounds.
    pub(crate) timeouts: Timeouts,
    /// The TLS handshake, when the server speaks HTTPS.
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Serves `listener` until `shutdown` resolves and every connection has closed.
pub(crate) async fn serve(
    listener: TcpListener,
    options: Options,
    shutdown: impl Future<Output = ()> + Send,
) {
    let options = Arc::new(options);
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    pause_after_accept_error(err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // TCP_NODELAY: a pushed event or a reply goes out at once, instead of waiting (up to a
        // delayed ACK, 40 ms) behind an earlier small write still unacknowledged. The hub
        // already batches what is queued into one write.
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%err, "could not set TCP_NODELAY");
        }
        let slot = take_place(&options.policy, peer);
        tasks.spawn(connection(
            tcp,
            peer,
            slot,
            options.clone(),
            stop_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    tasks.close();
    tasks.wait().await;
}

/// The peer's place under `max_connections_per_ip`: `Ok(None)` when it is not counted here
/// (the cap is off, or the peer is a trusted proxy whose clients are counted per request),
/// `Err(())` when it has none.
fn take_place(policy: &Policy, peer: SocketAddr) -> Result<Option<Slot>, ()> {
    let Some(limit) = &policy.per_ip else {
        return Ok(None);
    };
    if policy.proxies.contains(peer.ip()) {
        return Ok(None);
    }
    match limit.acquire(peer.ip()) {
        Some(slot) => Ok(Some(slot)),
        None => {
            crate::telemetry::connection_refused("per_ip");
            Err(())
        }
    }
}

/// Accept errors: the peer's (it reset before we accepted) are skipped; the server's (out of
/// file descriptors) would repeat at once, so the loop waits a moment instead of spinning.
async fn pause_after_accept_error(err: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%err, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// One connection, from the TLS handshake (if any) to its end.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    slot: Result<Option<Slot>, ()>,
    options: Arc<Options>,
    stop: watch::Receiver<bool>,
) {
    let state = ConnState::accepted();
    let refused = slot.is_err();
    let io = Watched::new(tcp, state.clone(), slot.ok().flatten());
    let headers_due = tokio::time::Instant::now() + options.timeouts.header;
    match &options.tls {
        None if refused => refuse(io, headers_due).await,
        None => drive(io, peer, state, &options, stop).await,
        Some(acceptor) => {
            let Ok(handshake) = tokio::time::timeout_at(headers_due, acceptor.accept(io)).await
            else {
                crate::telemetry::connection_cut("header_timeout");
                return;
            };
            match handshake {
                Err(err) => tracing::debug!(%peer, %err, "TLS handshake failed"),
                Ok(tls) if refused => refuse(tls, headers_due).await,
                Ok(tls) => drive(tls, peer, state, &options, stop).await,
            }
        }
    }
}

/// Serves one connection until it ends, its clock expires, or the server stops.
async fn drive<I>(
    io: I,
    peer: SocketAddr,
    state: Arc<ConnState>,
    options: &Options,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = ConnService::new(options.policy.clone(), state.clone(), peer);
    let conn = builder()
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let timeouts = options.timeouts;
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, %err, "connection ended with an error");
                }
                return;
            }
            expiry = state.expiry(timeouts.header, (!closing).then_some(timeouts.keepalive), timeouts.send) => {
                match expiry {
                    Expiry::Headers => {
                        tracing::debug!(%peer, "request headers too slow; closing");
                        crate::telemetry::connection_cut("header_timeout");
                        return;
                    }
                    Expiry::Stalled => {
                        tracing::debug!(%peer, "client stopped reading its response; closing");
                        crate::telemetry::connection_cut("send_timeout");
                        return;
                    }
                    Expiry::Idle => {
                        crate::telemetry::connection_cut("idle");
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
            _ = stop.wait_for(|stopped| *stopped), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// hyper's HTTP/1.1 settings. Its header timeout stays off: the connection's clock bounds
/// headers and idleness separately (see [`super::connection`]).
fn builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder.header_read_timeout(None);
    builder
}

/// Answers a peer over its connection cap with a 503 to its first request, then closes. The
/// headers must still come within the header timeout.
async fn refuse<I>(io: I, headers_due: tokio::time::Instant)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(|_req| {
        std::future::ready(Ok::<_, std::convert::Infallible>(render_outside_router(
            ApiError::TooManyConnections {
                retry_after_secs: RETRY_AFTER_SECS,
            },
        )))
    });
    let mut builder = builder();
    builder.keep_alive(false);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    // The answer is immediate once the headers are in: the deadline bounds the whole exchange.
    let _ = tokio::time::timeout_at(headers_due + Duration::from_secs(1), conn).await;
}
