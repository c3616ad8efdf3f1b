//! `GET /events`: Server-Sent Events, for clients that cannot use WebSocket. The same session,
//! queue and slow-consumer policy as WebSocket; each event's `id:` is a cursor of every room of
//! the stream, so the browser's automatic reconnect (which sends it back as `Last-Event-ID`)
//! resumes exactly where it stopped.

use super::access::{authenticate, open_session, query_param, require_enabled, rooms, Cursor};
use crate::error::ApiError;
use crate::hub::{frame_bytes, SubscribeError};
use crate::state::AppState;
use axum::extract::State;
use axum::http::request::Parts;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;
use taskflow_protocol::{ServerFrame, Since};

/// How long the browser waits before reconnecting a dropped stream.
const RETRY: Duration = Duration::from_secs(2);

/// What the SSE writer needs to know of a frame to keep the cursor.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    room: Option<&'a str>,
    offset: Option<i64>,
}

pub(super) async fn stream(
    State(state): State<AppState>,
    parts: Parts,
) -> Result<Response, ApiError> {
    require_enabled(&state, "sse")?;
    let caller = authenticate(&state, &parts)?;
    let rooms = rooms(&state, &caller, query_param(&parts, "rooms")).await?;
    let last_id = parts
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query_param(&parts, "last_event_id"));
    let resume = last_id.as_deref().and_then(Cursor::decode);
    let (held, mut outbox) =
        open_session(&state, &caller, crate::hub::session::Transport::Sse).await?;
    let epoch = state.store().epoch().to_owned();
    let mut cursor = Cursor {
        epoch: epoch.clone(),
        offsets: Default::default(),
    };
    let announce = |answer| frame_bytes(&ServerFrame::Subscribed(answer));
    let mut replays = Vec::new();
    for room in &rooms {
        // A cursor from another epoch, or without this room, cannot be honoured: the
        // subscription says `recovered: false` and the client reloads.
        let since = resume.as_ref().map(|c| Since {
            epoch: c.epoch.clone(),
            offset: c.offsets.get(room).copied(),
            offsets: Default::default(),
        });
        // The `subscribed` frame is queued inside the seam, before any live event of the room.
        let (answer, replay) = state
            .dispatcher()
            .subscribe_from(&held.session, room, since.as_ref(), &[], Some(&announce))
            .await
            .map_err(|e| match e {
                SubscribeError::LogUnavailable => {
                    ApiError::Unavailable("the event log could not be read; try again")
                }
                _ => ApiError::InvalidField {
                    field: "rooms".into(),
                    message: e.to_string(),
                },
            })?;
        // The cursor stays where the client stopped until the replay has moved it on, so a
        // reconnect in the middle of a replay resumes the replay, not past it.
        let start = match (&replay, since.as_ref().and_then(|s| s.offset)) {
            (Some(_), Some(from)) => Some(from),
            _ => answer.offset,
        };
        if let Some(offset) = start {
            cursor.offsets.insert(room.clone(), offset);
        }
        replays.extend(replay);
    }
    // Replays start once every room is subscribed; they pace themselves on the queue, which the
    // stream below drains.
    for replay in replays {
        tokio::spawn(replay.run());
    }
    let shutdown = state.hub().shutdown_token();
    let far = Duration::from_secs(86_400 * 365);
    let expires = tokio::time::Instant::now()
        + match caller.expires_at() {
            u64::MAX => far,
            exp => Duration::from_secs(exp.saturating_sub(crate::auth::unix_now())),
        };
    let events = async_stream::stream! {
        // Owned by the stream: when the client goes, the stream is dropped, and so is the
        // session.
        let held = held;
        yield Ok::<Event, Infallible>(Event::default().retry(RETRY).comment("taskflow"));
        loop {
            let frame = tokio::select! {
                frame = outbox.recv() => frame,
                reason = held.session.closed() => {
                    let close = serde_json::json!({ "type": "close", "code": reason.code, "reason": reason.reason });
                    yield Ok(Event::default().data(close.to_string()));
                    break;
                }
                _ = tokio::time::sleep_until(expires) => {
                    let close = serde_json::json!({ "type": "close", "code": taskflow_protocol::close::TOKEN_EXPIRED, "reason": "token expired" });
                    yield Ok(Event::default().data(close.to_string()));
                    break;
                }
                _ = shutdown.cancelled() => {
                    let close = serde_json::json!({ "type": "close", "code": taskflow_protocol::close::GOING_AWAY, "reason": "server shutting down" });
                    yield Ok(Event::default().data(close.to_string()));
                    break;
                }
            };
            let Some(frame) = frame else { break };
            held.session.written(frame.len());
            crate::hub::metrics::frames_out(1, frame.len());
            let text = String::from_utf8_lossy(&frame).into_owned();
            let mut event = Event::default();
            if let Ok(head) = serde_json::from_str::<Head>(&text) {
                if let (Some(room), Some(offset)) = (head.room, head.offset) {
                    if head.kind == "event" {
                        cursor.offsets.insert(room.to_owned(), offset);
                    }
                    if head.kind == "event" || head.kind == "subscribed" {
                        event = event.id(cursor.encode());
                    }
                }
            }
            yield Ok(event.data(text));
        }
    };
    let keepalive = Duration::from_secs(state.config().sse_keepalive_secs.max(1));
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(keepalive).text("keep-alive"))
        .into_response())
}
