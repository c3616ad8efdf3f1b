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
    /// `scope`, or in every project room when `scope` is empty). The lease keeps the watch until
    /// the subscription holds its own.
    ///
    /// A subscription without a position to resume from skips the catch-up when the room was
    /// already watched: its answer is the node's position, and every later event reaches it
    /// (a room with receivers never skips ahead). So does a resume whose positions (`resume`:
    /// room, offset) this node has reached in every room: it is following them, so it is as
    /// current as it would be after reading the store, and a reconnect storm onto a node that
    /// follows the rooms costs no query. Any other resume catches up, because the client's
    /// position may come from a node that is ahead of this one.
    pub(super) async fn sync_for_subscription(
        &self,
        room: &str,
        scope: &[String],
        resuming: bool,
        resume: &[(String, i64)],
    ) -> Option<WatchLease> {
        let feed = self.inner.hub.feed()?.clone();
        let following = feed.watch(room);
        let lease = WatchLease {
            feed: feed.clone(),
            room: room.to_owned(),
        };
        if following && !resuming {
            return Some(lease);
        }
        let reached = || {
            !resume.is_empty()
                && resume
                    .iter()
                    .all(|(r, f)| self.position(r).is_some_and(|at| *f <= at))
        };
        if following && reached() {
            return Some(lease);
        }
        // Subscribed in the broker before the store is read: an event committed after the read
        // is published after it, so it reaches this node live.
        feed.ready(room).await;
        let latest = if room == crate::domain::Room::TASKS && !scope.is_empty() {
            let mut latest = Vec::with_capacity(scope.len());
            for r in scope {
                crate::hub::metrics::db_query("last_offset");
                match self.inner.source.last_offset(r).await {
                    Ok(last) => latest.push((r.clone(), last)),
                    Err(err) => {
                        tracing::warn!(room = r, error = %err, "could not read the last offset")
                    }
                }
            }
            Ok(latest)
        } else if room == crate::domain::Room::TASKS {
            crate::hub::metrics::db_query("last_offset");
            self.inner.source.last_offsets().await.map(|all| {
                all.into_iter()
                    .filter(|(r, _)| r.starts_with("project:"))
                    .collect::<Vec<_>>()
            })
        } else {
            crate::hub::metrics::db_query("last_offset");
            self.inner
                .source
                .last_offset(room)
                .await
                .map(|last| vec![(room.to_owned(), last)])
        };
        match latest {
            Ok(rooms) => {
                for (room, last) in rooms {
                    self.catch_up_counted(&room, last, true).await;
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
    ///
    /// A room with no state here starts at `latest` when nobody receives it, and at 0 when
    /// somebody does (a room created since they subscribed, see [`super::rooms`]).
    pub async fn catch_up(&self, room: &str, latest: i64) {
        self.catch_up_counted(room, latest, false).await
    }

    /// [`Dispatcher::catch_up`], its log reads counted as a subscription's queries when `counted`.
    async fn catch_up_counted(&self, room: &str, latest: i64, counted: bool) {
        let order = self.order_or(room, || {
            if self.inner.hub.has_receivers(room) {
                0
            } else {
                latest
            }
        });
        loop {
            let after = {
                let mut o = order.lock().expect("never poisoned");
                o.touched = true;
                if o.delivered >= latest {
                    return;
                }
                if !self.inner.hub.has_receivers(room) {
                    o.skip_to(latest);
                    o.pending = o.pending.split_off(&(latest + 1));
                    self.drain(room, &mut o);
                    return;
                }
                o.delivered
            };
            if counted {
                crate::hub::metrics::db_query("catch_up");
            }
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
            if order.lock().expect("never poisoned").delivered <= after {
                // The log lacked the next event (compacted): the gap fill skips it.
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::broker::StoreSource;
    use crate::domain::{NewTask, Priority, ProjectId, TaskTitle, UserId};
    use crate::hub::dispatch::Dispatcher;
    use crate::hub::session::QueueLimits;
    use crate::hub::{Hub, HubLimits};
    use crate::store::Store;
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::Duration;

    async fn store_with_events(dir: &tempfile::TempDir, n: usize) -> Store {
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .unwrap();
        for i in 0..n {
            store
                .create_task(NewTask {
                    title: TaskTitle::parse(&format!("t{i}")).unwrap(),
                    description: None,
                    status: taskflow_protocol::TaskStatus::Todo,
                    priority: Priority::default(),
                    project_id: ProjectId::default_project(),
                    assignee: None,
                })
                .await
                .unwrap();
        }
        store
    }

    fn dispatcher(store: &Store) -> Dispatcher {
        let hub = Hub::new(HubLimits {
            queue: QueueLimits {
                messages: 100,
                bytes: 1 << 20,
            },
            max_connections: 10,
            max_connections_per_user: 10,
            max_subscriptions: 10,
            connection_threads: 0,
            compression: None,
            memberships: Default::default(),
        });
        // A node that heard nothing of the room since it started (at offset 0).
        Dispatcher::new(
            hub,
            Arc::new(StoreSource(store.clone())),
            Duration::from_millis(20),
            store.epoch().to_owned(),
            vec![("project:default".into(), 0)],
        )
    }

    /// A room nobody here receives skips ahead: nothing to read, nothing to deliver.
    #[tokio::test]
    async fn a_room_without_receivers_skips_to_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_events(&dir, 4).await;
        let dispatcher = dispatcher(&store);
        dispatcher.catch_up("project:default", 4).await;
        assert_eq!(dispatcher.position("project:default"), Some(4));
    }

    /// A room with a subscriber gets the events it missed from the log, in order, once, and a
    /// late copy from the broker changes nothing.
    #[tokio::test]
    async fn a_room_with_receivers_reads_what_it_missed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_events(&dir, 3).await;
        let dispatcher = dispatcher(&store);
        let (session, mut outbox) = dispatcher.hub().connect(
            UserId::parse("admin", "u").unwrap(),
            true,
            HashSet::new(),
            crate::hub::session::Transport::WebSocket,
        );
        dispatcher
            .subscribe(&session, "project:default")
            .await
            .unwrap();
        for i in 0..2 {
            store
                .create_task(NewTask {
                    title: TaskTitle::parse(&format!("more{i}")).unwrap(),
                    description: None,
                    status: taskflow_protocol::TaskStatus::Todo,
                    priority: Priority::default(),
                    project_id: ProjectId::default_project(),
                    assignee: None,
                })
                .await
                .unwrap();
        }
        // Offsets 1-3 existed before the subscription, 4-5 were "lost by the broker".
        dispatcher.catch_up("project:default", 5).await;
        let mut offsets = Vec::new();
        while let Ok(frame) = outbox.try_recv() {
            let frame: serde_json::Value = serde_json::from_slice(&frame).unwrap();
            offsets.push(frame["offset"].as_i64().unwrap());
        }
        assert_eq!(offsets, [1, 2, 3, 4, 5]);
        let late = store.events_after("project:default", 3, 2).await.unwrap();
        dispatcher.publish(late);
        assert!(outbox.try_recv().is_err(), "no duplicate");
    }
}
