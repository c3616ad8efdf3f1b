//! The event log: appends inside a write transaction, and reads by room and offset.

use super::rows::from_ms;
use super::{now_ms, Result, Store, StoreError};
use serde::Serialize;
use sqlx::AnyConnection;
use taskflow_protocol::{EventKind, LoggedEvent};

/// Takes the room's row lock for the rest of the transaction; every write transaction starts
/// here. Fails with `ProjectNotFound` when the room does not exist, which doubles as the
/// project-existence check.
pub(crate) async fn lock_room(conn: &mut AnyConnection, room: &str) -> Result<()> {
    if room.starts_with("user:") {
        // User rooms come into being with their first event.
        sqlx::query(
            "INSERT INTO rooms (room, last_offset) VALUES ($1, 0) ON CONFLICT (room) DO NOTHING",
        )
        .bind(room.to_owned())
        .execute(&mut *conn)
        .await?;
    }
    let done = sqlx::query("UPDATE rooms SET last_offset = last_offset WHERE room = $1")
        .bind(room.to_owned())
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        let project = room.strip_prefix("project:").unwrap_or(room).to_owned();
        return Err(StoreError::ProjectNotFound(project));
    }
    Ok(())
}

/// Inserts an event into `room` with the next offset, naming the task it is about, if any, in
/// `task_id` (the index of task histories, [`super::history`]). The caller holds the room lock
/// ([`lock_room`]) and commits the event with the change it describes; see
/// [`super::tx::WriteTx::append`].
pub(crate) async fn insert_event(
    conn: &mut AnyConnection,
    room: &str,
    kind: EventKind,
    data: &impl Serialize,
    at_ms: i64,
) -> Result<LoggedEvent> {
    let offset: i64 = sqlx::query_scalar(
        "UPDATE rooms SET last_offset = last_offset + 1 WHERE room = $1 RETURNING last_offset",
    )
    .bind(room.to_owned())
    .fetch_one(&mut *conn)
    .await?;
    let data = serde_json::to_value(data).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query(
        "INSERT INTO events (room, seq, kind, payload, created_at, task_id) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(room.to_owned())
    .bind(offset)
    .bind(kind.as_str())
    .bind(data.to_string())
    .bind(at_ms)
    .bind(super::history::subject(kind, &data))
    .execute(&mut *conn)
    .await?;
    Ok(LoggedEvent {
        room: room.to_owned(),
        offset,
        event: kind,
        data,
        at: from_ms(at_ms),
    })
}

/// An event of `room` from its row `(seq, kind, payload, created_at)`.
pub(super) fn logged(
    room: &str,
    (offset, kind, payload, at): (i64, String, String, i64),
) -> Result<LoggedEvent> {
    Ok(LoggedEvent {
        room: room.to_owned(),
        offset,
        event: EventKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("event kind {kind:?}")))?,
        data: serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        at: from_ms(at),
    })
}

impl Store {
    /// Up to `limit` events of `room` with an offset greater than `after`, in offset order.
    pub async fn events_after(
        &self,
        room: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LoggedEvent>> {
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT seq, kind, payload, created_at FROM events WHERE room = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3",
        )
        .bind(room.to_owned())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter().map(|row| logged(room, row)).collect()
    }

    /// The oldest offset still in `room`'s log, if any (older ones were compacted away).
    pub async fn oldest_offset(&self, room: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MIN(seq) FROM events WHERE room = $1")
                .bind(room.to_owned())
                .fetch_one(&self.read)
                .await?,
        )
    }

    /// Enforces retention: deletes events older than `max_age_ms`, and in each room all but the
    /// last `max_per_room` (and the direct-message index entries of what it deleted); forgets
    /// command results older than `dedup_window_ms`. Returns how
    /// many events were deleted. Offsets are never reused: `rooms` keeps the last one.
    pub async fn compact(
        &self,
        max_per_room: i64,
        max_age_ms: i64,
        dedup_window_ms: i64,
    ) -> Result<u64> {
        let now = now_ms();
        let by_age = sqlx::query("DELETE FROM events WHERE created_at < $1")
            .bind(now - max_age_ms)
            .execute(&self.write)
            .await?
            .rows_affected();
        let by_count = sqlx::query(
            "DELETE FROM events WHERE seq <= (SELECT r.last_offset FROM rooms r WHERE r.room = events.room) - $1",
        )
        .bind(max_per_room)
        .execute(&self.write)
        .await?
        .rows_affected();
        if by_age + by_count > 0 {
            // The conversation index follows the log: a compacted message is gone from both.
            sqlx::query(
                "DELETE FROM direct_messages WHERE NOT EXISTS \
                 (SELECT 1 FROM events e WHERE e.room = direct_messages.room AND e.seq = direct_messages.seq)",
            )
            .execute(&self.write)
            .await?;
        }
        sqlx::query("DELETE FROM command_results WHERE created_at < $1")
            .bind(now - dedup_window_ms)
            .execute(&self.write)
            .await?;
        Ok(by_age + by_count)
    }

    /// Every room and its last offset: where the hub's streams start when the server starts.
    pub async fn room_offsets(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as("SELECT room, last_offset FROM rooms")
            .fetch_all(&self.read)
            .await?)
    }

    /// The last offset handed out in `room` (0 before its first event).
    pub async fn last_offset(&self, room: &str) -> Result<i64> {
        let last: Option<i64> = sqlx::query_scalar("SELECT last_offset FROM rooms WHERE room = $1")
            .bind(room.to_owned())
            .fetch_optional(&self.read)
            .await?;
        Ok(last.unwrap_or(0))
    }
}
