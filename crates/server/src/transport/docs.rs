//! `GET /ws/docs/{doc}`: collaborative documents over the y-websocket wire protocol
//! (`collab::wire`), so the npm `y-websocket` `WebsocketProvider` (or any Yjs provider that
//! speaks it) connects unchanged: `new WebsocketProvider('ws://HOST/ws/docs', 'task:<id>', doc,
//! { params: { access_token } })`.
//!
//! The handshake is `/ws/tasks`'s: the same upgrade checks, Origin allow-list, token, transport
//! switch and connection limits; then the document must name a task the caller may see (404,
//! 403). Frames are read and written by tungstenite (the y-websocket protocol is binary
//! messages, not this server's broadcast hot path, which has a writer of its own). Close codes:
//! 4001 token expired, 4403 no longer a member, 4404 task deleted, 4008 too slow to read,
//! 4009 no pong, 4413 document too large, 1003 a text frame, 1007 bytes that do not decode,
//! 1008 message rate, 1009 message size, 1001 shutdown.

use super::access::{admit, authenticate, require_enabled};
use super::ws::handshake::{Rejection, Upgrade};
use crate::auth::Caller;
use crate::collab::{wire, Lease, Outgoing, Refusal};
use crate::domain::DocName;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::time::Duration;
use taskflow_protocol::close;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// How long the closing handshake may take before the connection is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// A write that does not finish in this long is a dead peer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The handshake, then the connection's task.
pub(super) async fn upgrade(State(state): State<AppState>, mut parts: Parts) -> Response {
    match handshake(&state, &mut parts).await {
        Ok(response) | Err(response) => response,
    }
}

async fn handshake(state: &AppState, parts: &mut Parts) -> Result<Response, Response> {
    let upgrade = Upgrade::from_parts(parts).map_err(|r: Rejection| super::ws::refusal(r))?;
    if !super::ws::origin_allowed(state, parts) {
        return Err(
            ApiError::Forbidden("this Origin may not open WebSocket connections".into())
                .into_response(),
        );
    }
    require_enabled(state, "websocket").map_err(IntoResponse::into_response)?;
    let caller = authenticate(state, parts).map_err(IntoResponse::into_response)?;
    let raw = parts
        .uri
        .path()
        .strip_prefix("/ws/docs/")
        .unwrap_or_default();
    let name = DocName::parse(raw).ok_or_else(|| {
        ApiError::NotFound {
            code: "document_not_found",
            message: "documents are named task:<id>".into(),
        }
        .into_response()
    })?;
    let project = state
        .store()
        .task_project(name.task())
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    let (admission, projects, _place) = admit(state, &caller)
        .await
        .map_err(IntoResponse::into_response)?;
    if !caller.is_admin() && !projects.contains(&project) {
        return Err(ApiError::Forbidden(
            "only members of the task's project may edit its description".into(),
        )
        .into_response());
    }
    let doc = state
        .collab()
        .open(name, project)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    let (response, socket) = upgrade.accept(None);
    let state = state.clone();
    tokio::spawn(async move {
        if let Some(socket) = socket.await {
            let limits = state.collab().limits().clone();
            let config = WebSocketConfig::default()
                .max_message_size(Some(limits.max_message_bytes))
                .max_frame_size(Some(limits.max_message_bytes));
            let ws = WebSocketStream::from_raw_socket(socket, Role::Server, Some(config)).await;
            let hub = state.hub().clone();
            hub.spawn(async move {
                run(&state, ws, &caller, doc).await;
                drop(admission);
            });
        }
    });
    Ok(response)
}

type Socket = WebSocketStream<super::ws::handshake::Socket>;

/// How the connection ends: the close frame to send, if any.
struct End(Option<(u16, &'static str)>);

async fn run(state: &AppState, mut ws: Socket, caller: &Caller, doc: Lease) {
    let peer = state.collab().peer_id();
    let mut owned = Vec::new();
    let end = session(state, &mut ws, caller, &doc, peer, &mut owned).await;
    state.collab().forget(&doc, &owned);
    drop(doc);
    if let Some((code, reason)) = end.0 {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            if ws.close(Some(frame)).await.is_ok() {
                // The client's answer, then the end of its stream.
                while let Some(Ok(_)) = ws.next().await {}
            }
        })
        .await;
    }
}

async fn session(
    state: &AppState,
    ws: &mut Socket,
    caller: &Caller,
    doc: &Lease,
    peer: crate::collab::PeerId,
    owned: &mut Vec<u64>,
) -> End {
    let config = state.config();
    let collab = state.collab();
    // Subscribed before the first sync message, so nothing applied after it is missed.
    let mut out = doc.subscribe();
    if send(ws, doc.step1()).await.is_err() {
        return End(None);
    }
    if let Some(awareness) = doc.awareness_all() {
        if send(ws, awareness).await.is_err() {
            return End(None);
        }
    }
    let limiter = limiter(config.docs_messages_per_sec, config.docs_messages_burst);
    let shutdown = state.hub().shutdown_token();
    let every = Duration::from_millis(config.ws_heartbeat_interval_ms.max(1));
    let pong_timeout = Duration::from_millis(config.ws_pong_timeout_ms);
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    let expires = match caller.expires_at() {
        u64::MAX => far,
        exp => Instant::now() + Duration::from_secs(exp.saturating_sub(crate::auth::unix_now())),
    };
    let mut next_ping = Instant::now() + every;
    let mut pong_due = far;
    let mut missed = 0u32;
    loop {
        let wake = next_ping.min(pong_due).min(expires);
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return End(Some((close::GOING_AWAY, "server shutting down"))),
            message = out.recv() => match message {
                Ok(Outgoing::Frame { from, bytes }) => {
                    if from != Some(peer) && send(ws, bytes).await.is_err() {
                        return End(None);
                    }
                }
                Ok(Outgoing::Close { user, code, reason }) => {
                    let applies = match &user {
                        None => true,
                        Some(user) => user == caller.user() && !caller.is_admin(),
                    };
                    if applies {
                        return End(Some((code, reason)));
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    return End(Some((close::SLOW_CONSUMER, "too slow to read; reconnect")))
                }
                Err(RecvError::Closed) => return End(Some((close::DOC_DELETED, "the task was deleted"))),
            },
            incoming = ws.next() => {
                let message = match incoming {
                    None => return End(None),
                    Some(Ok(message)) => message,
                    Some(Err(WsError::Capacity(_))) => {
                        return End(Some((close::MESSAGE_TOO_BIG, "message larger than docs_max_message_bytes")))
                    }
                    Some(Err(WsError::Protocol(_))) => {
                        return End(Some((close::PROTOCOL_ERROR, "WebSocket protocol error")))
                    }
                    Some(Err(WsError::Utf8(_))) => {
                        return End(Some((close::INVALID_PAYLOAD, "text frame not UTF-8")))
                    }
                    Some(Err(_)) => return End(None),
                };
                match message {
                    Message::Binary(frame) => {
                        if limiter.check().is_err() {
                            return End(Some((close::POLICY_VIOLATION, "message rate exceeded")));
                        }
                        metrics::counter!("doc_messages_in_total").increment(1);
                        if let Err(refusal) = on_message(ws, doc, collab, peer, owned, &frame).await {
                            return End(refusal);
                        }
                    }
                    Message::Text(_) => {
                        return End(Some((close::UNSUPPORTED_DATA, "this endpoint speaks binary y-websocket messages")))
                    }
                    Message::Pong(_) => {
                        missed = 0;
                        pong_due = far;
                    }
                    // tungstenite answers pings and close frames itself.
                    Message::Ping(_) | Message::Frame(_) => {}
                    Message::Close(_) => {
                        while let Some(Ok(_)) = ws.next().await {}
                        return End(None);
                    }
                }
            }
            _ = sleep_until(wake) => {
                let now = Instant::now();
                if now >= expires {
                    return End(Some((close::TOKEN_EXPIRED, "token expired")));
                }
                if now >= pong_due {
                    missed += 1;
                    pong_due = far;
                    if missed >= config.ws_max_missed_pongs {
                        return End(Some((close::HEARTBEAT_TIMEOUT, "no pong: connection considered dead")));
                    }
                }
                if now >= next_ping {
                    if within(ws.send(Message::Ping(bytes::Bytes::from_static(b"hb")))).await.is_err() {
                        return End(None);
                    }
                    if pong_due == far {
                        pong_due = Instant::now() + pong_timeout;
                    }
                    next_ping = Instant::now() + every;
                }
            }
        }
    }
}

/// One y-websocket message. `Err` ends the connection, with the close frame it carries.
async fn on_message(
    ws: &mut Socket,
    doc: &Lease,
    collab: &crate::collab::Collab,
    peer: crate::collab::PeerId,
    owned: &mut Vec<u64>,
    frame: &[u8],
) -> Result<(), Option<(u16, &'static str)>> {
    let refused = |refusal: Refusal| {
        if let Refusal::Store(e) = &refusal {
            tracing::error!(doc = %doc.name(), error = %e, "a document update was not stored");
        }
        metrics::counter!("doc_refusals_total").increment(1);
        Some((refusal.code(), refusal.reason()))
    };
    let message = wire::parse(frame)
        .map_err(|_| Some((close::INVALID_PAYLOAD, "malformed y-websocket message")))?;
    match message {
        wire::Incoming::SyncStep1(sv) => {
            let answer = doc.step2(sv).map_err(refused)?;
            send(ws, answer).await.map_err(|_| None)?;
        }
        wire::Incoming::SyncStep2(update) | wire::Incoming::Update(update) => {
            collab
                .submit(&doc.shared(), peer, update)
                .await
                .map_err(refused)?;
        }
        wire::Incoming::Awareness(update) => {
            collab
                .awareness(doc, peer, update, owned)
                .map_err(refused)?;
        }
        wire::Incoming::QueryAwareness => {
            if let Some(all) = doc.awareness_all() {
                send(ws, all).await.map_err(|_| None)?;
            }
        }
        wire::Incoming::Auth | wire::Incoming::Unknown(_) => {}
    }
    Ok(())
}

async fn send(ws: &mut Socket, bytes: bytes::Bytes) -> Result<(), ()> {
    metrics::counter!("doc_messages_out_total").increment(1);
    within(ws.send(Message::Binary(bytes))).await
}

async fn within<T, E>(write: impl std::future::Future<Output = Result<T, E>>) -> Result<T, ()> {
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(value)) => Ok(value),
        _ => Err(()),
    }
}

fn limiter(per_sec: u32, burst: u32) -> DefaultDirectRateLimiter {
    let per_sec = NonZeroU32::new(per_sec.max(1)).expect("at least 1");
    let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
    RateLimiter::direct(Quota::per_second(per_sec).allow_burst(burst))
}
