//! Commands already carried out, remembered by (user, command id): a client that resends a
//! chat or direct message after a reconnect (it cannot know whether the first one arrived) gets
//! the first answer back instead of a second message. One namespace per user for both kinds, as
//! the WebSocket and REST ids of one client are one sequence.

use super::{now_ms, Result, StoreError};
use crate::domain::UserId;
use sqlx::AnyConnection;
use taskflow_protocol::LoggedEvent;

/// The event an earlier command with this id logged, if any.
pub(crate) async fn earlier(
    conn: &mut AnyConnection,
    user: &UserId,
    command_id: &str,
) -> Result<Option<LoggedEvent>> {
    let earlier: Option<String> = sqlx::query_scalar(
        "SELECT result FROM command_results WHERE user_id = $1 AND command_id = $2",
    )
    .bind(user.as_str().to_owned())
    .bind(command_id.to_owned())
    .fetch_optional(&mut *conn)
    .await?;
    earlier
        .map(|json| serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}

/// Remembers the event a command logged, in the transaction that logged it.
pub(crate) async fn remember(
    conn: &mut AnyConnection,
    user: &UserId,
    command_id: &str,
    event: &LoggedEvent,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO command_results (user_id, command_id, result, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(user.as_str().to_owned())
    .bind(command_id.to_owned())
    .bind(serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
