//! `GET /poll`: long polling, for clients behind proxies that buffer or cut streams. Each request
//! is answered from the log after the cursor, so whatever a proxy does to one request, the next
//! one resumes exactly: every event once, in order. Where the room's in-memory tail holds what
//! comes after the cursor (the common case: a poll follows the previous one within seconds), the
//! request reads it from there instead, and a single node also knows each room's position: a
//! storm of pollers does not become a storm of queries.

use super::access::{authenticate, open_session, query_param, require_enabled, rooms, Cursor};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::request::Parts;
use axum::Json;
use serde::Serialize;
use std::time::Duration;
use taskflow_protocol::{EventFrame, ServerFrame};

/// Events returned by one poll at most; the cursor says where the next poll continues.
const MAX_EVENTS: i64 = 500;

/// A queued frame that is a `stats` frame (the hub serializes `type` first), parsed.
fn stats_frame(frame: &[u8]) -> Option<ServerFrame> {
    if !frame.starts_with(br#"{"type":"stats""#) {
        return None;
    }
    serde_json::from_slice(frame).ok()
}

/// The answer to a poll.
#[derive(Debug, Serialize)]
pub(super) struct PollAnswer {
    /// Event frames, in offset order within each room (or, from the `system` room, the `stats`
    /// frames pushed while the poll waited).
    events: Vec<ServerFrame>,
    /// Pass to the next poll.
    cursor: String,
    /// `false` when the cursor could not be honoured (another epoch, or events no longer
    /// retained): reload state through REST and go on from the new cursor.
    recovered: bool,
}

pub(super) async fn poll(
    State(state): State<AppState>,
    parts: Parts,
) -> Result<Json<PollAnswer>, ApiError> {
    require_enabled(&state, "poll")?;
    let caller = authenticate(&state, &parts)?;
    let rooms = rooms(&state, &caller, query_param(&parts, "rooms")).await?;
    let store = state.store();
    let epoch = store.epoch().to_owned();
    let max_wait = state.config().poll_timeout_secs;
    let wait = match query_param(&parts, "timeout") {
        Some(t) => t
            .parse::<u64>()
            .map_err(|_| ApiError::InvalidField {
                field: "timeout".into(),
                message: "seconds, an integer".into(),
            })?
            .min(max_wait),
        None => max_wait,
    };
    // A cursor that does not decode is treated like one that cannot be honoured (another
    // epoch): the answer says `recovered: false` and gives the current cursor, as SSE does with
    // a `Last-Event-ID` it cannot read.
    let given = query_param(&parts, "cursor").map(|raw| Cursor::decode(&raw).unwrap_or_default());
    // Where each room stands now: the answer for a first poll or a cursor that cannot resume.
    let mut current = Cursor {
        epoch: epoch.clone(),
        offsets: Default::default(),
    };
    let dispatcher = state.dispatcher();
    for room in &rooms {
        let last = match dispatcher.current_position(room) {
            Some(last) => last,
            None => {
                crate::hub::metrics::db_query("poll");
                store.last_offset(room).await?
            }
        };
        current.offsets.insert(room.clone(), last);
    }
    let Some(mut cursor) = given else {
        return Ok(Json(PollAnswer {
            events: Vec::new(),
            cursor: current.encode(),
            recovered: true,
        }));
    };
    let mut resumable = cursor.epoch == epoch;
    for room in &rooms {
        match cursor.offsets.get(room).copied() {
            Some(offset) if resumable && offset <= current.offsets[room] => {
                // A gap the room's tail holds is retained (the tail never outlives the log).
                if offset < current.offsets[room] && dispatcher.recent(room, offset, 1).is_none() {
                    crate::hub::metrics::db_query("poll");
                    let oldest = store.oldest_offset(room).await?;
                    resumable = oldest.is_some_and(|o| o <= offset + 1);
                }
            }
            _ => resumable = false,
        }
    }
    if !resumable {
        return Ok(Json(PollAnswer {
            events: Vec::new(),
            cursor: current.encode(),
            recovered: false,
        }));
    }
    // Listen before reading, so an event committed between the read and the wait wakes us.
    let (held, mut outbox) =
        open_session(&state, &caller, crate::hub::session::Transport::LongPolling).await?;
    // A poll comes and goes with every request: it listens without counting as present.
    held.session.set_silent();
    for room in &rooms {
        let _ = state
            .dispatcher()
            .subscribe_from(&held.session, room, None, &[], None)
            .await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let shutdown = state.hub().shutdown_token();
    loop {
        let mut events = Vec::new();
        for room in &rooms {
            let after = cursor.offsets[room];
            let room_limit = MAX_EVENTS - events.len() as i64;
            if let Some(frames) = dispatcher.recent(room, after, room_limit as usize) {
                // From the room's tail: the frames the live subscribers got, read back.
                for frame in frames {
                    let frame: ServerFrame =
                        serde_json::from_slice(&frame).map_err(|e| ApiError::Internal(e.into()))?;
                    if let ServerFrame::Event(event) = &frame {
                        cursor.offsets.insert(room.clone(), event.offset);
                    }
                    events.push(frame);
                }
                if events.len() as i64 >= MAX_EVENTS {
                    break;
                }
                continue;
            }
            crate::hub::metrics::db_query("poll");
            for event in store.events_after(room, after, room_limit).await? {
                cursor.offsets.insert(room.clone(), event.offset);
                events.push(ServerFrame::Event(EventFrame {
                    room: event.room,
                    offset: event.offset,
                    event: event.event,
                    data: event.data,
                    at: event.at,
                }));
            }
            if events.len() as i64 >= MAX_EVENTS {
                break;
            }
        }
        if !events.is_empty() {
            return Ok(Json(PollAnswer {
                events,
                cursor: cursor.encode(),
                recovered: true,
            }));
        }
        tokio::select! {
            woke = outbox.recv() => {
                let Some(frame) = woke else { break };
                // Events are read back from the tail or the log above, in order; what only the
                // queue carries (the `system` room's `stats` frames) is answered from here.
                let mut pushed = Vec::new();
                held.session.written(frame.len());
                pushed.extend(stats_frame(&frame));
                while let Ok(frame) = outbox.try_recv() {
                    held.session.written(frame.len());
                    pushed.extend(stats_frame(&frame));
                }
                if !pushed.is_empty() {
                    return Ok(Json(PollAnswer {
                        events: pushed,
                        cursor: cursor.encode(),
                        recovered: true,
                    }));
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
            _ = shutdown.cancelled() => break,
        }
    }
    drop(held);
    Ok(Json(PollAnswer {
        events: Vec::new(),
        cursor: cursor.encode(),
        recovered: true,
    }))
}
