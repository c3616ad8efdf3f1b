//! `GET /ws/tasks`: the WebSocket transport. The handshake authenticates and admits the
//! connection; the session loop then drains the session's queue to the socket (several queued
//! frames per write), reads commands, pings, and closes with the right code.
//!
//! One task owns the connection's byte stream whole: a [`Reader`] that only parses what the
//! client sends, and a [`Writer`] that frames everything the server sends (`read`, `write`).
//! The closing handshake (RFC 6455 §7.1) is therefore one sequence in one place ([`finish`]):
//! the close frame is queued behind whatever frame is half written, nothing is started after it,
//! and the TCP connection is closed by the server once the handshake is done.

pub(crate) mod extensions;
pub(crate) mod handshake;
mod inflate;
pub(crate) mod read;
mod write;

pub(crate) use extensions::Deflate;

use super::access::{admit, authenticate, query_param, require_enabled};
use super::commands::{self, Connection};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::hub::session::{Session, Transport};
use crate::hub::{frame_bytes, metrics, Admission, Outbox, Ready};
use crate::state::AppState;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use handshake::{Rejection, Socket, Upgrade};
use read::{Incoming, ReadError, Reader, Violation};
use std::collections::HashSet;
use std::future::{poll_fn, Future};
use std::num::NonZeroU32;
use std::task::{Context, Poll};
use std::time::Duration;
use taskflow_protocol::{close, Hello, ServerFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep_until, Instant};
use write::Writer;

/// Frames written per flush at most: enough to amortize the write, small enough to keep one
/// slow socket from hogging its task.
const MAX_BATCH: usize = 256;

/// How long the closing handshake may take in all (our close frame out, the client's answer
/// in, the client's end of the TCP connection) before the connection is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// After this many consecutive commands refused for rate, the connection is closed (1008).
const MAX_RATE_REFUSALS: u32 = 20;

/// While frames keep coming, the socket is read first at least once per this many write
/// batches: pongs and commands are not starved by a busy room.
const READ_TURN: u32 = 8;

/// The handshake: upgrade checks (426), Origin allow-list (403), token (401), connection
/// limits (503), then the upgrade.
pub(super) async fn upgrade(State(state): State<AppState>, mut parts: Parts) -> Response {
    match handshake(&state, &mut parts).await {
        Ok(response) => response,
        Err(response) => response,
    }
}

async fn handshake(state: &AppState, parts: &mut Parts) -> Result<Response, Response> {
    let upgrade = Upgrade::from_parts(parts).map_err(|rejection| {
        // A plain GET is how a browser learns why its WebSocket failed (it cannot read the
        // status of a refused handshake): 503 with `Retry-After` if one would be refused now.
        let probe = matches!(
            rejection,
            Rejection::NoConnectionUpgrade
                | Rejection::NoUpgradeWebsocket
                | Rejection::NotUpgradable
        );
        match state.refusing_now().filter(|_| probe) {
            Some(reason) => state.gate().busy(reason).into_response(),
            None => refusal(rejection),
        }
    })?;
    if !origin_allowed(state, parts) {
        return Err(
            ApiError::Forbidden("this Origin may not open WebSocket connections".into())
                .into_response(),
        );
    }
    require_enabled(state, "websocket").map_err(IntoResponse::into_response)?;
    let caller = authenticate(state, parts).map_err(IntoResponse::into_response)?;
    let (admission, projects, _place) = admit(state, &caller)
        .await
        .map_err(IntoResponse::into_response)?;
    let automatic = !matches!(query_param(parts, "auto").as_deref(), Some("false" | "0"));
    let config = state.config();
    let state = state.clone();
    // permessage-deflate, if this server compresses and the client offers it (extensions.rs).
    let deflate = config
        .compression()
        .and_then(|_| extensions::negotiate(&parts.headers));
    let mut reader = Reader::new(config.ws_max_message_bytes, config.ws_read_buffer_bytes);
    let (response, socket) = match deflate {
        Some((deflate, answer)) => {
            reader = reader.with_deflate(deflate);
            upgrade.accept(Some(answer))
        }
        None => upgrade.accept(None),
    };
    // The connection's own task starts once the 101 is out; this one only waits for that, so
    // the connection task holds nothing of the handshake.
    tokio::spawn(async move {
        if let Some(socket) = socket.await {
            let hub = state.hub().clone();
            let wire = Wire {
                socket,
                reader,
                writer: Writer::default(),
            };
            hub.spawn(run(state, wire, caller, projects, admission, automatic));
        }
    });
    Ok(response)
}

/// The answer to a request that is not a handshake we accept: 426 says which protocol (and, for
/// a wrong version, which version) this endpoint speaks; 400 names what is malformed.
pub(super) fn refusal(rejection: Rejection) -> Response {
    let version = matches!(rejection, Rejection::WrongVersion);
    let mut response = rejection.into_error().into_response();
    if response.status() == StatusCode::UPGRADE_REQUIRED {
        response
            .headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    if version {
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
    }
    response
}

/// Browsers always send `Origin`; a page on another site must not ride the user's token. Allowed:
/// no Origin (not a browser), the server's own origin, or one on the allow-list.
pub(super) fn origin_allowed(state: &AppState, parts: &Parts) -> bool {
    let Some(origin) = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    else {
        return true;
    };
    let allowed = &state.config().ws_allowed_origins;
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
}

/// The connection's byte stream, with the one reader and the one writer that use it.
struct Wire {
    socket: Socket,
    reader: Reader,
    writer: Writer,
}

/// Why the loop ended.
enum End {
    /// The server closes: send this close frame, then wait for the client's.
    Close(u16, &'static str),
    /// The client broke the protocol: send the close frame for it, read nothing more (§7.1.7).
    Fail(Violation),
    /// The client closed, with this code (or none): echo it (§5.5.1), read nothing more.
    ClientClosed(Option<u16>),
    /// The peer went away (closed, reset) or is dead: nothing to send.
    Gone,
}

/// One connection, from hello to close.
///
/// This future is the connection's task for its whole life, so its size is memory per
/// connection: it is an `async move` block rather than an `async fn`, whose arguments would be
/// stored twice (as arguments, then as the locals they are moved into), and every await that
/// happens once or rarely is boxed, since the task keeps the size of its largest state.
#[allow(clippy::manual_async_fn)]
fn run(
    state: AppState,
    mut wire: Wire,
    caller: Caller,
    projects: HashSet<crate::domain::ProjectId>,
    admission: Admission,
    automatic: bool,
) -> impl Future<Output = ()> + Send + 'static {
    async move {
        let (session, mut outbox) = state.hub().connect(
            caller.user().clone(),
            caller.is_admin(),
            projects,
            Transport::WebSocket,
        );
        // This transport reports its socket's state (in `write_batch`), so its queue can hold
        // writers back when it lags.
        session.track_lag();
        if let Some(max_len) = wire.reader.deflated_up_to() {
            session.accept_deflated(max_len);
        }
        let mut conn = Connection {
            caller,
            session: session.clone(),
            implicit_tasks: automatic,
        };
        if automatic {
            // Every tab of a user gets its direct notifications; a client that never subscribes
            // gets `tasks`, so the simplest client works unchanged. Clients that resume connect
            // with `?auto=false` and subscribe to each room from their own position instead: a live
            // event of an automatic subscription would otherwise overtake their replay.
            let _ = Box::pin(
                state
                    .dispatcher()
                    .subscribe(&session, &format!("user:{}", conn.caller.user())),
            )
            .await;
            let _ = Box::pin(
                state
                    .dispatcher()
                    .subscribe(&session, crate::domain::Room::TASKS),
            )
            .await;
        }
        // One task owns the socket whole, reading and writing it in turn: no lock shared by two
        // halves, and nothing on the read side is polled when the wake-up was for frames.
        let end = session_loop(&state, &mut conn, &mut wire, &mut outbox).await;
        // Out of every room first (no more frames queued, presence.left announced), then the
        // closing handshake: it waits behind whatever the socket already holds, for a bounded
        // time.
        state.hub().disconnect(&session);
        let _ = Box::pin(tokio::time::timeout(
            CLOSE_TIMEOUT,
            finish(&mut wire, &mut outbox, end),
        ))
        .await;
        drop(outbox);
        drop(admission);
    }
}

/// The closing handshake (RFC 6455 §7.1), whoever started it: our close frame goes out after the
/// frame in progress, if any, and before anything not started; then, if the server started it,
/// the client's answer is awaited (everything else it sends is dropped unread); then the server
/// closes the TCP connection first (§7.1.1) and reads, without looking, until the client has
/// closed its side too. Closing with input unread would make the kernel answer with a reset,
/// and a reset can destroy our close frame before the client has read it.
async fn finish(wire: &mut Wire, outbox: &mut Outbox, end: End) {
    let await_answer = match &end {
        End::Gone => return,
        End::Close(code, reason) => {
            wire.writer.close(Some((*code, reason)));
            true
        }
        End::Fail(violation) => {
            metrics::protocol_violation();
            wire.writer
                .close(Some((violation.code(), violation.reason())));
            false
        }
        End::ClientClosed(code) => {
            // The echo carries the client's code; an empty close is answered with an empty one.
            wire.writer.close(code.map(|code| (code, "")));
            false
        }
    };
    if wire
        .writer
        .write_urgent(&mut wire.socket, outbox)
        .await
        .is_err()
    {
        return;
    }
    if await_answer {
        loop {
            match poll_fn(|cx| wire.reader.poll_next(&mut wire.socket, cx)).await {
                Ok(Some(Incoming::Close(_))) => break,
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
    }
    if wire.socket.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 512];
    while let Ok(1..) = wire.socket.read(&mut sink).await {}
}

/// What woke the session loop.
enum Wake {
    /// Frames to write, or the close signal.
    Outbox(Ready),
    /// The heartbeat, pong or expiry timer.
    Timer,
    /// Something from the client, the end of its stream (`Ok(None)`), or a read that failed.
    Read(Result<Option<Incoming>, ReadError>),
}

async fn session_loop(
    state: &AppState,
    conn: &mut Connection,
    wire: &mut Wire,
    outbox: &mut Outbox,
) -> End {
    let config = state.config();
    let session = conn.session.clone();
    let hello = frame_bytes(&ServerFrame::Hello(Hello {
        connection_id: session.id().to_string(),
        user: conn.caller.user().to_string(),
        heartbeat_interval_ms: config.ws_heartbeat_interval_ms,
        server_time: chrono::Utc::now(),
        epoch: state.store().epoch().to_owned(),
    }));
    if Box::pin(send(wire, outbox, &hello)).await.is_err() {
        return End::Gone;
    }
    let every = Duration::from_millis(config.ws_heartbeat_interval_ms.max(1));
    let pong_timeout = Duration::from_millis(config.ws_pong_timeout_ms);
    let far_future = Instant::now() + Duration::from_secs(86_400 * 365);
    let mut clock = Deadlines {
        ping: Instant::now() + every,
        pong: far_future,
        expires: expiry_instant(conn.caller.expires_at()).unwrap_or(far_future),
    };
    let mut missed = 0u32;
    let limiter = command_limiter(config.ws_commands_per_sec, config.ws_commands_burst);
    let mut refusals = 0u32;
    // One timer for the heartbeat, the pong deadline and the token's expiry, created once: a
    // wake-up polls one timer instead of three. Shutdown arrives as the session's close signal.
    let timer = sleep_until(clock.next());
    tokio::pin!(timer);
    let mut batches_since_read = 0u32;
    // Whether the socket's read side holds the session's input waker: its last read attempt
    // returned `Pending`. Until that waker fires, another attempt would only find nothing.
    let mut input_armed = false;

    loop {
        // Polled by hand, in an order that fits the traffic: the queue first, as almost every
        // wake-up is for frames, and the socket last; except every READ_TURN batches, when the
        // socket goes first. The socket is read only if its waker fired since it last said
        // `Pending`, so a wake-up for frames does not also attempt a read.
        let read_first = batches_since_read >= READ_TURN;
        let wake = poll_fn(|cx| {
            let mut read = || {
                let fired = session.take_input_ready();
                if input_armed && !fired {
                    return Poll::Pending;
                }
                let waker = session.input_waker();
                let polled = wire
                    .reader
                    .poll_next(&mut wire.socket, &mut Context::from_waker(&waker));
                input_armed = polled.is_pending();
                polled.map(Wake::Read)
            };
            if read_first {
                if let Poll::Ready(wake) = read() {
                    return Poll::Ready(wake);
                }
            }
            if let Poll::Ready(ready) = outbox.poll_ready(cx) {
                return Poll::Ready(Wake::Outbox(ready));
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Timer);
            }
            if !read_first {
                return read();
            }
            Poll::Pending
        })
        .await;
        match wake {
            Wake::Outbox(Ready::Closing(reason)) => return End::Close(reason.code, reason.reason),
            Wake::Outbox(Ready::Frames) => {
                batches_since_read += 1;
                // A write to a client that does not read can wait; the close signal cannot.
                // Boxed: an idle connection's task need not have room for a write in progress.
                let batch = Box::pin(async {
                    let closing = poll_fn(|cx| session.poll_closing(cx));
                    tokio::select! {
                        biased;
                        reason = closing => Err(Some(reason)),
                        result = write_batch(wire, &session, outbox) => result.map_err(|_| None),
                    }
                })
                .await;
                match batch {
                    Ok(()) => {}
                    Err(Some(reason)) => return End::Close(reason.code, reason.reason),
                    Err(None) => return End::Gone,
                }
            }
            Wake::Timer => {
                let now = Instant::now();
                if now >= clock.expires {
                    return End::Close(close::TOKEN_EXPIRED, "token expired");
                }
                if now >= clock.pong {
                    missed += 1;
                    clock.pong = far_future;
                    if missed >= config.ws_max_missed_pongs {
                        metrics::heartbeat_termination();
                        tracing::info!(
                            connection = session.id(),
                            "peer stopped answering pings; terminated"
                        );
                        return End::Close(
                            close::HEARTBEAT_TIMEOUT,
                            "no pong: connection considered dead",
                        );
                    }
                }
                if now >= clock.ping {
                    wire.writer.ping(b"hb");
                    if Box::pin(flush_urgent(wire, outbox)).await.is_err() {
                        return End::Gone;
                    }
                    let now = Instant::now();
                    if clock.pong == far_future {
                        clock.pong = now + pong_timeout;
                    }
                    clock.ping = now + every;
                }
                timer.as_mut().reset(clock.next());
            }
            Wake::Read(incoming) => {
                batches_since_read = 0;
                let incoming = match incoming {
                    Ok(None) | Err(ReadError::Io(_)) => return End::Gone,
                    Err(ReadError::Violation(violation)) => return End::Fail(violation),
                    Ok(Some(incoming)) => incoming,
                };
                match incoming {
                    Incoming::Pong => {
                        // The timer may still be set for the old pong deadline: it then finds
                        // nothing due and re-arms for the next ping.
                        missed = 0;
                        clock.pong = far_future;
                    }
                    Incoming::Ping(payload) => {
                        wire.writer.pong(&payload);
                        if Box::pin(flush_urgent(wire, outbox)).await.is_err() {
                            return End::Gone;
                        }
                    }
                    Incoming::Close(status) => {
                        return End::ClientClosed(status.map(|(code, _)| code))
                    }
                    // Boxed: commands await the store, and their large futures would otherwise
                    // be part of every idle connection's task.
                    message => {
                        if let Some(end) = Box::pin(on_message(
                            state,
                            conn,
                            wire,
                            outbox,
                            &limiter,
                            &mut refusals,
                            message,
                        ))
                        .await
                        {
                            return end;
                        }
                    }
                }
            }
        }
    }
}

/// A text or binary message from the client: a command to run and answer. Returns how the
/// connection ends, if it does.
async fn on_message(
    state: &AppState,
    conn: &mut Connection,
    wire: &mut Wire,
    outbox: &mut Outbox,
    limiter: &DefaultDirectRateLimiter,
    refusals: &mut u32,
    message: Incoming,
) -> Option<End> {
    match message {
        Incoming::Text(text) => {
            metrics::frame_in(text.len());
            if limiter.check().is_err() {
                *refusals += 1;
                if *refusals >= MAX_RATE_REFUSALS {
                    return Some(End::Close(close::POLICY_VIOLATION, "command rate exceeded"));
                }
                let reply = rate_refusal(&text);
                return send(wire, outbox, &frame_bytes(&reply))
                    .await
                    .err()
                    .map(|_| End::Gone);
            }
            *refusals = 0;
            let outcome = commands::handle(state, conn, &text).await;
            if let Some(reply) = outcome.reply {
                if send(wire, outbox, &frame_bytes(&reply)).await.is_err() {
                    return Some(End::Gone);
                }
            }
            if let Some(replay) = outcome.replay {
                // The reply is out; the missed events follow through the queue, which the
                // session loop keeps draining.
                tokio::spawn(replay.run());
            }
            None
        }
        Incoming::Binary(len) => {
            metrics::frame_in(len);
            let reply = ServerFrame::Error {
                error: taskflow_protocol::ErrorDetail {
                    code: "unsupported".into(),
                    message: "binary frames are not part of the protocol; send JSON text".into(),
                    request_id: None,
                    details: None,
                },
            };
            send(wire, outbox, &frame_bytes(&reply))
                .await
                .err()
                .map(|_| End::Gone)
        }
        // Pings, pongs and close are the session loop's.
        Incoming::Ping(_) | Incoming::Pong | Incoming::Close(_) => None,
    }
}

/// When the session loop must next act on its own: ping, give up on a pong, or close for an
/// expired token.
struct Deadlines {
    /// The next heartbeat ping.
    ping: Instant,
    /// When the outstanding ping's pong is due; far in the future when none is outstanding.
    pong: Instant,
    /// When the token expires.
    expires: Instant,
}

impl Deadlines {
    fn next(&self) -> Instant {
        self.ping.min(self.pong).min(self.expires)
    }
}

/// Sends one text frame at once (hello, replies), ahead of the broadcasts not yet started: they
/// bypass the queue, which is for broadcasts. The write is boxed: it is rare, and its timer
/// would otherwise take room in every idle connection's task.
async fn send(wire: &mut Wire, outbox: &mut Outbox, frame: &[u8]) -> std::io::Result<()> {
    wire.writer.text(frame);
    Box::pin(flush_urgent(wire, outbox)).await?;
    metrics::frames_out(1, frame.len());
    Ok(())
}

/// Writes the urgent frames (after the rest of a broadcast frame in progress, if any), within
/// [`WRITE_TIMEOUT`].
async fn flush_urgent(wire: &mut Wire, outbox: &mut Outbox) -> std::io::Result<()> {
    let written = write_within(wire.writer.write_urgent(&mut wire.socket, outbox)).await?;
    if written.frames > 0 {
        // The broadcast frame that had to be finished first.
        metrics::frames_out(written.frames, written.bytes);
    }
    Ok(())
}

/// A write to a peer that does not read for this long is a dead peer: the loop must not hang on
/// it, deaf to its close signal, heartbeat and shutdown.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

async fn write_within<T>(
    write: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(result) => result,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Writes whatever is queued (up to `MAX_BATCH` frames) straight to the socket, many frames
/// per write (`write`).
async fn write_batch(
    wire: &mut Wire,
    session: &Session,
    outbox: &mut Outbox,
) -> std::io::Result<()> {
    let write = wire.writer.write(&mut wire.socket, outbox, MAX_BATCH);
    tokio::pin!(write);
    // While the write waits, the socket is full: a queue that grows now is the client's doing,
    // not the fan-out lagging (hub/lag.rs).
    let written = poll_fn(|cx| {
        let polled = write.as_mut().poll(cx);
        session.set_socket_full(polled.is_pending());
        polled
    })
    .await?;
    metrics::frames_out(written.frames, written.bytes);
    Ok(())
}

fn command_limiter(per_sec: u32, burst: u32) -> DefaultDirectRateLimiter {
    let per_sec = NonZeroU32::new(per_sec.max(1)).expect("at least 1");
    let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
    RateLimiter::direct(Quota::per_second(per_sec).allow_burst(burst))
}

/// The error for a command refused for rate, carrying its id when it had one.
fn rate_refusal(text: &str) -> ServerFrame {
    let error = taskflow_protocol::ErrorDetail {
        code: "rate_limited".into(),
        message: "too many commands; slow down".into(),
        request_id: None,
        details: None,
    };
    let id = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|mut v| v.get_mut("id").map(std::mem::take));
    match id {
        Some(id) if id.is_string() || id.is_number() => ServerFrame::Reply {
            id,
            ok: false,
            result: None,
            error: Some(error),
        },
        _ => ServerFrame::Error { error },
    }
}

/// When a token expiring at `exp` (seconds since the epoch) runs out, as an `Instant`.
fn expiry_instant(exp: u64) -> Option<Instant> {
    let now = crate::auth::unix_now();
    (exp != u64::MAX).then(|| Instant::now() + Duration::from_secs(exp.saturating_sub(now)))
}
