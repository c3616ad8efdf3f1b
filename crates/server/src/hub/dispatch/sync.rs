//! Catching a room's stream up with the store. A cluster node hears a room's events from the
//! broker only while it has subscribers there, and the broker may lose messages (Redis pub/sub is
//! at most once; a node dies between its commit and its publish). So before a subscription joins
//! a room, and whenever the broker may have dropped something (a reconnect, the periodic
//! tail-loss check), the node compares its position with the store's last offset and reads what
//! it lacks from the log. A single node (no feed) is never behind and skips all of this.

use super::Dispatcher;
use crate::hub::feed::RoomFeed;
use metrics::{counter, Counter};
use std::sync::{Arc, LazyLock};

static CAUGHT_UP: LazyLock<Counter> = LazyLock::new(|| counter!("hub_catch_up_events_total"));

/// Events read per log query while catching up.
const PAGE: i64 = 500;

/// Keeps a room watched while a subscription is being set up (between reading the store's last
/// offset and the session joining, which takes its own watch).
pub(super) struct WatchLease {
    feed: Arc<dyn RoomFeed>,
    room: String,
}

impl Drop for WatchLease {
    fn drop(&mut self) {
        self.feed.unwatch(&self.room);
    }
}

impl Dispatcher {
    /// Watches `room` in the broker and brings this node up to the store in it (for `tasks`, in
    /// every project room). The lease keeps the watch until the subscription holds its own.
    pub(super) async fn sync_for_subscription(&self, room: &str) -> Option<WatchLease> {
        let feed = self.inner.hub.feed()?.clone();
        feed.watch(room);
        let lease = WatchLease {
            feed: feed.clone(),
            room: room.to_owned(),
        };
        // Subscribed in the broker before the store is read: an event committed after the read
        // is published after it, so it reaches this node live.
        feed.ready(room).await;
        let latest = if room == crate::domain::Room::TASKS {
            self.inner.source.last_offsets().await.map(|all| {
                all.into_iter()
                    .filter(|(r, _)| r.starts_with("project:"))
                    .collect::<Vec<_>>()
            })
        } else {
            self.inner
                .source
                .last_offset(room)
                .await
                .map(|last| vec![(room.to_owned(), last)])
        };
        match latest {
            Ok(rooms) => {
                for (room, last) in rooms {
                    self.catch_up(&room, last).await;
                }
            }
            Err(err) => tracing::warn!(room, error = %err, "could not read the last offset"),
        }
        Some(lease)
    }

    /// Brings `room` up to offset `latest` (read from the store). If nobody here receives the
    /// room, its position simply moves ahead (nothing to deliver); otherwise the missing events
    /// are read from the log and delivered in order, through the same path as live ones (so an
    /// event arriving live meanwhile is not delivered twice).
    pub async fn catch_up(&self, room: &str, latest: i64) {
        let order = self.order_of(room);
        loop {
            let after = {
                let mut o = order.lock().expect("never poisoned");
                if o.delivered >= latest {
                    return;
                }
                if !self.inner.hub.has_receivers(room) {
                    o.delivered = latest;
                    o.pending = o.pending.split_off(&(latest + 1));
                    self.drain(room, &mut o);
                    return;
                }
                o.delivered
            };
            match self
                .inner
                .source
                .events_after(room, after, PAGE.min(latest - after))
                .await
            {
                Ok(events) if !events.is_empty() => {
                    CAUGHT_UP.increment(events.len() as u64);
                    self.publish(events);
                }
                Ok(_) => return,
                Err(err) => {
                    tracing::warn!(room, error = %err, "could not read the log to catch up");
                    return;
                }
            }
            if self.position(room) <= after {
                // The log lacked the next event (compacted): the gap fill skips it.
                return;
            }
        }
    }
}
