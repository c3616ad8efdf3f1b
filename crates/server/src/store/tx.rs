//! Write transactions that carry their events: every event appended during a write is handed to
//! the [`EventSink`] once, and only once, the transaction holding it has committed.

use super::log::insert_event;
use super::Result;
use serde::Serialize;
use sqlx::AnyConnection;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, OnceLock};
use taskflow_protocol::{EventKind, LoggedEvent};

/// Receives the events of each committed write, in offset order per room. This is the outbox's
/// relay: the real-time hub (through the broker) implements it. It is called on the writer's
/// task right after the commit, so it must not block.
pub trait EventSink: Send + Sync + 'static {
    /// Events that are now durable in the log.
    fn committed(&self, events: Vec<LoggedEvent>);
}

/// Where committed events go; set once, after the store is opened (the hub needs the store too).
pub(crate) type SinkSlot = Arc<OnceLock<Arc<dyn EventSink>>>;

/// One write operation's view of its transaction: the connection, and the events the operation
/// has appended so far. Whoever runs the operation commits the transaction and then publishes
/// the events ([`publish`]); the operation itself never commits.
pub(crate) struct WriteTx<'c> {
    /// The connection, inside the transaction (or savepoint) the operation runs in.
    conn: &'c mut AnyConnection,
    /// Events appended by this operation, published after commit.
    events: Vec<LoggedEvent>,
}

impl<'c> WriteTx<'c> {
    pub(crate) fn new(conn: &'c mut AnyConnection) -> Self {
        Self {
            conn,
            events: Vec::new(),
        }
    }

    /// Appends an event to `room` with the room's next offset. The caller holds the room lock
    /// ([`super::log::lock_room`]).
    pub(crate) async fn append(
        &mut self,
        room: &str,
        kind: EventKind,
        data: &impl Serialize,
        at_ms: i64,
    ) -> Result<()> {
        let event = insert_event(self.conn, room, kind, data, at_ms).await?;
        self.events.push(event);
        Ok(())
    }

    /// The last event appended so far.
    pub(crate) fn last_event(&self) -> Option<LoggedEvent> {
        self.events.last().cloned()
    }

    /// The events appended, for publishing once the transaction has committed.
    pub(crate) fn into_events(self) -> Vec<LoggedEvent> {
        self.events
    }
}

/// Hands committed events to the sink. Call only after the transaction holding them committed.
pub(crate) fn publish(sink: &SinkSlot, events: Vec<LoggedEvent>) {
    if !events.is_empty() {
        if let Some(sink) = sink.get() {
            sink.committed(events);
        }
    }
}

impl Deref for WriteTx<'_> {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        self.conn
    }
}

impl DerefMut for WriteTx<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.conn
    }
}
