//! Write transactions that carry their events: every event appended during the transaction is
//! handed to the [`EventSink`] once, and only once, the transaction has committed.

use super::log::insert_event;
use super::Result;
use serde::Serialize;
use sqlx::{Any, AnyConnection, Transaction};
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, OnceLock};
use taskflow_protocol::{EventKind, LoggedEvent};

/// Receives the events of each committed write transaction, in offset order per room. This is
/// the outbox's relay: the real-time hub (through the broker) implements it. It is called on the
/// writer's task right after the commit, so it must not block.
pub trait EventSink: Send + Sync + 'static {
    /// Events that are now durable in the log.
    fn committed(&self, events: Vec<LoggedEvent>);
}

/// Where committed events go; set once, after the store is opened (the hub needs the store too).
pub(crate) type SinkSlot = Arc<OnceLock<Arc<dyn EventSink>>>;

/// A write transaction and the events it has appended so far.
pub(crate) struct WriteTx {
    /// The database transaction; rolled back if dropped uncommitted.
    tx: Transaction<'static, Any>,
    /// Events appended in this transaction, published after commit.
    events: Vec<LoggedEvent>,
    /// Where to publish them.
    sink: SinkSlot,
}

impl WriteTx {
    pub(crate) fn new(tx: Transaction<'static, Any>, sink: SinkSlot) -> Self {
        Self {
            tx,
            events: Vec::new(),
            sink,
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
        let event = insert_event(&mut self.tx, room, kind, data, at_ms).await?;
        self.events.push(event);
        Ok(())
    }

    /// The last event appended so far.
    pub(crate) fn last_event(&self) -> Option<LoggedEvent> {
        self.events.last().cloned()
    }

    /// Commits, then publishes the events.
    pub(crate) async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        if !self.events.is_empty() {
            if let Some(sink) = self.sink.get() {
                sink.committed(self.events);
            }
        }
        Ok(())
    }
}

impl Deref for WriteTx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}
