//! When the dispatcher keeps a room's state, and where a room that comes back starts.
//!
//! The state of a room (its last delivered offset, the events held ahead of a gap) is needed
//! while someone here receives the room, and for a moment after an event: the writers publish
//! after their commits, so offset n can still be on its way when n+1 arrives. Otherwise it is
//! dropped, so that the map holds the rooms in use, not every room ever seen (every user's
//! `user:` room, every project). A sweep every [`SWEEP_EVERY`] drops an entry that nobody holds,
//! that has no receivers here, nothing pending and no gap fill running, and that was not used
//! since the previous sweep (so it was unused for at least one whole interval).
//!
//! A room without state starts again at a point every caller can rely on:
//! - **A subscription** (the first receiver) reads the room's last offset from the store before
//!   it creates the state, and holds the state until the session is in the room. Every event
//!   after that offset reaches the session: one committed before the read is at or below it;
//!   one that arrived before the state existed went to nobody and, if the state started below
//!   it, is read again from the log as a gap. A late event at or below the start goes to
//!   nobody, as it would have before.
//! - **An event that arrives** for a room nobody here receives starts the state just before
//!   it (there is no order to keep for nobody), so it is handled at once, and it is dropped
//!   again by a later sweep.
//! - **The `tasks` room** receives every project room, so a project room with no state while
//!   `tasks` has members would not know where its stream stands. Hence the rule: whenever
//!   `tasks` has a member, every project room that existed when it got its first member has
//!   state. The subscription that finds `tasks` without members reads every room's last offset
//!   from the store and creates the missing states before it joins ([`Dispatcher::pin_for_tasks`]);
//!   while any `tasks` subscription is being set up, and while `tasks` has members, no project
//!   room is dropped. A project room that has receivers but no state is then one created since:
//!   it starts at 0 (see `order_for_event`).
//! - Membership changes still apply when they arrive late (`Dispatcher::apply_late`): an event
//!   at or below a state's start was never handled by that state, but a session's view of its
//!   projects depends on it. A newer change of the same user applied already wins.
//!
//! - **A tail** ([`super::tail`]): on a single node, a room nobody receives still hears every
//!   event, so its state (and the tail of recent events it keeps for resumes) is kept for
//!   `ReplayLimits::retain` after it was last used: the clients a blip disconnected find it when
//!   they come back. A cluster node drops it as before.
//!
//! Left as is: if an event was handled by a state that was dropped since, and then arrives a
//! second time (a gap fill and its live copy, a broker's duplicate) more than a sweep interval
//! later, its membership change is applied again. Nothing else depends on a dropped state.

use super::{Dispatcher, Inner, RoomOrder};
use crate::hub::SubscribeError;
use metrics::{gauge, Gauge};
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

/// Room states the dispatcher keeps, and the hub's rooms and users, set by each sweep.
static DISPATCHER_ROOMS: LazyLock<Gauge> = LazyLock::new(|| gauge!("hub_dispatcher_rooms"));
static HUB_ROOMS: LazyLock<Gauge> = LazyLock::new(|| gauge!("hub_rooms"));
static HUB_USERS: LazyLock<Gauge> = LazyLock::new(|| gauge!("hub_users"));
static TAIL_BYTES: LazyLock<Gauge> = LazyLock::new(|| gauge!("hub_replay_tail_bytes"));
static CACHED_USERS: LazyLock<Gauge> = LazyLock::new(|| gauge!("hub_membership_cache_users"));

/// How often unused room states are looked for. An entry is dropped after one to two of these
/// unused: longer than an event takes from its commit to the dispatcher, short enough that a
/// server whose clients all left holds no room state a few seconds later.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What the dispatcher holds now (for tests, `/metrics` and the bench's memory checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DispatcherCounts {
    /// Rooms whose state is kept.
    pub rooms: usize,
    /// Events held ahead of a gap, over all rooms.
    pub pending: usize,
}

/// Marks a `tasks` subscription in setup and holds the project rooms' states until it joined.
pub(super) struct TasksPin {
    inner: Arc<Inner>,
    /// The states created or found for this subscription.
    _rooms: Vec<Arc<Mutex<RoomOrder>>>,
}

impl Drop for TasksPin {
    fn drop(&mut self) {
        self.inner.tasks_joining.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Dispatcher {
    /// The room's state for a subscription: if it has none, it starts at the store's last
    /// offset of the room, read first.
    pub(super) async fn seeded_order(
        &self,
        room: &str,
    ) -> Result<Arc<Mutex<RoomOrder>>, SubscribeError> {
        if let Some(order) = self.inner.rooms.get(room) {
            return Ok(order.clone());
        }
        crate::hub::metrics::db_query("last_offset");
        let last = self.inner.source.last_offset(room).await.map_err(|err| {
            tracing::warn!(room, error = %err, "could not read the room's last offset");
            SubscribeError::LogUnavailable
        })?;
        Ok(self.order_or(room, || last))
    }

    /// Before a session joins `tasks`: if `tasks` has no member yet, gives every project room of
    /// the store a state (starting at its last offset) if it has none. Until the returned pin is
    /// dropped, after the join, no project room is dropped.
    pub(super) async fn pin_for_tasks(&self) -> Result<TasksPin, SubscribeError> {
        self.inner.tasks_joining.fetch_add(1, Ordering::SeqCst);
        let mut pin = TasksPin {
            inner: self.inner.clone(),
            _rooms: Vec::new(),
        };
        if self.inner.hub.has_members(crate::domain::Room::TASKS) {
            // Its first member pinned them, and none was dropped since.
            return Ok(pin);
        }
        crate::hub::metrics::db_query("last_offset");
        let rooms = self.inner.source.last_offsets().await.map_err(|err| {
            tracing::warn!(error = %err, "could not read the rooms' last offsets");
            SubscribeError::LogUnavailable
        })?;
        pin._rooms = rooms
            .into_iter()
            .filter(|(room, _)| room.starts_with("project:"))
            .map(|(room, last)| self.order_or(&room, || last))
            .collect();
        Ok(pin)
    }

    /// Drops the state of every room nothing uses (see the module's rules). Not per message:
    /// every [`SWEEP_EVERY`], one pass over the map, a shard at a time.
    pub(super) fn sweep(&self) {
        let hub = &self.inner.hub;
        let joining = &self.inner.tasks_joining;
        // A single node hears every event of every room, so an unused room's stream (and its
        // tail) stays current and is worth keeping for the clients that come back.
        let retain = match hub.feed() {
            None => self.inner.replay.retain,
            Some(_) => Duration::ZERO,
        };
        self.inner.rooms.retain(|room, order| {
            // Held elsewhere: an event being handled, a subscription being set up, a gap fill.
            if Arc::strong_count(order) > 1 {
                return true;
            }
            if room.starts_with("project:") && joining.load(Ordering::SeqCst) > 0 {
                return true;
            }
            if hub.has_receivers(room) {
                return true;
            }
            // Busy right now: kept (the next sweep looks again).
            let Ok(mut o) = order.try_lock() else {
                return true;
            };
            if std::mem::take(&mut o.touched) {
                o.idle_since = std::time::Instant::now();
                return true;
            }
            if !o.tail.is_empty() && o.idle_since.elapsed() < retain {
                return true;
            }
            !o.pending.is_empty() || o.filling
        });
    }

    /// Starts the periodic sweep, if there is a runtime to run it (the criterion benchmarks
    /// build a dispatcher outside one). It ends when the dispatcher is dropped.
    pub(super) fn start_sweeping(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner: Weak<Inner> = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(inner) = inner.upgrade() else { return };
                let dispatcher = Dispatcher { inner };
                dispatcher.sweep();
                let hub = dispatcher.inner.hub.counts();
                DISPATCHER_ROOMS.set(dispatcher.inner.rooms.len() as f64);
                HUB_ROOMS.set(hub.rooms as f64);
                HUB_USERS.set(hub.users as f64);
                TAIL_BYTES.set(dispatcher.inner.budget.used() as f64);
                CACHED_USERS.set(dispatcher.inner.hub.memberships().len() as f64);
            }
        });
    }

    /// What the dispatcher holds now.
    pub fn counts(&self) -> DispatcherCounts {
        let mut counts = DispatcherCounts {
            rooms: self.inner.rooms.len(),
            pending: 0,
        };
        for entry in self.inner.rooms.iter() {
            counts.pending += entry.value().lock().expect("never poisoned").pending.len();
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use crate::broker::StoreSource;
    use crate::domain::{NewTask, Priority, ProjectId, TaskTitle, UserId};
    use crate::hub::dispatch::Dispatcher;
    use crate::hub::session::{Outbox, QueueLimits, Session};
    use crate::hub::{Hub, HubLimits};
    use crate::store::Store;
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::Duration;

    const ROOM: &str = "project:default";

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .unwrap();
        (dir, store)
    }

    async fn write(store: &Store, n: usize) {
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
    }

    /// A dispatcher that knows no room yet (as if every state had been swept away), and keeps
    /// no tail of a room nobody receives.
    fn dispatcher(store: &Store) -> Dispatcher {
        retaining(store, Duration::ZERO)
    }

    /// [`dispatcher`], keeping the tail of an unused room for `retain`.
    fn retaining(store: &Store, retain: Duration) -> Dispatcher {
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
        Dispatcher::with_replay(
            hub,
            Arc::new(StoreSource(store.clone())),
            Duration::from_millis(20),
            store.epoch().to_owned(),
            Vec::new(),
            crate::hub::dispatch::ReplayLimits {
                retain,
                ..Default::default()
            },
        )
    }

    fn connect(dispatcher: &Dispatcher) -> (Arc<Session>, Outbox) {
        dispatcher.hub().connect(
            UserId::parse("admin", "u").unwrap(),
            true,
            HashSet::new(),
            crate::hub::session::Transport::WebSocket,
        )
    }

    /// The offsets of the events queued to a session, waiting up to 5 s for `n` of them.
    async fn offsets(outbox: &mut Outbox, n: usize) -> Vec<i64> {
        let mut offsets = Vec::new();
        while offsets.len() < n {
            let frame = tokio::time::timeout(Duration::from_secs(5), outbox.recv())
                .await
                .expect("the events arrive")
                .unwrap();
            let frame: serde_json::Value = serde_json::from_slice(&frame).unwrap();
            offsets.push(frame["offset"].as_i64().unwrap());
        }
        offsets
    }

    /// A room's state goes when its last subscriber has left and a sweep interval passed
    /// unused; the next subscriber starts at the log's last offset, and a late copy of an event
    /// from before changes nothing.
    #[tokio::test]
    async fn a_room_nobody_uses_is_dropped_and_comes_back_where_the_log_stands() {
        let (_dir, store) = store().await;
        write(&store, 3).await;
        let dispatcher = dispatcher(&store);
        let (first, mut first_out) = connect(&dispatcher);
        let (_, position) = dispatcher.subscribe(&first, ROOM).await.unwrap();
        assert_eq!(position, Some(3), "read from the log");
        write(&store, 1).await;
        let log = store.events_after(ROOM, 0, 10).await.unwrap();
        dispatcher.publish(vec![log[3].clone()]);
        assert_eq!(offsets(&mut first_out, 1).await, [4]);

        dispatcher.hub().disconnect(&first);
        dispatcher.sweep(); // used since the last sweep: kept once more
        assert_eq!(dispatcher.counts().rooms, 1);
        dispatcher.sweep();
        assert_eq!(dispatcher.counts().rooms, 0);
        assert_eq!(dispatcher.position(ROOM), None);

        // Written and published while nobody here follows the room.
        write(&store, 2).await;
        let log = store.events_after(ROOM, 0, 10).await.unwrap();
        dispatcher.publish(vec![log[5].clone()]);
        dispatcher.sweep();
        dispatcher.sweep();
        assert_eq!(dispatcher.counts().rooms, 0);

        let (second, mut second_out) = connect(&dispatcher);
        let (_, position) = dispatcher.subscribe(&second, ROOM).await.unwrap();
        assert_eq!(position, Some(6));
        // Offset 5 arrives late (its writer was slow to publish): from before the position.
        dispatcher.publish(vec![log[4].clone()]);
        write(&store, 1).await;
        let log = store.events_after(ROOM, 0, 10).await.unwrap();
        dispatcher.publish(vec![log[6].clone()]);
        assert_eq!(offsets(&mut second_out, 1).await, [7]);
        assert!(second_out.try_recv().is_err(), "nothing else");
    }

    /// `tasks` receives every project room: the first `tasks` subscriber gives each one a
    /// state at the log's last offset, and while `tasks` has members none is dropped. So a
    /// project room's events out of order reach it in order, and without the room's old
    /// events (a room with receivers but no state would start at 0 and replay its log).
    #[tokio::test]
    async fn tasks_subscribers_keep_every_project_room_where_it_stands() {
        let (_dir, store) = store().await;
        write(&store, 3).await;
        let dispatcher = dispatcher(&store);
        let (session, mut outbox) = connect(&dispatcher);
        dispatcher
            .subscribe(&session, crate::domain::Room::TASKS)
            .await
            .unwrap();
        assert_eq!(dispatcher.position(ROOM), Some(3));
        dispatcher.sweep();
        dispatcher.sweep();
        assert_eq!(
            dispatcher.position(ROOM),
            Some(3),
            "kept while tasks has members"
        );

        write(&store, 2).await;
        let log = store.events_after(ROOM, 0, 10).await.unwrap();
        dispatcher.publish(vec![log[4].clone()]);
        dispatcher.publish(vec![log[3].clone()]);
        assert_eq!(offsets(&mut outbox, 2).await, [4, 5]);
        assert!(outbox.try_recv().is_err(), "nothing from before");

        dispatcher.hub().disconnect(&session);
        // The gap's fill task still holds the room until it wakes and finds nothing pending.
        let start = std::time::Instant::now();
        while dispatcher.counts().rooms > 0 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "dropped once tasks is empty"
            );
            dispatcher.sweep();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
