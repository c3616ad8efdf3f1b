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
mod tail;

pub use rooms::DispatcherCounts;
pub use tail::ReplayLimits;
use tail::{Tail, TailBudget};

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
    /// The task a `task.deleted` event deleted: its collaborative document closes.
    pub(crate) deleted_task: Option<uuid::Uuid>,
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
    /// When the sweep last found it unused (for the retention of a tail, see [`tail`]).
    idle_since: std::time::Instant,
    /// The last events delivered, for resumes ([`tail`]).
    tail: Tail,
}

impl RoomOrder {
    /// A room whose stream stands at `offset` (the last offset of it this node has no need to
    /// deliver).
    fn starting_at(offset: i64, budget: &Arc<TailBudget>) -> Self {
        Self {
            delivered: offset,
            pending: BTreeMap::new(),
            filling: false,
            seeded: offset,
            membership: HashMap::new(),
            touched: true,
            idle_since: std::time::Instant::now(),
            tail: Tail::new(budget),
        }
    }

    /// Moves the position without delivering (nothing in between reached anyone here): the
    /// tail no longer ends at the position, so it is emptied.
    fn skip_to(&mut self, offset: i64) {
        self.delivered = offset;
        self.tail.clear();
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
    /// What the rooms' tails may hold, and how many replays read the log at once.
    replay: ReplayLimits,
    /// The bytes held by every tail.
    budget: Arc<TailBudget>,
    /// Permits to read the log for a replay ([`ReplayLimits::concurrency`]).
    replays: tokio::sync::Semaphore,
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
        Self::with_replay(hub, source, hold, epoch, rooms, ReplayLimits::default())
    }

    /// [`Dispatcher::new`] with these limits on the rooms' tails and on replays.
    pub fn with_replay(
        hub: Hub,
        source: Arc<dyn EventSource>,
        hold: Duration,
        epoch: String,
        rooms: Vec<(String, i64)>,
        replay: ReplayLimits,
    ) -> Self {
        let budget = TailBudget::new(replay);
        let map = DashMap::new();
        for (room, last) in rooms {
            map.insert(
                room,
                Arc::new(Mutex::new(RoomOrder::starting_at(last, &budget))),
            );
        }
        let dispatcher = Self {
            inner: Arc::new(Inner {
                hub,
                rooms: map,
                tasks_joining: Default::default(),
                source,
                hold,
                epoch,
                replays: tokio::sync::Semaphore::new(replay.concurrency.max(1)),
                replay,
                budget,
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
            .or_insert_with(|| {
                Arc::new(Mutex::new(RoomOrder::starting_at(
                    start(),
                    &self.inner.budget,
                )))
            })
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
        if let Some(task) = event.deleted_task {
            hub.task_deleted(task);
        }
        order.delivered = event.offset;
        order.tail.push(
            event.offset,
            &event.bytes,
            event.tasks_of.is_some(),
            event.at_ms,
        );
        // `at_ms` comes from another node: saturating, so a malformed one cannot overflow.
        let lag_ms = chrono::Utc::now()
            .timestamp_millis()
            .saturating_sub(event.at_ms)
            .max(0);
        metrics::dispatched(reached, lag_ms as f64 / 1000.0);
        hub.tally().dispatched(reached, lag_ms as u64);
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
                        o.skip_to(skip_to);
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
        let _watching = self.sync_for_subscription(room, &[], false, &[]).await;
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
        // Where the client stopped in each room (for tasks, a room it never saw starts at 0).
        let from: Vec<Option<i64>> = rooms
            .iter()
            .map(|r| match since {
                Some(s) if epoch_ok && tasks => Some(s.offsets.get(r).copied().unwrap_or(0)),
                Some(s) if epoch_ok => s.offset,
                _ => None,
            })
            .collect();
        let resume: Vec<(String, i64)> = rooms
            .iter()
            .zip(&from)
            .filter_map(|(r, f)| f.map(|f| (r.clone(), f)))
            .collect();
        // In a cluster, this node may be behind the store in these rooms (it hears a room only
        // while it has subscribers there): catch up first, so the position it answers is current
        // and a position the client got from another node can be resumed here.
        let _watching = self
            .sync_for_subscription(room, &rooms, since.is_some(), &resume)
            .await;
        // Held until the session is in the room: the project rooms keep their state.
        let _pinned = match tasks {
            true => Some(self.pin_for_tasks().await?),
            false => None,
        };
        let mut orders: Vec<Arc<Mutex<RoomOrder>>> = Vec::with_capacity(rooms.len());
        for r in &rooms {
            orders.push(self.seeded_order(r).await?);
        }
        // The log's retention, for a gap older than the room's tail only; read before the rooms
        // are locked (no await under a lock), so a room whose tail moved on meanwhile goes round
        // again (at most once per room: its retention is then known).
        let mut oldest: Vec<Option<Result<Option<i64>, String>>> = vec![None; rooms.len()];
        let guards = loop {
            let unknown: Vec<usize> = {
                let guards: Vec<_> = orders
                    .iter()
                    .map(|o| o.lock().expect("never poisoned"))
                    .collect();
                let unknown: Vec<usize> = (0..rooms.len())
                    .filter(|&i| {
                        oldest[i].is_none()
                            && from[i].is_some_and(|f| {
                                (0..guards[i].delivered).contains(&f)
                                    && !guards[i].tail.covers(f, guards[i].delivered)
                            })
                    })
                    .collect();
                if unknown.is_empty() {
                    break guards;
                }
                unknown
            };
            for i in unknown {
                oldest[i] = Some(self.read_oldest(&rooms[i]).await);
            }
        };
        let delivered: Vec<i64> = guards.iter().map(|g| g.delivered).collect();
        let recovered = match since {
            None => true,
            Some(_) if !epoch_ok => false,
            Some(_) => rooms.iter().enumerate().all(|(i, _)| match from[i] {
                None => false,
                Some(f) if f > delivered[i] || f < 0 => false,
                Some(f) if f == delivered[i] => true,
                Some(f) => {
                    guards[i].tail.covers(f, delivered[i])
                        || matches!(oldest[i], Some(Ok(Some(o))) if o <= f + 1)
                }
            }),
        };
        let ranges: Vec<Range> = if since.is_some() && recovered {
            rooms
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    from[i].filter(|&f| f < delivered[i]).map(|f| Range {
                        room: r.clone(),
                        order: orders[i].clone(),
                        after: f,
                        until: delivered[i],
                    })
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

    /// The oldest offset the log retains in `room`, read with a replay permit.
    async fn read_oldest(&self, room: &str) -> Result<Option<i64>, String> {
        let _permit = self.inner.replays.acquire().await;
        metrics::db_query("oldest");
        self.inner.source.events_oldest(room).await
    }

    /// Where a room's stream stands, without a query, when that is its true last offset: on a
    /// single node, whose dispatcher hears every commit, if it keeps the room's state now. A
    /// cluster node may lag the store in a room it does not follow, so it says `None`.
    pub fn current_position(&self, room: &str) -> Option<i64> {
        match self.inner.hub.feed() {
            None => self.position(room),
            Some(_) => None,
        }
    }

    /// The frames of `room` after offset `after`, up to where this node stands in it (at most
    /// `limit`), if the room's tail holds them all; `None` if the log must be read. For long
    /// polling, which answers each request from where its cursor stands.
    pub fn recent(&self, room: &str, after: i64, limit: usize) -> Option<Vec<Bytes>> {
        let order = self.inner.rooms.get(room)?.clone();
        let order = order.lock().expect("never poisoned");
        if after == order.delivered {
            return Some(Vec::new());
        }
        if after > order.delivered {
            return None;
        }
        order
            .tail
            .after(after, order.delivered, limit, false)
            .map(|(frames, _)| frames)
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
    /// What to replay, room by room.
    ranges: Vec<Range>,
    /// For `tasks`: only task events.
    task_events_only: bool,
}

/// Offsets `after + 1 ..= until` of `room`, to replay.
struct Range {
    room: String,
    /// The room's state, whose tail serves the range while it holds it.
    order: Arc<Mutex<RoomOrder>>,
    after: i64,
    until: i64,
}

impl Replay {
    /// Queues the missed events page by page (pacing itself on the queue), from the room's tail
    /// while it holds them and from the log otherwise (a log read waits for one of the
    /// [`ReplayLimits::concurrency`] permits), then releases the held-back live frames behind
    /// them. If the log no longer holds an event it must replay (compacted meanwhile), the
    /// session is closed: a silent partial replay is never an option, and the client's next
    /// resume says `recovered: false`.
    pub async fn run(self) {
        const PAGE: i64 = 500;
        for range in &self.ranges {
            let (room, until) = (&range.room, range.until);
            let mut after = range.after;
            while after < until {
                let from_tail = range.order.lock().expect("never poisoned").tail.after(
                    after,
                    until,
                    PAGE as usize,
                    self.task_events_only,
                );
                let (frames, covered) = match from_tail {
                    Some(page) => page,
                    None => match self.read_log(room, after, PAGE.min(until - after)).await {
                        Some(page) => page,
                        None => return,
                    },
                };
                after = covered;
                for frame in frames {
                    if self
                        .session
                        .push_replayed(&self.via, self.diversion, frame)
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

    /// One page of the range from the log, with the last offset it covers; `None` (the session
    /// closed) if the log cannot be read or no longer holds the next event.
    async fn read_log(&self, room: &str, after: i64, limit: i64) -> Option<(Vec<Bytes>, i64)> {
        let inner = &self.dispatcher.inner;
        let events = {
            let _permit = inner.replays.acquire().await;
            metrics::db_query("replay");
            inner.source.events_after(room, after, limit).await
        };
        let events = match events {
            Ok(events) => events,
            Err(err) => {
                tracing::error!(room, error = %err, "replay failed");
                self.session.close(
                    taskflow_protocol::close::INTERNAL_ERROR,
                    "could not read the log; reconnect",
                );
                return None;
            }
        };
        if events.first().is_none_or(|e| e.offset != after + 1) {
            self.session.close(
                taskflow_protocol::close::INTERNAL_ERROR,
                "history compacted during the replay; reconnect",
            );
            return None;
        }
        let mut covered = after;
        let mut frames = Vec::with_capacity(events.len());
        for event in events {
            if event.offset > after + limit {
                break;
            }
            covered = event.offset;
            if !self.task_events_only || event.event.is_task_event() {
                frames.push(prepare(event).bytes);
            }
        }
        Some((frames, covered))
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
    let deleted_task = (event.event == EventKind::TaskDeleted)
        .then(|| {
            event.data["id"]
                .as_str()
                .and_then(|id| uuid::Uuid::parse_str(id).ok())
        })
        .flatten();
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
        deleted_task,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::StoreSource;
    use crate::domain::{NewTask, Priority, TaskTitle, UserId};
    use crate::hub::session::QueueLimits;
    use crate::hub::{HubLimits, Outbox};
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
            compression: None,
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
        let (session, mut outbox) = hub.connect(
            UserId::parse("admin", "u").unwrap(),
            true,
            HashSet::new(),
            crate::hub::session::Transport::WebSocket,
        );
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

    /// The log, counting what is read from it, each read taking a while (a busy database).
    struct Counting {
        store: StoreSource,
        reads: std::sync::atomic::AtomicUsize,
        in_flight: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
        delay: Duration,
    }

    impl Counting {
        fn new(store: &Store, delay: Duration) -> Arc<Self> {
            Arc::new(Self {
                store: StoreSource(store.clone()),
                reads: Default::default(),
                in_flight: Default::default(),
                most: Default::default(),
                delay,
            })
        }

        fn reads(&self) -> usize {
            self.reads.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl EventSource for Counting {
        fn events_after<'a>(
            &'a self,
            room: &'a str,
            after: i64,
            limit: i64,
        ) -> futures::future::BoxFuture<'a, Result<Vec<LoggedEvent>, String>> {
            use std::sync::atomic::Ordering::SeqCst;
            Box::pin(async move {
                self.reads.fetch_add(1, SeqCst);
                let now = self.in_flight.fetch_add(1, SeqCst) + 1;
                self.most.fetch_max(now, SeqCst);
                tokio::time::sleep(self.delay).await;
                let events = self.store.events_after(room, after, limit).await;
                self.in_flight.fetch_sub(1, SeqCst);
                events
            })
        }
        fn events_oldest<'a>(
            &'a self,
            room: &'a str,
        ) -> futures::future::BoxFuture<'a, Result<Option<i64>, String>> {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.store.events_oldest(room)
        }
        fn last_offset<'a>(
            &'a self,
            room: &'a str,
        ) -> futures::future::BoxFuture<'a, Result<i64, String>> {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.store.last_offset(room)
        }
        fn last_offsets(
            &self,
        ) -> futures::future::BoxFuture<'_, Result<Vec<(String, i64)>, String>> {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.store.last_offsets()
        }
    }

    const ROOM: &str = "project:default";

    /// A store with `n` events in the default project, a dispatcher over it that has delivered
    /// them (with a subscriber, so the room stays in use), reading the log through `source`.
    async fn delivered(
        n: usize,
        limits: ReplayLimits,
        delay: Duration,
    ) -> (
        tempfile::TempDir,
        Dispatcher,
        Arc<Counting>,
        (Arc<Session>, Outbox),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .unwrap();
        let source = Counting::new(&store, delay);
        let hub = hub();
        let dispatcher = Dispatcher::with_replay(
            hub.clone(),
            source.clone(),
            Duration::from_millis(20),
            store.epoch().to_owned(),
            vec![(ROOM.into(), 0)],
            limits,
        );
        let (watcher, outbox) = hub.connect(
            UserId::parse("admin", "u").unwrap(),
            true,
            HashSet::new(),
            crate::hub::session::Transport::WebSocket,
        );
        dispatcher.subscribe(&watcher, ROOM).await.unwrap();
        for i in 1..=n {
            store.create_task(task(&format!("t{i}"))).await.unwrap();
        }
        dispatcher.publish(store.events_after(ROOM, 0, n as i64).await.unwrap());
        assert_eq!(dispatcher.position(ROOM), Some(n as i64));
        (dir, dispatcher, source, (watcher, outbox))
    }

    /// Resumes a new session from `after` and returns the offsets it is sent.
    async fn resume(dispatcher: &Dispatcher, after: i64, expect: usize) -> (bool, Vec<i64>) {
        let (session, mut outbox) = dispatcher.hub().connect(
            UserId::parse("admin", "u").unwrap(),
            true,
            HashSet::new(),
            crate::hub::session::Transport::WebSocket,
        );
        let since = Since {
            epoch: dispatcher.inner.epoch.clone(),
            offset: Some(after),
            offsets: Default::default(),
        };
        let (answer, replay) = dispatcher
            .subscribe_from(&session, ROOM, Some(&since), &[], None)
            .await
            .unwrap();
        if let Some(replay) = replay {
            tokio::spawn(replay.run());
        }
        let mut offsets = Vec::new();
        while offsets.len() < expect {
            let frame = tokio::time::timeout(Duration::from_secs(10), outbox.recv())
                .await
                .unwrap()
                .unwrap();
            let frame: serde_json::Value = serde_json::from_slice(&frame).unwrap();
            offsets.push(frame["offset"].as_i64().unwrap());
        }
        (answer.recovered, offsets)
    }

    /// A resume whose gap the room's tail holds reads nothing from the log; one from before the
    /// tail reads the log and is just as complete.
    #[tokio::test]
    async fn a_recent_gap_is_replayed_from_memory_and_an_older_one_from_the_log() {
        let limits = ReplayLimits {
            tail_events: 10,
            ..ReplayLimits::default()
        };
        let (_dir, dispatcher, source, _watcher) = delivered(30, limits, Duration::ZERO).await;
        let before = source.reads();
        let (recovered, offsets) = resume(&dispatcher, 22, 8).await;
        assert!(recovered);
        assert_eq!(offsets, (23..=30).collect::<Vec<_>>());
        assert_eq!(source.reads(), before, "served from the tail");

        let (recovered, offsets) = resume(&dispatcher, 5, 25).await;
        assert!(recovered);
        assert_eq!(offsets, (6..=30).collect::<Vec<_>>());
        assert!(
            source.reads() > before,
            "older than the tail: read from the log"
        );
    }

    /// On a single node, a room whose last receiver left keeps its stream and tail for the
    /// retention time: the clients a blip disconnected resume from memory.
    #[tokio::test]
    async fn a_single_node_keeps_an_unused_rooms_tail_for_the_clients_coming_back() {
        let (_dir, dispatcher, source, watcher) =
            delivered(12, ReplayLimits::default(), Duration::ZERO).await;
        dispatcher.hub().disconnect(&watcher.0);
        assert!(!dispatcher.hub().has_receivers(ROOM));
        for _ in 0..3 {
            dispatcher.sweep();
        }
        assert_eq!(dispatcher.position(ROOM), Some(12), "kept");
        let before = source.reads();
        let (recovered, offsets) = resume(&dispatcher, 9, 3).await;
        assert!(recovered);
        assert_eq!(offsets, [10, 11, 12]);
        assert_eq!(source.reads(), before, "no query");
    }

    /// A storm of resumes from before the tail reads the log with at most `concurrency` reads at
    /// once; the others wait their turn, and every one is served in full.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replays_from_the_log_queue_behind_the_concurrency_limit() {
        let limits = ReplayLimits {
            tail_events: 2,
            concurrency: 2,
            ..ReplayLimits::default()
        };
        let (_dir, dispatcher, source, _watcher) =
            delivered(20, limits, Duration::from_millis(20)).await;
        let resumes: Vec<_> = (0..8)
            .map(|_| {
                let dispatcher = dispatcher.clone();
                tokio::spawn(async move { resume(&dispatcher, 3, 17).await })
            })
            .collect();
        for resumed in resumes {
            let (recovered, offsets) = resumed.await.unwrap();
            assert!(recovered);
            assert_eq!(offsets, (4..=20).collect::<Vec<_>>());
        }
        let most = source.most.load(std::sync::atomic::Ordering::SeqCst);
        assert!((1..=2).contains(&most), "{most} log reads at once");
    }
}
