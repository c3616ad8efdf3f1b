//! Brokers carry committed events from the node that wrote them to the dispatchers that deliver
//! them. One node needs no network: [`LocalBroker`] hands events straight to this node's
//! dispatcher. In a cluster, [`redis::Cluster`] does the same and also puts the serialized event
//! on Redis pub/sub for the other nodes (see [`envelope`] for the wire format). The store knows
//! only the [`EventSink`] it publishes to; the hub only the `RoomFeed` it reports rooms to.

pub mod envelope;
pub mod redis;

use crate::hub::dispatch::Dispatcher;
use crate::hub::EventSource;
use crate::store::{EventSink, Store};
use futures::future::BoxFuture;
use taskflow_protocol::LoggedEvent;

/// The in-process broker: committed events go straight to the local dispatcher.
pub struct LocalBroker {
    /// Where events are delivered.
    dispatcher: Dispatcher,
}

impl LocalBroker {
    /// A broker delivering to `dispatcher`.
    pub fn new(dispatcher: Dispatcher) -> Self {
        Self { dispatcher }
    }
}

impl EventSink for LocalBroker {
    fn committed(&self, events: Vec<LoggedEvent>) {
        self.dispatcher.publish(events);
    }
}

/// The store as the hub's source of missed events.
pub struct StoreSource(pub Store);

impl EventSource for StoreSource {
    fn events_after<'a>(
        &'a self,
        room: &'a str,
        after: i64,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<LoggedEvent>, String>> {
        Box::pin(async move {
            self.0
                .events_after(room, after, limit)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn events_oldest<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Option<i64>, String>> {
        Box::pin(async move { self.0.oldest_offset(room).await.map_err(|e| e.to_string()) })
    }

    fn last_offset<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<i64, String>> {
        Box::pin(async move { self.0.last_offset(room).await.map_err(|e| e.to_string()) })
    }

    fn last_offsets(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>, String>> {
        Box::pin(async move { self.0.room_offsets().await.map_err(|e| e.to_string()) })
    }
}
