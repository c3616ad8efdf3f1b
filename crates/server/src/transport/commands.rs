//! What a WebSocket client can ask, and the one reply each command with an `id` gets.

use crate::auth::Caller;
use crate::direct::DirectError;
use crate::domain::{rules, ProjectId, Room};
use crate::hub::dispatch::Replay;
use crate::hub::session::Session;
use crate::hub::SubscribeError;
use crate::state::AppState;
use crate::store::StoreError;
use serde_json::{json, Value};
use std::sync::Arc;
use taskflow_protocol::{
    Command, DirectPosted, ErrorDetail, MessagePosted, PresenceList, ServerFrame, Unsubscribed,
};

/// Per-connection state the commands change.
pub(crate) struct Connection {
    /// The caller, as authenticated at the handshake.
    pub(crate) caller: Caller,
    /// The hub's view of this connection.
    pub(crate) session: Arc<Session>,
    /// True while the connection receives `tasks` only because it never subscribed to anything:
    /// the first explicit subscription to another room ends it.
    pub(crate) implicit_tasks: bool,
}

/// A command that failed: a stable code and a message.
struct Refusal {
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<StoreError> for Refusal {
    fn from(err: StoreError) -> Self {
        tracing::error!(error = %err, "command failed in the store");
        Refusal::new("internal", "the command failed; retry")
    }
}

fn detail(code: &str, message: String) -> ErrorDetail {
    ErrorDetail {
        code: code.to_owned(),
        message,
        request_id: None,
        details: None,
    }
}

/// What to do after a command: the frame to send back, if any, then the replay of missed
/// events, if the command was a resume (it must follow the reply).
pub(crate) struct Outcome {
    pub(crate) reply: Option<ServerFrame>,
    pub(crate) replay: Option<Replay>,
}

impl From<ServerFrame> for Outcome {
    fn from(reply: ServerFrame) -> Self {
        Outcome {
            reply: Some(reply),
            replay: None,
        }
    }
}

/// Handles one text frame: parses it, runs it, and returns what to send back. Never fails the
/// connection: bad input gets an error frame.
pub(crate) async fn handle(state: &AppState, conn: &mut Connection, text: &str) -> Outcome {
    let mut value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(err) => {
            return ServerFrame::Error {
                error: detail("bad_json", format!("not JSON: {err}")),
            }
            .into()
        }
    };
    let id = value.as_object_mut().and_then(|o| o.remove("id"));
    if let Some(id) = &id {
        if !(id.is_string() || id.is_number()) {
            return ServerFrame::Error {
                error: detail("invalid_field", "id: must be a string or a number".into()),
            }
            .into();
        }
    }
    let mut replay = None;
    let result = match serde_json::from_value::<Command>(value.clone()) {
        Ok(Command::Ping) => return ServerFrame::Pong { id }.into(),
        Ok(command) => run(state, conn, command, id.as_ref(), &mut replay).await,
        Err(err) => Err(match value.get("type").and_then(Value::as_str) {
            Some(t) if is_command(t) => Refusal::new("invalid_field", err.to_string()),
            Some(t) => Refusal::new("unknown_type", format!("unknown command type {t:?}")),
            None => Refusal::new("invalid_field", "type: a command needs a type".to_owned()),
        }),
    };
    let reply = match (id, result) {
        (Some(id), Ok(result)) => Some(ServerFrame::Reply {
            id,
            ok: true,
            result: Some(result),
            error: None,
        }),
        (None, Ok(_)) => None,
        (Some(id), Err(refusal)) => Some(ServerFrame::Reply {
            id,
            ok: false,
            result: None,
            error: Some(detail(refusal.code, refusal.message)),
        }),
        (None, Err(refusal)) => Some(ServerFrame::Error {
            error: detail(refusal.code, refusal.message),
        }),
    };
    Outcome { reply, replay }
}

/// A command's result as the reply carries it (the types `/asyncapi.json` names for each).
fn result(value: impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("results serialize")
}

fn is_command(t: &str) -> bool {
    matches!(
        t,
        "subscribe" | "unsubscribe" | "message" | "direct" | "typing" | "presence" | "ping"
    )
}

async fn run(
    state: &AppState,
    conn: &mut Connection,
    command: Command,
    id: Option<&Value>,
    replay: &mut Option<Replay>,
) -> Result<Value, Refusal> {
    match command {
        Command::Subscribe { room, since } => {
            let parsed = parse_room(&room)?;
            authorize(state, conn, &parsed).await?;
            if conn.implicit_tasks && parsed != Room::Tasks {
                state.hub().leave(&conn.session, Room::TASKS);
            }
            if conn.implicit_tasks && parsed == Room::Tasks && since.is_some() {
                // Resuming `tasks` replaces the implicit subscription.
                state.hub().leave(&conn.session, Room::TASKS);
            }
            conn.implicit_tasks = false;
            let (answer, missed) = state
                .dispatcher()
                .subscribe_from(
                    &conn.session,
                    &room,
                    since.as_ref(),
                    &tasks_scope(state, conn, &parsed).await?,
                    None,
                )
                .await
                .map_err(|e| match e {
                    SubscribeError::TooMany => {
                        Refusal::new("too_many_subscriptions", e.to_string())
                    }
                    SubscribeError::AlreadySubscribed => {
                        Refusal::new("already_subscribed", e.to_string())
                    }
                    SubscribeError::LogUnavailable => Refusal::new("unavailable", e.to_string()),
                })?;
            *replay = missed;
            Ok(result(answer))
        }
        Command::Unsubscribe { room } => {
            if state.hub().leave(&conn.session, &room) {
                Ok(result(Unsubscribed { room }))
            } else {
                Err(Refusal::new(
                    "not_subscribed",
                    format!("not subscribed to {room}"),
                ))
            }
        }
        Command::Message { room, text } => {
            let Room::Project(project) = parse_room(&room)? else {
                return Err(Refusal::new(
                    "invalid_field",
                    "room: chat is in project rooms",
                ));
            };
            // The rule REST chat and the AsyncAPI document use; the text is stored trimmed.
            rules::CHAT_TEXT
                .check(&text, "text")
                .map_err(|e| Refusal::new("invalid_field", e.to_string()))?;
            let text = text.trim();
            authorize(state, conn, &Room::Project(project.clone())).await?;
            // The command id makes a resend after a reconnect idempotent.
            let command_id = id.map(|id| id.to_string());
            let event = state
                .store()
                .post_message(&project, conn.caller.user(), text, command_id.as_deref())
                .await?;
            Ok(result(MessagePosted {
                room,
                offset: event.offset,
            }))
        }
        Command::Direct { to, text } => {
            let command_id = id.map(|id| id.to_string());
            let event = crate::direct::send(state, &conn.caller, &to, &text, command_id.as_deref())
                .await
                .map_err(|err| match err {
                    DirectError::Invalid(invalid) => {
                        Refusal::new("invalid_field", invalid.to_string())
                    }
                    DirectError::NoSharedProject(_) => Refusal::new("forbidden", err.to_string()),
                    DirectError::Store(store) => store.into(),
                })?;
            Ok(result(DirectPosted {
                to,
                room: event.room,
                offset: event.offset,
            }))
        }
        Command::Typing { room } => {
            if !conn.session.rooms().contains(&room) || !room.starts_with("project:") {
                return Err(Refusal::new(
                    "not_subscribed",
                    format!("subscribe to {room} before typing in it"),
                ));
            }
            state.hub().typing(&conn.session, &room);
            Ok(json!({}))
        }
        Command::Presence { room } => {
            let parsed = parse_room(&room)?;
            authorize(state, conn, &parsed).await?;
            let present = state.presence(&room).await;
            Ok(result(PresenceList { room, present }))
        }
        Command::Ping => Ok(json!({})),
    }
}

/// The project rooms a `tasks` subscription spans: every project for the admin, the caller's
/// projects otherwise (as the session knows them: kept current by membership events). Empty for
/// other rooms.
async fn tasks_scope(
    state: &AppState,
    conn: &Connection,
    room: &Room,
) -> Result<Vec<String>, Refusal> {
    if *room != Room::Tasks {
        return Ok(Vec::new());
    }
    let projects = if conn.caller.is_admin() {
        crate::hub::metrics::db_query("project");
        state
            .store()
            .list_projects(None)
            .await?
            .into_iter()
            .map(|p| format!("project:{}", p.id))
            .collect()
    } else {
        conn.session
            .projects()
            .iter()
            .map(ProjectId::room)
            .collect()
    };
    Ok(projects)
}

fn parse_room(raw: &str) -> Result<Room, Refusal> {
    Room::parse(raw).map_err(|e| Refusal::new("invalid_room", e.to_string()))
}

/// Whether the caller may subscribe to (or post in, or see presence of) a room. A member's
/// projects are the session's (no query, but a refusal is checked with the store); the admin may
/// use any project that exists.
async fn authorize(state: &AppState, conn: &Connection, room: &Room) -> Result<(), Refusal> {
    let caller = &conn.caller;
    match room {
        Room::Tasks => Ok(()),
        Room::System if caller.is_admin() => Ok(()),
        Room::System => Err(Refusal::new(
            "forbidden",
            "the system room is for the admin only",
        )),
        Room::User(user) if user == caller.user() || caller.is_admin() => Ok(()),
        Room::User(_) => Err(Refusal::new(
            "forbidden",
            "a user room is for that user only",
        )),
        Room::Project(project) if caller.is_admin() => {
            crate::hub::metrics::db_query("project");
            match state.store().get_project(project).await {
                Ok(_) => Ok(()),
                Err(StoreError::ProjectNotFound(_)) => Err(Refusal::new(
                    "room_not_found",
                    format!("project {project} does not exist"),
                )),
                Err(other) => Err(other.into()),
            }
        }
        Room::Project(project) if conn.session.sees(project) => Ok(()),
        Room::Project(project) => {
            // Not a member as far as this node heard. A membership added on another node a
            // moment ago may still be on its way: a refusal asks the store (refusals are rare).
            crate::hub::metrics::db_query("refusal");
            if state.store().is_member(project, caller.user()).await? {
                conn.session.set_member(project, true);
                Ok(())
            } else {
                Err(Refusal::new(
                    "forbidden",
                    format!("you are not a member of project {project}"),
                ))
            }
        }
    }
}
