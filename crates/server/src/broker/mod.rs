//! Brokers carry committed events from the node that wrote them to the dispatchers that deliver
//! them. One node needs no network: [`LocalBroker`] hands events straight to this node's
//! dispatcher, and a cluster broker will put the same events on the wire for every node. The
//! store knows only the [`EventSink`] it publishes to.

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
}
