//! Ordered fan-out. Events of a room can reach this node out of order (the writers of offsets n
//! and n+1 each publish after their own commit, and across nodes the broker adds its own
//! reordering), so each room keeps the last offset delivered and holds anything that comes
//! early. A gap that the publishers do not fill within `hold` is filled from the log itself.
//! Each event is delivered once, in offset order, to every session subscribed at that point.

use super::{frame_bytes, metrics, EventSource, Hub, SubscribeError};
use crate::domain::ProjectId;
use crate::hub::session::Session;
use bytes::Bytes;
use dashmap::DashMap;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use taskflow_protocol::{EventFrame, EventKind, LoggedEvent, ServerFrame};

/// An event ready to fan out: serialized once.
struct Prepared {
    /// Its offset in the room.
    offset: i64,
    /// The project whose `tasks` subscribers also get it (task events only).
    tasks_of: Option<ProjectId>,
    /// A membership change it carries: project, user, added.
    membership: Option<(ProjectId, String, bool)>,
    /// The `event` frame.
    bytes: Bytes,
    /// Commit time, for the commit-to-enqueue histogram.
    at_ms: i64,
}

/// Where a room's stream stands on this node.
#[derive(Default)]
struct RoomOrder {
    /// The last offset delivered (0: none yet).
    delivered: i64,
    /// Events that arrived ahead of a gap, by offset.
    pending: BTreeMap<i64, Prepared>,
    /// Whether a task is filling the gap from the log.
    filling: bool,
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
    /// deciding and queueing (never across an await), so rooms never wait on each other.
    rooms: DashMap<String, Arc<Mutex<RoomOrder>>>,
    /// The log, to fill gaps.
    source: Arc<dyn EventSource>,
    /// How long an early event waits for the gap before it is filled from the log.
    hold: Duration,
}

impl Dispatcher {
    /// A dispatcher delivering through `hub`, filling gaps from `source`. `rooms` gives the last
    /// offset of every room that exists now; rooms created later start at 0.
    pub fn new(
        hub: Hub,
        source: Arc<dyn EventSource>,
        hold: Duration,
        rooms: Vec<(String, i64)>,
    ) -> Self {
        let map = DashMap::new();
        for (room, last) in rooms {
            map.insert(
                room,
                Arc::new(Mutex::new(RoomOrder {
                    delivered: last,
                    ..RoomOrder::default()
                })),
            );
        }
        Self {
            inner: Arc::new(Inner {
                hub,
                rooms: map,
                source,
                hold,
            }),
        }
    }

    /// The hub it delivers through.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    fn order_of(&self, room: &str) -> Arc<Mutex<RoomOrder>> {
        if let Some(order) = self.inner.rooms.get(room) {
            return order.clone();
        }
        self.inner.rooms.entry(room.to_owned()).or_default().clone()
    }

    /// Takes committed events (from the local store or the broker), in any order.
    pub fn publish(&self, events: Vec<LoggedEvent>) {
        for event in events {
            let room = event.room.clone();
            self.accept(&room, prepare(event));
        }
    }

    fn accept(&self, room: &str, event: Prepared) {
        let order = self.order_of(room);
        let mut order = order.lock().expect("never poisoned: no panics under lock");
        if event.offset <= order.delivered || order.pending.contains_key(&event.offset) {
            return; // already delivered or already waiting: a duplicate
        }
        if event.offset == order.delivered + 1 {
            self.deliver(room, &mut order, event);
            self.drain(room, &mut order);
        } else {
            order.pending.insert(event.offset, event);
            if !order.filling {
                order.filling = true;
                tokio::spawn(self.clone().fill(room.to_owned()));
            }
        }
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
        order.delivered = event.offset;
        let lag = (chrono::Utc::now().timestamp_millis() - event.at_ms).max(0) as f64 / 1000.0;
        metrics::dispatched(reached, lag);
    }

    /// Waits `hold` for the publishers to fill a gap, then reads the missing events from the log;
    /// repeats until nothing is pending.
    async fn fill(self, room: String) {
        let order = self.order_of(&room);
        loop {
            tokio::time::sleep(self.inner.hold).await;
            let (after, until) = {
                let mut o = order.lock().expect("never poisoned");
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
    pub fn subscribe(
        &self,
        session: &Arc<Session>,
        room: &str,
    ) -> Result<(bool, Option<i64>), SubscribeError> {
        if room == crate::domain::Room::TASKS {
            return self
                .inner
                .hub
                .join(session, room)
                .map(|added| (added, None));
        }
        let order = self.order_of(room);
        let order = order.lock().expect("never poisoned");
        let added = self.inner.hub.join(session, room)?;
        Ok((added, Some(order.delivered)))
    }

    /// The last offset delivered in a room on this node.
    pub fn position(&self, room: &str) -> i64 {
        self.order_of(room)
            .lock()
            .expect("never poisoned")
            .delivered
    }
}

fn prepare(event: LoggedEvent) -> Prepared {
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
            vec![("project:default".into(), 0)],
        );
        let (session, mut outbox) =
            hub.connect(UserId::parse("admin", "u").unwrap(), true, HashSet::new());
        let (_, position) = dispatcher.subscribe(&session, "project:default").unwrap();
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
        assert_eq!(dispatcher.position("project:default"), 5);
        // Late duplicates change nothing.
        dispatcher.publish(log.clone());
        assert!(outbox.try_recv().is_err());
    }
}
