//! The people around a project, over REST: its chat history, posting to the chat, and who is
//! viewing it. The WebSocket has commands for the last two; these routes exist so that a page
//! on the SSE or long-polling fallback (which cannot send commands) can still chat and show
//! presence, and so that a page can load a chat's history before it goes live.

use crate::auth::Caller;
use crate::domain::{rules, Invalid, ProjectId};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use taskflow_protocol::{ErrorBody, LoggedEvent};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Messages a history request returns when it names no `limit`.
const DEFAULT_HISTORY: i64 = 100;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_messages, post_message))
        .routes(routes!(presence))
}

/// Query of `GET /projects/{id}/messages`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    /// At most this many messages, 1 to 500 (default 100): the latest ones.
    limit: Option<i64>,
    /// Only messages with an offset below this one (to page back).
    before: Option<i64>,
}

/// Body of `POST /projects/{id}/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostMessage {
    /// 1 to 4,000 characters after trimming.
    text: String,
    /// A client-chosen id: posting again with the same id (a retry) posts nothing and answers
    /// the first post's event. Shared with the WebSocket `message` command's ids.
    id: Option<String>,
}

/// The people viewing a project.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Presence {
    /// `project:<id>`.
    room: String,
    /// Each user with connections in the room, and how many (their tabs).
    present: Vec<PresentUser>,
}

/// One user viewing a project.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PresentUser {
    /// The user id.
    user: String,
    /// How many of the user's connections (tabs) are in the room.
    connections: u32,
}

fn parse_project(raw: &str) -> Result<ProjectId, Invalid> {
    ProjectId::parse(raw).map_err(|e| Invalid::new("id", e.message))
}

/// Checks access and existence: a member (or the admin) of a project that exists.
async fn open_project(state: &AppState, caller: &Caller, raw: &str) -> Result<ProjectId, ApiError> {
    let id = parse_project(raw)?;
    caller.require_member(state, &id).await?;
    state.store().get_project(&id).await?;
    Ok(id)
}

/// The project's chat: its latest `message.created` events, oldest first.
#[utoipa::path(get, path = "/projects/{id}/messages", tag = "projects", params(("id" = String, Path), HistoryQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Vec<LoggedEvent>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<Vec<LoggedEvent>>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_HISTORY);
    rules::PAGE_LIMIT.check(limit, "limit")?;
    let id = open_project(&state, &caller, &id).await?;
    let messages = state
        .store()
        .messages(&id.room(), query.before, limit)
        .await?;
    Ok(Json(messages))
}

/// Post to the project's chat; delivered to the room like the WebSocket `message` command.
#[utoipa::path(post, path = "/projects/{id}/messages", tag = "projects", params(("id" = String, Path)),
    request_body = PostMessage, security(("bearer" = [])),
    responses((status = 201, body = LoggedEvent), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn post_message(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PostMessage>,
) -> Result<(StatusCode, Json<LoggedEvent>), ApiError> {
    rules::CHAT_TEXT.check(&body.text, "text")?;
    let text = body.text.trim();
    if let Some(id) = &body.id {
        rules::MESSAGE_ID.check(id, "id")?;
    }
    let id = open_project(&state, &caller, &id).await?;
    // Stored as the WebSocket command stores its `id` (as JSON), so one id names one post
    // whichever way it was sent.
    let command_id = body.id.map(|i| serde_json::Value::String(i).to_string());
    let event = state
        .store()
        .post_message(&id, caller.user(), text, command_id.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(event)))
}

/// Who is viewing the project now: users with a live connection (any transport) in its room.
#[utoipa::path(get, path = "/projects/{id}/presence", tag = "projects", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Presence), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn presence(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Presence>, ApiError> {
    let id = open_project(&state, &caller, &id).await?;
    let room = id.room();
    let present = state
        .hub()
        .presence(&room)
        .into_iter()
        .map(|p| PresentUser {
            user: p.user,
            connections: p.connections,
        })
        .collect();
    Ok(Json(Presence { room, present }))
}
