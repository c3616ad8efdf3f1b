//! Transports: thin adapters between a hub session and the network. Each one authenticates at
//! the start, hands the hub a session, and drains that session's queue to its client.

mod commands;
mod ws;

use crate::state::AppState;
use axum::routing::get;
use axum::Router;

/// The real-time routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/ws/tasks", get(ws::upgrade))
}
