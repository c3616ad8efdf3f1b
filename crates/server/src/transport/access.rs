//! What the streaming transports share: the token (header or query), the room list, and the
//! cursor that says where a client stopped in each room.

use crate::auth::{bearer_token, Caller};
use crate::domain::{ProjectId, Room};
use crate::error::ApiError;
use crate::state::AppState;
use axum::http::request::Parts;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// The caller, from `Authorization: Bearer` or, for browsers (whose WebSocket and EventSource
/// cannot set headers), `?access_token=`. Query strings are never logged.
pub(super) fn authenticate(state: &AppState, parts: &Parts) -> Result<Caller, ApiError> {
    let token = bearer_token(parts)
        .map(str::to_owned)
        .or_else(|| query_param(parts, "access_token"))
        .ok_or(ApiError::Unauthorized(
            "missing token: Authorization: Bearer, or ?access_token=",
        ))?;
    let caller = state
        .keys()
        .verify(&token)
        .ok_or(ApiError::Unauthorized("invalid or expired token"))?;
    state.check_rate(caller.user())?;
    Ok(caller)
}

/// One query parameter, decoded.
pub(super) fn query_param(parts: &Parts, name: &str) -> Option<String> {
    form_urlencoded::parse(parts.uri.query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Refuses a transport the configuration disables.
pub(super) fn require_enabled(state: &AppState, transport: &'static str) -> Result<(), ApiError> {
    if state
        .config()
        .disabled_transports
        .iter()
        .any(|t| t == transport)
    {
        return Err(ApiError::Unavailable(match transport {
            "websocket" => {
                "WebSocket is disabled on this server; use SSE (/events) or long polling (/poll)"
            }
            "sse" => "SSE is disabled on this server; use long polling (/poll)",
            _ => "long polling is disabled on this server",
        }));
    }
    Ok(())
}

/// The `rooms` of an SSE or long-poll request, each one the caller may follow. `tasks` is not
/// accepted here: a stream that resumes by cursor names its rooms.
pub(super) async fn rooms(
    state: &AppState,
    caller: &Caller,
    raw: Option<String>,
) -> Result<Vec<String>, ApiError> {
    let raw = raw.ok_or_else(|| invalid("rooms is required, e.g. rooms=project:p1,user:alice"))?;
    if !crate::domain::rules::ROOM_LIST.admits(&raw) {
        return Err(invalid(crate::domain::rules::ROOM_LIST.message));
    }
    let projects = state.memberships_of(caller).await?;
    let mut rooms = Vec::new();
    for name in raw.split(',') {
        let room = Room::parse(name).map_err(|e| invalid(&e.message))?;
        match &room {
            Room::Tasks => {
                return Err(invalid(
                    "name the rooms (project:<id>, user:<id>); tasks is for WebSocket",
                ))
            }
            Room::User(user) if user != caller.user() && !caller.is_admin() => {
                return Err(ApiError::Forbidden(format!("{name} is for that user only")))
            }
            Room::User(_) => {}
            Room::System if !caller.is_admin() => {
                return Err(ApiError::Forbidden(
                    "the system room is for the admin only".to_owned(),
                ))
            }
            Room::System => {}
            Room::Project(project) => {
                if caller.is_admin() {
                    crate::hub::metrics::db_query("project");
                    state.store().get_project(project).await?;
                } else if !projects.contains(project) {
                    // A membership added on another node a moment ago may still be on its way.
                    crate::hub::metrics::db_query("refusal");
                    caller.require_member(state, project).await?;
                }
            }
        }
        if !rooms.contains(&room.to_string()) {
            rooms.push(room.to_string());
        }
    }
    if rooms.is_empty() {
        return Err(invalid("rooms is empty"));
    }
    if rooms.len() > state.config().ws_max_subscriptions {
        return Err(invalid("too many rooms"));
    }
    Ok(rooms)
}

fn invalid(message: &str) -> ApiError {
    ApiError::InvalidField {
        field: "rooms".into(),
        message: message.to_owned(),
    }
}

/// Where a client stopped: the epoch and the last offset it has in each room. Opaque to clients
/// (base64 of JSON), used as the SSE event id and the long-poll cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cursor {
    /// The store's epoch.
    #[serde(rename = "e")]
    pub(crate) epoch: String,
    /// Last offset per room.
    #[serde(rename = "o")]
    pub(crate) offsets: BTreeMap<String, i64>,
}

impl Cursor {
    pub(crate) fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("cursors serialize");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    pub(crate) fn decode(raw: &str) -> Option<Self> {
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw.trim())
            .ok()?;
        serde_json::from_slice(&json).ok()
    }
}

/// A hub session held by a request-scoped transport (an SSE stream, a long poll): dropping it
/// leaves every room and gives back the connection slot, however the request ends.
pub(super) struct HeldSession {
    pub(super) session: std::sync::Arc<crate::hub::session::Session>,
    state: AppState,
    _admission: crate::hub::Admission,
}

impl Drop for HeldSession {
    fn drop(&mut self) {
        self.state.hub().disconnect(&self.session);
    }
}

/// Everything a real-time connection needs before its session exists: a place in the gate
/// (held by the caller until the session exists), a connection slot, and the caller's projects
/// (from the node's cache). Refusals are 503 with `Retry-After`.
pub(super) async fn admit<'a>(
    state: &'a AppState,
    caller: &Caller,
) -> Result<
    (
        crate::hub::Admission,
        HashSet<ProjectId>,
        tokio::sync::SemaphorePermit<'a>,
    ),
    ApiError,
> {
    let place = state.gate().enter().await?;
    let admission = state
        .hub()
        .admit(caller.user())
        .map_err(|e| state.gate().refuse(e.into()))?;
    let projects = state.memberships_of(caller).await?;
    Ok((admission, projects, place))
}

/// Admits the caller (see [`admit`]) and opens a hub session.
pub(super) async fn open_session(
    state: &AppState,
    caller: &Caller,
    transport: crate::hub::session::Transport,
) -> Result<(HeldSession, crate::hub::Outbox), ApiError> {
    let (admission, projects, _place) = admit(state, caller).await?;
    let (session, outbox) = state.hub().connect(
        caller.user().clone(),
        caller.is_admin(),
        projects,
        transport,
    );
    Ok((
        HeldSession {
            session,
            state: state.clone(),
            _admission: admission,
        },
        outbox,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor {
            epoch: "e1".into(),
            offsets: BTreeMap::from([("project:p".into(), 5), ("user:a".into(), 0)]),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("%%%"), None);
        assert_eq!(Cursor::decode("aGVsbG8"), None);
    }
}
