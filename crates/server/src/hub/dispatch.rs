//! Ordered fan-out. Events of a room can reach this node out of order (the writers of offsets n
//! and n+1 each publish after their own commit, and across nodes the broker adds its own
//! reordering), so each room keeps the last offset delivered and holds anything that comes
//! early. A gap that the publishers do not fill within `hold` is filled from the log itself.
//! Each event is delivered once, in offset order, to every session subscribed at that point.
//!
//! A room's state lives here only while something uses it ([`rooms`] says when it is dropped
//! and where a room that comes back starts).

use super::{frame_bytes, metrics, EventSource, Hub, SubscribeError};
use crate::domain::ProjectId;
use crate::hub::session::Session;
use bytes::Bytes;
use dashmap::DashMap;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use taskflow_protocol::{EventFrame, EventKind, LoggedEvent, ServerFrame};
use taskflow_protocol::{Since, Subscribed};

mod rooms;
mod sync;

pub use rooms::DispatcherCounts;

/// An event ready to fan out: serialized once (on the node that committed it, also for the
/// other nodes of a cluster: the broker forwards these bytes).
pub struct Prepared {
    /// Its offset in the room.
    pub(crate) offset: i64,
    /// The project whose `tasks` subscribers also get it (task events only).
    pub(crate) tasks_of: Option<ProjectId>,
    /// A membership change it carries: project, user, added.
    pub(crate) membership: Option<(ProjectId, String, bool)>,
    /// The `event` frame.
    pub(crate) bytes: Bytes,
    /// Commit time, for the commit-to-enqueue histogram.
    pub(crate) at_ms: i64,
}

/// Where a room's stream stands on this node.
struct RoomOrder {
    /// The last offset delivered (0: none yet).
    delivered: i64,
    /// Events that arrived ahead of a gap, by offset.
    pending: BTreeMap<i64, Prepared>,
    /// Whether a task is filling the gap from the log.
    filling: bool,
    /// Where this state started: offsets up to here came before it existed (read from the
    /// store, or just before the first event that arrived while nobody here received the room).
    /// An event at or below it that arrives late was never handled here: it goes to nobody,
    /// but the membership change it carries still applies ([`Dispatcher::apply_late`]).
    seeded: i64,
    /// The offset of the latest membership change applied here, per user, so that a late one
    /// never undoes a newer one.
    membership: HashMap<String, i64>,
    /// Used since the last sweep; an entry is dropped only after a whole sweep interval unused
    /// ([`rooms`]), so an event still on its way from a commit finds the state it follows.
    touched: bool,
}

impl RoomOrder {
    /// A room whose stream stands at `offset` (the last offset of it this node has no need to
    /// deliver).
    fn starting_at(offset: i64) -> Self {
        Self {
            delivered: offset,
            pending: BTreeMap::new(),
            filling: false,
            seeded: offset,
            membership: HashMap::new(),
            touched: true,
        }
    }
}

/// Orders and delivers events; a cheap `Clone` handle.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    /// Local delivery.
    hub: Hub,
    /// Per-room order. The map is sharded; each room's state has its own mutex, held only while
    /// deciding and queueing (never across an await), so rooms never wait on each other. An
    /// entry exists while the room has receivers here, events pending, or was used within the
    /// last sweep interval ([`rooms`]).
    rooms: DashMap<String, Arc<Mutex<RoomOrder>>>,
    /// `tasks` subscriptions being set up: while there are any, no project room is dropped
    /// (see [`rooms`], "The `tasks` room").
    tasks_joining: std::sync::atomic::AtomicUsize,
    /// The log, to fill gaps.
    source: Arc<dyn EventSource>,
    /// How long an early event waits for the gap before it is filled from the log.
    hold: Duration,
    /// The store's epoch: positions from another epoch cannot be resumed.
    epoch: String,
}

impl Dispatcher {
    /// A dispatcher delivering through `hub`, filling gaps from `source`. `rooms` gives the last
    /// offset of every room that exists now; rooms created later start at 0. Inside a tokio
    /// runtime it also starts the sweep that drops the state of rooms nothing uses ([`rooms`]).
    pub fn new(
        hub: Hub,
        source: Arc<dyn EventSource>,
        hold: Duration,
        epoch: String,
        rooms: Vec<(String, i64)>,
    ) -> Self {
        let map = DashMap::new();
        for (room, last) in rooms {
            map.insert(room, Arc::new(Mutex::new(RoomOrder::starting_at(last))));
        }
        let dispatcher = Self {
            inner: Arc::new(Inner {
                hub,
                rooms: map,
                tasks_joining: Default::default(),
                source,
                hold,
                epoch,
            }),
        };
        dispatcher.start_sweeping();
        dispatcher
    }

    /// The hub it delivers through.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// The room's state, created starting at `start()` if the room has none.
    fn order_or(&self, room: &str, start: impl FnOnce() -> i64) -> Arc<Mutex<RoomOrder>> {
        if let Some(order) = self.inner.rooms.get(room) {
            return order.clone();
        }
        self.inner
            .rooms
            .entry(room.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(RoomOrder::starting_at(start()))))
            .clone()
    }

    /// The room's state for an event at `offset` arriving. A room with no state here and
    /// nobody receiving it starts just before the event: there is nothing to order for nobody.
    /// One that has receivers but no state is a room created since they subscribed (every room
    /// a receiver could see had its state from the subscription on, see [`rooms`]): it starts
    /// at 0, and anything before the event is read from the log as a gap.
    fn order_for_event(&self, room: &str, offset: i64) -> Arc<Mutex<RoomOrder>> {
        self.order_or(room, || {
            if self.inner.hub.has_receivers(room) {
                0
            } else {
                offset - 1
            }
        })
    }

    /// Takes committed events (from the local store or the broker), in any order.
    pub fn publish(&self, events: Vec<LoggedEvent>) {
        for event in events {
            let room = event.room.clone();
            self.accept(&room, prepare(event));
        }
    }

    /// Takes one committed event already prepared (by the cluster broker), in any order.
    pub fn publish_prepared(&self, room: &str, event: Prepared) {
        self.accept(room, event);
    }

    fn accept(&self, room: &str, event: Prepared) {
        let shared = self.order_for_event(room, event.offset);
        let mut order = shared.lock().expect("never poisoned: no panics under lock");
        order.touched = true;
        if event.offset <= order.delivered || order.pending.contains_key(&event.offset) {
            // Already delivered or already waiting: a duplicate. Or from before this state
            // existed: nobody here is owed it, but its membership change may be news.
            if event.offset <= order.seeded {
                self.apply_late(&mut order, &event);
            }
            return;
        }
        if event.offset == order.delivered + 1 {
            self.deliver(room, &mut order, event);
            self.drain(room, &mut order);
        } else {
            order.pending.insert(event.offset, event);
            if !order.filling {
                order.filling = true;
                tokio::spawn(self.clone().fill(room.to_owned(), shared.clone()));
            }
        }
    }

    /// Applies the membership change of an event from before the room's state existed, unless
    /// a newer change of the same user was applied here already.
    fn apply_late(&self, order: &mut RoomOrder, event: &Prepared) {
        let Some((project, user, added)) = &event.membership else {
            return;
        };
        if order
            .membership
            .get(user)
            .is_some_and(|&applied| applied >= event.offset)
        {
            return;
        }
        order.membership.insert(user.clone(), event.offset);
        self.inner.hub.membership_changed(project, user, *added);
    }

    /// Delivers the pending events that now follow on.
    fn drain(&self, room: &str, order: &mut RoomOrder) {
        while let Some(entry) = order.pending.first_entry() {
            if *entry.key() != order.delivered + 1 {
                break;
            }
            let event = entry.remove();
            self.deliver(room, order, event);
        }
    }

    fn deliver(&self, room: &str, order: &mut RoomOrder, event: Prepared) {
        let hub = &self.inner.hub;
        if let Some((project, user, true)) = &event.membership {
            hub.membership_changed(project, user, true);
        }
        let reached = hub.deliver(room, event.tasks_of.as_ref(), &event.bytes);
        if let Some((project, user, false)) = &event.membership {
            hub.membership_changed(project, user, false);
        }
        if let Some((_, user, _)) = &event.membership {
            order.membership.insert(user.clone(), event.offset);
        }
        order.delivered = event.offset;
        let lag = (chrono::Utc::now().timestamp_millis() - event.at_ms).max(0) as f64 / 1000.0;
        metrics::dispatched(reached, lag);
    }

    /// Waits `hold` for the publishers to fill a gap, then reads the missing events from the log;
    /// repeats until nothing is pending.
    async fn fill(self, room: String, order: Arc<Mutex<RoomOrder>>) {
        loop {
            tokio::time::sleep(self.inner.hold).await;
            let (after, until) = {
                let mut o = order.lock().expect("never poisoned");
                o.touched = true;
                self.drain(&room, &mut o);
                match o.pending.keys().next() {
                    None => {
                        o.filling = false;
                        return;
                    }
                    Some(&first) => (o.delivered, first),
                }
            };
            match self
                .inner
                .source
                .events_after(&room, after, until - after - 1)
                .await
            {
                Ok(missing) => {
                    metrics::gap_filled(missing.len());
                    let mut o = order.lock().expect("never poisoned");
                    if o.delivered == after && missing.first().is_none_or(|e| e.offset > after + 1)
                    {
                        // The log no longer has them (compacted): skip rather than stall the room.
                        let skip_to = missing.first().map_or(until, |e| e.offset) - 1;
                        tracing::warn!(
                            room,
                            from = after + 1,
                            to = skip_to,
                            "events missing from the log; skipped"
                        );
                        o.delivered = skip_to;
                    }
                    for event in missing {
                        if event.offset == o.delivered + 1 {
                            self.deliver(&room, &mut o, prepare(event));
                        }
                    }
                    self.drain(&room, &mut o);
                }
                Err(err) => {
                    tracing::warn!(room, error = %err, "could not read the log to fill a gap; retrying")
                }
            }
        }
    }

    /// Subscribes a session to a room and returns the offset its stream starts after: every
    /// event with a greater offset reaches the session, none before. `None` for `tasks`, which
    /// spans many rooms.
    pub async fn subscribe(
        &self,
        session: &Arc<Session>,
        room: &str,
    ) -> Result<(bool, Option<i64>), SubscribeError> {
        let _watching = self.sync_for_subscription(room, &[], false).await;
        if room == crate::domain::Room::TASKS {
            // Held until the session is in the room: the project rooms keep their state.
            let _pinned = self.pin_for_tasks().await?;
            return self
                .inner
                .hub
                .join(session, room)
                .map(|added| (added, None));
        }
        let order = self.seeded_order(room).await?;
        let order = order.lock().expect("never poisoned");
        let added = self.inner.hub.join(session, room)?;
        Ok((added, Some(order.delivered)))
    }

    /// Subscribes a session to a room, resuming from `since` when given: the answer says where
    /// the live stream starts and whether the resume recovered everything; the [`Replay`], to be
    /// run once the answer is on its way, sends the missed events. Live events that arrive
    /// meanwhile are held back and follow the replay, so the client sees no gap and no duplicate.
    ///
    /// For `tasks`, `projects` names the project rooms the session may see (the caller knows the
    /// projects; the hub does not).
    pub async fn subscribe_from(
        &self,
        session: &Arc<Session>,
        room: &str,
        since: Option<&Since>,
        projects: &[String],
        announce: Option<&(dyn Fn(Subscribed) -> Bytes + Send + Sync)>,
    ) -> Result<(Subscribed, Option<Replay>), SubscribeError> {
        if since.is_some() && session.rooms().iter().any(|r| r == room) {
            return Err(SubscribeError::AlreadySubscribed);
        }
        let epoch_ok = since.is_some_and(|s| s.epoch == self.inner.epoch);
        let rooms: Vec<String> = if room == crate::domain::Room::TASKS {
            let mut rooms = projects.to_vec();
            rooms.sort();
            rooms.dedup();
            rooms
        } else {
            vec![room.to_owned()]
        };
        let tasks = room == crate::domain::Room::TASKS;
        // In a cluster, this node may be behind the store in these rooms (it hears a room only
        // while it has subscribers there): catch up first, so the position it answers is current
        // and a position the client got from another node can be resumed here.
        let _watching = self
            .sync_for_subscription(room, &rooms, since.is_some())
            .await;
        // Held until the session is in the room: the project rooms keep their state.
        let _pinned = match tasks {
            true => Some(self.pin_for_tasks().await?),
            false => None,
        };
        // Where the client stopped in each room (for tasks, a room it never saw starts at 0).
        let from: Vec<Option<i64>> = rooms
            .iter()
            .map(|r| match since {
                Some(s) if epoch_ok && tasks => Some(s.offsets.get(r).copied().unwrap_or(0)),
                Some(s) if epoch_ok => s.offset,
                _ => None,
            })
            .collect();
        // Retention, read before the rooms are locked (no await under a lock).
        let mut oldest = Vec::with_capacity(rooms.len());
        if since.is_some() && epoch_ok {
            for r in &rooms {
                oldest.push(self.inner.source.events_oldest(r).await);
            }
        }
        let mut orders: Vec<Arc<Mutex<RoomOrder>>> = Vec::with_capacity(rooms.len());
        for r in &rooms {
            orders.push(self.seeded_order(r).await?);
        }
        let guards: Vec<_> = orders
            .iter()
            .map(|o| o.lock().expect("never poisoned"))
            .collect();
        let delivered: Vec<i64> = guards.iter().map(|g| g.delivered).collect();
        let recovered = match since {
            None => true,
            Some(_) if !epoch_ok => false,
            Some(_) => rooms.iter().enumerate().all(|(i, _)| match from[i] {
                None => false,
                Some(f) if f > delivered[i] || f < 0 => false,
                Some(f) if f == delivered[i] => true,
                Some(f) => matches!(oldest[i], Ok(Some(o)) if o <= f + 1),
            }),
        };
        let ranges: Vec<(String, i64, i64)> = if since.is_some() && recovered {
            rooms
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    from[i]
                        .filter(|&f| f < delivered[i])
                        .map(|f| (r.clone(), f, delivered[i]))
                })
                .collect()
        } else {
            Vec::new()
        };
        let diversion = (!ranges.is_empty()).then(|| session.begin_divert(room));
        if let Some(frame) = announce {
            // Queued inside the seam: before any live frame of the room.
            let answer = answer_of(
                room,
                &self.inner.epoch,
                tasks,
                &rooms,
                &delivered,
                recovered,
            );
            let _ = session.offer(&frame(answer));
        }
        if let Err(err) = self.inner.hub.join(session, room) {
            session.cancel_divert(room);
            return Err(err);
        }
        drop(guards);
        let answer = answer_of(
            room,
            &self.inner.epoch,
            tasks,
            &rooms,
            &delivered,
            recovered,
        );
        let replay = diversion.map(|diversion| Replay {
            dispatcher: self.clone(),
            session: session.clone(),
            via: room.to_owned(),
            diversion,
            ranges,
            task_events_only: tasks,
        });
        Ok((answer, replay))
    }

    /// The last offset delivered in a room on this node, if the node keeps the room's state
    /// now (it does while the room has receivers here).
    pub fn position(&self, room: &str) -> Option<i64> {
        let order = self.inner.rooms.get(room)?.clone();
        let delivered = order.lock().expect("never poisoned").delivered;
        Some(delivered)
    }
}

/// The answer to a subscription.
fn answer_of(
    room: &str,
    epoch: &str,
    tasks: bool,
    rooms: &[String],
    delivered: &[i64],
    recovered: bool,
) -> Subscribed {
    Subscribed {
        room: room.to_owned(),
        epoch: epoch.to_owned(),
        offset: (!tasks).then(|| delivered[0]),
        offsets: if tasks {
            rooms
                .iter()
                .cloned()
                .zip(delivered.iter().copied())
                .collect()
        } else {
            Default::default()
        },
        recovered,
    }
}

/// The missed events of one subscription, sent before its live stream.
pub struct Replay {
    dispatcher: Dispatcher,
    session: Arc<Session>,
    /// The subscription whose live frames are held back meanwhile.
    via: String,
    /// The diversion holding them.
    diversion: u64,
    /// `(room, after, until)`: replay offsets `after + 1 ..= until` of `room`.
    ranges: Vec<(String, i64, i64)>,
    /// For `tasks`: only task events.
    task_events_only: bool,
}

impl Replay {
    /// Reads the missed events from the log page by page and queues them (pacing itself on
    /// the queue), then releases the held-back live frames behind them. If the log no longer
    /// holds an event it must replay (compacted meanwhile), the session is closed: a silent
    /// partial replay is never an option, and the client's next resume says `recovered: false`.
    pub async fn run(self) {
        const PAGE: i64 = 500;
        let source = &self.dispatcher.inner.source;
        for (room, from, until) in &self.ranges {
            let mut after = *from;
            while after < *until {
                let events = match source
                    .events_after(room, after, PAGE.min(until - after))
                    .await
                {
                    Ok(events) => events,
                    Err(err) => {
                        tracing::error!(room, error = %err, "replay failed");
                        self.session.close(
                            taskflow_protocol::close::INTERNAL_ERROR,
                            "could not read the log; reconnect",
                        );
                        return;
                    }
                };
                if events.first().is_none_or(|e| e.offset != after + 1) {
                    self.session.close(
                        taskflow_protocol::close::INTERNAL_ERROR,
                        "history compacted during the replay; reconnect",
                    );
                    return;
                }
                for event in events {
                    if event.offset > *until {
                        break;
                    }
                    after = event.offset;
                    if self.task_events_only && !event.event.is_task_event() {
                        continue;
                    }
                    if self
                        .session
                        .push_replayed(&self.via, self.diversion, prepare(event).bytes)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        self.session.end_divert(&self.via, self.diversion).await;
    }
}

/// Serializes a committed event into its `event` frame, once.
pub(crate) fn prepare(event: LoggedEvent) -> Prepared {
    let project = event
        .room
        .strip_prefix("project:")
        .and_then(|p| ProjectId::parse(p).ok());
    let membership = match event.event {
        EventKind::MemberAdded | EventKind::MemberRemoved => project
            .clone()
            .zip(event.data["user"].as_str().map(str::to_owned))
            .map(|(p, u)| (p, u, event.event == EventKind::MemberAdded)),
        _ => None,
    };
    let tasks_of = project.filter(|_| event.event.is_task_event());
    let offset = event.offset;
    let at_ms = event.at.timestamp_millis();
    let bytes = frame_bytes(&ServerFrame::Event(EventFrame {
        room: event.room,
        offset: event.offset,
        event: event.event,
        data: event.data,
        at: event.at,
    }));
    Prepared {
        offset,
        tasks_of,
        membership,
        bytes,
        at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::StoreSource;
    use crate::domain::{NewTask, Priority, TaskTitle, UserId};
    use crate::hub::session::QueueLimits;
    use crate::hub::HubLimits;
    use crate::store::Store;
    use std::collections::HashSet;

    fn hub() -> Hub {
        Hub::new(HubLimits {
            queue: QueueLimits {
                messages: 100,
                bytes: 1 << 20,
            },
            max_connections: 10,
            max_connections_per_user: 10,
            max_subscriptions: 10,
            connection_threads: 0,
            memberships: Default::default(),
        })
    }

    fn task(title: &str) -> NewTask {
        NewTask {
            title: TaskTitle::parse(title).unwrap(),
            description: None,
            status: taskflow_protocol::TaskStatus::Todo,
            priority: Priority::default(),
            project_id: ProjectId::default_project(),
            assignee: None,
        }
    }

    /// Events published out of order, with holes (as a lossy broker would deliver them), reach a
    /// subscriber once each and in order: early ones wait, holes are read from the log.
    #[tokio::test]
    async fn out_of_order_and_lost_events_are_delivered_in_order_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .unwrap();
        for i in 1..=5 {
            store.create_task(task(&format!("t{i}"))).await.unwrap();
        }
        let log = store.events_after("project:default", 0, 10).await.unwrap();
        let hub = hub();
        let dispatcher = Dispatcher::new(
            hub.clone(),
            Arc::new(StoreSource(store.clone())),
            Duration::from_millis(20),
            store.epoch().to_owned(),
            vec![("project:default".into(), 0)],
        );
        let (session, mut outbox) =
            hub.connect(UserId::parse("admin", "u").unwrap(), true, HashSet::new());
        let (_, position) = dispatcher
            .subscribe(&session, "project:default")
            .await
            .unwrap();
        assert_eq!(position, Some(0));
        // 2 and 4 never come from the "broker"; 3 and 5 come before 1; 1 comes twice.
        dispatcher.publish(vec![
            log[2].clone(),
            log[4].clone(),
            log[0].clone(),
            log[0].clone(),
        ]);
        let mut offsets = Vec::new();
        while offsets.len() < 5 {
            let frame = tokio::time::timeout(Duration::from_secs(10), outbox.recv())
                .await
                .unwrap()
                .unwrap();
            let frame: serde_json::Value = serde_json::from_slice(&frame).unwrap();
            offsets.push(frame["offset"].as_i64().unwrap());
        }
        assert_eq!(offsets, [1, 2, 3, 4, 5]);
        assert_eq!(dispatcher.position("project:default"), Some(5));
        // Late duplicates change nothing.
        dispatcher.publish(log.clone());
        assert!(outbox.try_recv().is_err());
    }
}
