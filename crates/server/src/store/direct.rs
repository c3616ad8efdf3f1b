//! Direct messages between two users. A message is one `message.direct` event logged twice, in
//! the sender's room and in the recipient's, in one transaction: each side reads its
//! conversations from its own room, every tab of each user receives it live, and a reconnect
//! resumes it by offset like any event (on every transport and node, since user rooms are rooms
//! like any other). `direct_messages` indexes the copies by conversation.

use super::log::lock_room;
use super::rows::from_ms;
use super::{dedup, now_ms, Result, Store, StoreError};
use crate::domain::UserId;
use serde::Serialize;
use taskflow_protocol::{EventKind, LoggedEvent};

/// Payload of `message.direct`.
#[derive(Serialize)]
struct DirectMessage<'a> {
    from: &'a str,
    to: &'a str,
    text: &'a str,
}

impl Store {
    /// Whether two users are members of at least one common project: who may message whom.
    pub async fn share_project(&self, a: &UserId, b: &UserId) -> Result<bool> {
        let shared: Option<String> = sqlx::query_scalar(
            "SELECT a.project_id FROM project_members a JOIN project_members b \
             ON a.project_id = b.project_id WHERE a.user_id = $1 AND b.user_id = $2 LIMIT 1",
        )
        .bind(a.as_str().to_owned())
        .bind(b.as_str().to_owned())
        .fetch_optional(&self.read)
        .await?;
        Ok(shared.is_some())
    }

    /// Logs a direct message from `from` to `to` in both users' rooms and returns the sender's
    /// copy. With a `command_id`, a second send with the same id by the same user logs nothing
    /// and returns the first one's copy (ids are shared with chat posts). Whether the two may
    /// talk is the caller's to check; a message to oneself is the caller's to refuse.
    pub async fn post_direct(
        &self,
        from: &UserId,
        to: &UserId,
        text: &str,
        command_id: Option<&str>,
    ) -> Result<LoggedEvent> {
        debug_assert_ne!(from, to, "the caller refuses messages to oneself");
        let (from, to, text) = (from.clone(), to.clone(), text.to_owned());
        let command_id = command_id.map(str::to_owned);
        self.write(move |tx| {
            Box::pin(async move {
                let (sender_room, recipient_room) = (from.room(), to.room());
                // Both rooms are locked in name order, so two users messaging each other at the
                // same moment cannot deadlock (PostgreSQL row locks).
                let mut rooms = [&sender_room, &recipient_room];
                rooms.sort();
                for room in rooms {
                    lock_room(tx, room).await?;
                }
                if let Some(id) = &command_id {
                    if let Some(earlier) = dedup::earlier(tx, &from, id).await? {
                        return Ok(earlier);
                    }
                }
                let message = DirectMessage {
                    from: from.as_str(),
                    to: to.as_str(),
                    text: &text,
                };
                let at = now_ms();
                tx.append(&recipient_room, EventKind::MessageDirect, &message, at)
                    .await?;
                let delivered = tx.last_event().expect("just appended");
                tx.append(&sender_room, EventKind::MessageDirect, &message, at)
                    .await?;
                let sent = tx.last_event().expect("just appended");
                for (copy, peer) in [(&delivered, &from), (&sent, &to)] {
                    sqlx::query(
                        "INSERT INTO direct_messages (room, peer, seq) VALUES ($1, $2, $3)",
                    )
                    .bind(copy.room.clone())
                    .bind(peer.as_str().to_owned())
                    .bind(copy.offset)
                    .execute(&mut **tx)
                    .await?;
                }
                if let Some(id) = command_id {
                    dedup::remember(tx, &from, &id, &sent).await?;
                }
                Ok(sent)
            })
        })
        .await
    }

    /// The last `limit` direct messages between `user` and `peer` with an offset in `user`'s
    /// room below `before` (all if `None`), oldest first: `user`'s copies, so offsets are those
    /// of `user:<user>` and page with `before`.
    pub async fn conversation(
        &self,
        user: &UserId,
        peer: &UserId,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<LoggedEvent>> {
        let room = user.room();
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT e.seq, e.payload, e.created_at FROM direct_messages d \
             JOIN events e ON e.room = d.room AND e.seq = d.seq \
             WHERE d.room = $1 AND d.peer = $2 AND d.seq < $3 ORDER BY d.seq DESC LIMIT $4",
        )
        .bind(room.clone())
        .bind(peer.as_str().to_owned())
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .rev()
            .map(|(offset, payload, at)| {
                Ok(LoggedEvent {
                    room: room.clone(),
                    offset,
                    event: EventKind::MessageDirect,
                    data: serde_json::from_str(&payload)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    at: from_ms(at),
                })
            })
            .collect()
    }
}
