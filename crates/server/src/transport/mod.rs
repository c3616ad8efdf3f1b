//! Transports: thin adapters between a hub session and the network. Each one authenticates at
//! the start, hands the hub a session, and drains that session's queue to its client:
//! WebSocket (`ws`), Server-Sent Events (`sse`) and long polling (`poll`). The protocol they speak
//! is published as `/asyncapi.json` (`asyncapi`) and, for TypeScript, `/taskflow.d.ts`.

pub(crate) mod access;
pub(crate) mod asyncapi;
pub(crate) mod commands;
mod declarations;
mod docs;
mod gate;
mod poll;
mod script;
mod sse;
pub(crate) mod ws;

use crate::state::AppState;
use axum::routing::get;
use axum::Router;

pub(crate) use gate::Gate;

/// The real-time routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/ws/tasks", get(ws::upgrade))
        .route("/ws/docs/{doc}", get(docs::upgrade))
        .route("/events", get(sse::stream))
        .route("/poll", get(poll::poll))
        .route("/taskflow.js", get(script::script))
        .route("/taskflow.d.ts", get(declarations::declarations))
        .route("/asyncapi.json", get(asyncapi::serve))
}
