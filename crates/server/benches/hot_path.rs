//! Micro-benchmarks of the hub's hot path, the work done for every committed event:
//!
//! - `serialize`: a committed `task.created` event becomes its `event` frame (once per event,
//!   whatever the number of subscribers).
//! - `room_lookup`: the room index lookup every delivery starts with, among 10,000 rooms.
//! - `enqueue`: one prepared event queued to every session of a room of 1,000 and 10,000
//!   sessions (`Hub::deliver`, which calls `Session::offer_via` per session), and the same
//!   through the public `Dispatcher::publish` (serialization, the room's order, delivery).
//!
//! Sessions are set up through the public API (`Hub::connect`, `Dispatcher::subscribe`); the
//! crate-private steps are reached through `taskflow_server::hub::bench_api`, which forwards to
//! them unchanged. Queues are drained outside the timed part, so no session ever fills up.
//!
//! `cargo bench -p taskflow-server --bench hot_path`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures::future::BoxFuture;
use std::cell::Cell;
use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use taskflow_protocol::{EventKind, LoggedEvent, Task, TaskStatus};
use taskflow_server::domain::UserId;
use taskflow_server::hub::dispatch::Dispatcher;
use taskflow_server::hub::session::{QueueLimits, Session, Transport};
use taskflow_server::hub::{bench_api, EventSource, Hub, HubLimits, Outbox};

/// The room every `enqueue` event goes to.
const ROOM: &str = "project:website-redesign";

/// An event log with nothing in it: the benchmarks never leave a gap to fill.
struct NoLog;

impl EventSource for NoLog {
    fn events_after<'a>(
        &'a self,
        _room: &'a str,
        _after: i64,
        _limit: i64,
    ) -> BoxFuture<'a, Result<Vec<LoggedEvent>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn events_oldest<'a>(&'a self, _room: &'a str) -> BoxFuture<'a, Result<Option<i64>, String>> {
        Box::pin(async { Ok(None) })
    }

    fn last_offset<'a>(&'a self, _room: &'a str) -> BoxFuture<'a, Result<i64, String>> {
        Box::pin(async { Ok(0) })
    }

    fn last_offsets(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// A hub whose limits never get in the way, and a dispatcher over it starting at offset 0.
fn hub_and_dispatcher(sessions: usize, subscriptions: usize) -> (Hub, Dispatcher) {
    let hub = Hub::new(HubLimits {
        queue: QueueLimits {
            messages: 64,
            bytes: 1 << 20,
        },
        max_connections: sessions,
        max_connections_per_user: sessions,
        max_subscriptions: subscriptions,
        connection_threads: 0,
        compression: None,
        memberships: Default::default(),
    });
    let dispatcher = Dispatcher::new(
        hub.clone(),
        Arc::new(NoLog),
        Duration::from_millis(100),
        "bench".to_owned(),
        Vec::new(),
    );
    (hub, dispatcher)
}

/// A realistic `task.created` event: the task as the API returns it (about 350 bytes of JSON).
fn task_created(offset: i64) -> LoggedEvent {
    let at = "2026-11-22T07:00:00.123Z".parse().expect("a timestamp");
    let task = Task {
        id: "01936b2e-7f3a-7c4e-9a1b-2d3c4e5f6a7b"
            .parse()
            .expect("a uuid"),
        title: "Migrate the billing page to the new design".to_owned(),
        description: Some("Keep the invoice table's column order.".to_owned()),
        status: TaskStatus::Todo,
        priority: 60,
        project_id: "website-redesign".to_owned(),
        assignee: Some("alice@example.com".to_owned()),
        dependencies: Vec::new(),
        blocked: false,
        created_at: at,
        updated_at: at,
        version: 1,
    };
    LoggedEvent {
        room: ROOM.to_owned(),
        offset,
        event: EventKind::TaskCreated,
        data: serde_json::to_value(&task).expect("a task serializes"),
        at,
    }
}

/// `n` sessions of one user (one user, so joining announces presence only once) subscribed to
/// `room` through the dispatcher, with their outboxes.
fn subscribed(
    hub: &Hub,
    dispatcher: &Dispatcher,
    room: &str,
    n: usize,
) -> Vec<(Arc<Session>, Outbox)> {
    let user = UserId::parse("bench-user", "user").expect("a user id");
    (0..n)
        .map(|_| {
            let (session, outbox) =
                hub.connect(user.clone(), false, HashSet::new(), Transport::WebSocket);
            futures::executor::block_on(dispatcher.subscribe(&session, room))
                .expect("within the limits");
            (session, outbox)
        })
        .collect()
}

/// Takes every queued frame off every session, as their writers would.
fn drain(sessions: &mut [(Arc<Session>, Outbox)]) {
    for (session, outbox) in sessions {
        while let Ok(frame) = outbox.try_recv() {
            session.written(frame.len());
        }
    }
}

fn serialize(c: &mut Criterion) {
    let event = task_created(1);
    let frame_len = bench_api::frame(&bench_api::prepare(event.clone())).len();
    let payload_len = serde_json::to_vec(&event.data).expect("json").len();
    eprintln!("serialize: task payload {payload_len} bytes, event frame {frame_len} bytes");
    let mut group = c.benchmark_group("serialize");
    group.throughput(Throughput::Bytes(frame_len as u64));
    // The dispatcher takes the event by value; cloning it is setup, not timed.
    group.bench_function("task_created", |b| {
        b.iter_batched(
            || event.clone(),
            |event| bench_api::prepare(black_box(event)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn room_lookup(c: &mut Criterion) {
    const ROOMS: usize = 10_000;
    let (hub, dispatcher) = hub_and_dispatcher(1, ROOMS);
    let user = UserId::parse("bench-user", "user").expect("a user id");
    let (session, _outbox) = hub.connect(user, false, HashSet::new(), Transport::WebSocket);
    let rooms: Vec<String> = (0..ROOMS).map(|i| format!("project:team-{i:05}")).collect();
    for room in &rooms {
        futures::executor::block_on(dispatcher.subscribe(&session, room))
            .expect("within the limits");
    }
    let absent: Vec<String> = (0..ROOMS).map(|i| format!("project:gone-{i:05}")).collect();
    assert_eq!(bench_api::room_members(&hub, &rooms[42]), Some(1));
    assert_eq!(bench_api::room_members(&hub, &absent[42]), None);

    let mut group = c.benchmark_group("room_lookup");
    group.throughput(Throughput::Elements(1));
    // Cycling through every room, so the lookups do not all hit one cached shard and entry.
    let mut next = rooms.iter().cycle();
    group.bench_function("hit_of_10000", |b| {
        b.iter(|| bench_api::room_members(&hub, black_box(next.next().expect("cycles"))))
    });
    let mut next = absent.iter().cycle();
    group.bench_function("miss_of_10000", |b| {
        b.iter(|| bench_api::room_members(&hub, black_box(next.next().expect("cycles"))))
    });
    group.finish();
}

fn enqueue(c: &mut Criterion) {
    let mut group = c.benchmark_group("enqueue");
    for n in [1_000, 10_000] {
        let (hub, dispatcher) = hub_and_dispatcher(n, 1);
        let mut sessions = subscribed(&hub, &dispatcher, ROOM, n);
        let event = bench_api::prepare(task_created(1));
        assert_eq!(
            bench_api::deliver(&hub, ROOM, &event),
            n,
            "every session queues"
        );
        drain(&mut sessions);
        group.throughput(Throughput::Elements(n as u64));

        // `Hub::deliver` alone: the event is already serialized.
        group.bench_function(format!("deliver/{n}"), |b| {
            b.iter_batched(
                || drain(&mut sessions),
                |()| bench_api::deliver(&hub, black_box(ROOM), &event),
                BatchSize::PerIteration,
            )
        });

        // The public entry point: serialization, the room's order lock, delivery, metrics.
        // Each iteration publishes the next offset, so every event is delivered at once.
        let offset = Cell::new(dispatcher.position(ROOM).expect("the room has subscribers"));
        group.bench_function(format!("publish/{n}"), |b| {
            b.iter_batched(
                || {
                    drain(&mut sessions);
                    offset.set(offset.get() + 1);
                    vec![task_created(offset.get())]
                },
                |events| dispatcher.publish(black_box(events)),
                BatchSize::PerIteration,
            )
        });
        drain(&mut sessions);
        assert_eq!(
            bench_api::deliver(&hub, ROOM, &event),
            n,
            "no session closed"
        );
        assert!(sessions.iter().all(|(s, _)| !s.is_closing()));
    }
    group.finish();
}

criterion_group!(benches, serialize, room_lookup, enqueue);
criterion_main!(benches);
