//! Direct messages over REST: sending one and paging a conversation. The WebSocket `direct`
//! command sends the same way ([`crate::direct::send`]); these routes serve clients on the SSE
//! or long-polling fallback (which cannot send commands) and pages that load a conversation's
//! history before they go live.

use crate::auth::Caller;
use crate::domain::{rules, Invalid, UserId};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use taskflow_protocol::{ErrorBody, LoggedEvent};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Messages a conversation request returns when it names no `limit`.
const DEFAULT_HISTORY: i64 = 100;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_direct, post_direct))
}

/// Query of `GET /users/{id}/messages`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConversationQuery {
    /// At most this many messages, 1 to 500 (default 100): the latest ones.
    limit: Option<i64>,
    /// Only messages with an offset (in the caller's `user:` room) below this one, to page back.
    before: Option<i64>,
}

/// Body of `POST /users/{id}/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostDirect {
    /// 1 to 4,000 characters, stored trimmed.
    text: String,
    /// A client-chosen id: sending again with the same id (a retry) sends nothing and answers
    /// the first send's event. Shared with chat posts and the WebSocket commands' ids.
    id: Option<String>,
}

fn parse_user(raw: &str) -> Result<UserId, Invalid> {
    UserId::parse(raw, "id")
}

/// The caller's conversation with user `id`: the latest `message.direct` events between the
/// two, oldest first, as logged in the caller's own room (`user:<caller>`).
#[utoipa::path(get, path = "/users/{id}/messages", tag = "users", params(("id" = String, Path, description = "The other user"), ConversationQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Vec<LoggedEvent>), (status = 400, body = ErrorBody)))]
async fn list_direct(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ConversationQuery>,
) -> Result<Json<Vec<LoggedEvent>>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_HISTORY);
    rules::PAGE_LIMIT.check(limit, "limit")?;
    let peer = parse_user(&id)?;
    let messages = state
        .store()
        .conversation(caller.user(), &peer, query.before, limit)
        .await?;
    Ok(Json(messages))
}

/// Send user `id` a direct message: logged as `message.direct` in both users' rooms and
/// delivered to every connection of both. Allowed to members of a common project, and to or
/// from the admin. Answers the sender's copy.
#[utoipa::path(post, path = "/users/{id}/messages", tag = "users", params(("id" = String, Path, description = "The recipient")),
    request_body = PostDirect, security(("bearer" = [])),
    responses((status = 201, body = LoggedEvent), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn post_direct(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PostDirect>,
) -> Result<(StatusCode, Json<LoggedEvent>), ApiError> {
    if let Some(command_id) = &body.id {
        rules::MESSAGE_ID.check(command_id, "id")?;
    }
    // Stored as the WebSocket command stores its `id` (as JSON), so one id names one send
    // whichever way it was sent.
    let command_id = body.id.map(|i| serde_json::Value::String(i).to_string());
    let to = parse_user(&id)?;
    let event = crate::direct::send(
        &state,
        &caller,
        to.as_str(),
        &body.text,
        command_id.as_deref(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(event)))
}
