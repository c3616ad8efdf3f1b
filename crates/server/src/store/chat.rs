//! Chat history: a project's `message.created` events, read back from the event log. Messages
//! are not stored anywhere else, so the history is exactly what the room delivered (and what
//! retention kept).

use super::rows::from_ms;
use super::{Result, Store, StoreError};
use taskflow_protocol::{EventKind, LoggedEvent};

impl Store {
    /// The last `limit` chat messages of `room` with an offset below `before` (all if `None`),
    /// oldest first.
    pub async fn messages(
        &self,
        room: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<LoggedEvent>> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT seq, payload, created_at FROM events WHERE room = $1 AND kind = $2 \
             AND seq < $3 ORDER BY seq DESC LIMIT $4",
        )
        .bind(room.to_owned())
        .bind(EventKind::MessageCreated.as_str())
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .rev()
            .map(|(offset, payload, at)| {
                Ok(LoggedEvent {
                    room: room.to_owned(),
                    offset,
                    event: EventKind::MessageCreated,
                    data: serde_json::from_str(&payload)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    at: from_ms(at),
                })
            })
            .collect()
    }
}
