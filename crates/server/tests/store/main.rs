//! The store's contract, run against SQLite and PostgreSQL alike: the same stories, the same
//! assertions, straight on the `Store` API.

#[path = "../common/mod.rs"]
mod common;

use common::{Backend, TestDb};
use std::sync::{Arc, Mutex};
use taskflow_protocol::LoggedEvent;
use taskflow_protocol::TaskStatus;
use taskflow_server::domain::{NewTask, Priority, ProjectId, TaskChange, TaskTitle};
use taskflow_server::store::{DependencyError, EventSink, PoolSizes, Store, StoreError};

macro_rules! store_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::TestDb::new(crate::Backend::Sqlite).await;
                    super::$name(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::TestDb::new(crate::Backend::Postgres).await;
                    super::$name(&db).await;
                }
            )*
        }
    };
}

store_suite!(
    the_pools_have_the_configured_sizes,
    the_epoch_is_stable_across_reconnects_and_unique_per_database,
    events_page_in_offset_order,
    of_two_writes_on_one_version_exactly_one_wins,
    concurrent_opposite_edges_cannot_form_a_cycle,
    a_failed_write_consumes_no_offset,
    concurrent_writes_all_commit_with_gapless_offsets,
);

fn new_task(title: &str) -> NewTask {
    NewTask {
        title: TaskTitle::parse(title).unwrap(),
        description: None,
        status: TaskStatus::Todo,
        priority: Priority::default(),
        project_id: ProjectId::default_project(),
        assignee: None,
    }
}

async fn the_pools_have_the_configured_sizes(db: &TestDb) {
    let sizes = PoolSizes {
        max: 5,
        writers: 2,
        ..PoolSizes::default()
    };
    let store = Store::connect_with(&db.url, sizes).await.unwrap();
    let [read, write] = store.pool_stats();
    let postgres = db.url.starts_with("postgres");
    // SQLite: one writer, the rest read; PostgreSQL: the writers asked for, the rest read.
    let expected = if postgres { (3, 2) } else { (4, 1) };
    assert_eq!((read.pool, write.pool), ("read", "write"));
    assert_eq!((read.max, write.max), expected);
    assert!(read.open >= 1 && read.open <= read.max, "{read:?}");
    // Every pool answers the probe, and a ping says how long it waited.
    assert!(!store.acquire_times().await.unwrap().is_empty());
    store.ping().await.unwrap();
    // A node that may open more than the server has room for is told why.
    let greedy = PoolSizes {
        max: 100_000,
        ..PoolSizes::default()
    };
    let big = Store::connect_with(&db.url, greedy).await.unwrap();
    let shortfall = big.connection_shortfall().await.unwrap();
    if postgres {
        let why = shortfall.expect("100,000 connections do not fit");
        assert!(
            why.contains("may open 100000 database connections") && why.contains("max_connections"),
            "{why}"
        );
    } else {
        assert_eq!(shortfall, None, "SQLite has no server to run out of");
    }
}

async fn the_epoch_is_stable_across_reconnects_and_unique_per_database(db: &TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    let epoch = store.epoch().to_owned();
    store.close().await;
    let again = Store::connect(&db.url).await.unwrap();
    assert_eq!(again.epoch(), epoch);
    let other_db = TestDb::new(Backend::Sqlite).await;
    let other = Store::connect(&other_db.url).await.unwrap();
    assert_ne!(other.epoch(), epoch);
}

async fn events_page_in_offset_order(db: &TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    for i in 0..25 {
        store.create_task(new_task(&format!("t{i}"))).await.unwrap();
    }
    let first = store.events_after("project:default", 0, 10).await.unwrap();
    let rest = store
        .events_after("project:default", 10, 100)
        .await
        .unwrap();
    let offsets: Vec<i64> = first.iter().chain(&rest).map(|e| e.offset).collect();
    assert_eq!(offsets, (1..=25).collect::<Vec<_>>());
    assert_eq!(store.last_offset("project:default").await.unwrap(), 25);
    assert_eq!(first[0].data["title"], "t0");
}

async fn of_two_writes_on_one_version_exactly_one_wins(db: &TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    let task = store.create_task(new_task("contended")).await.unwrap();
    let writes = (0..10).map(|i| {
        let store = store.clone();
        async move {
            let change = TaskChange {
                title: Some(TaskTitle::parse(&format!("by {i}")).unwrap()),
                ..TaskChange::default()
            };
            store.update_task(task.id, change, Some(1)).await
        }
    });
    let results = futures::future::join_all(writes).await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    let stale = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::StaleVersion { current: 2, .. })))
        .count();
    assert_eq!((wins, stale), (1, 9));
    assert_eq!(store.get_task(task.id).await.unwrap().version, 2);
}

async fn concurrent_opposite_edges_cannot_form_a_cycle(db: &TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    for _ in 0..10 {
        let a = store.create_task(new_task("a")).await.unwrap();
        let b = store.create_task(new_task("b")).await.unwrap();
        let (ab, ba) = tokio::join!(
            store.add_dependency(a.id, b.id),
            store.add_dependency(b.id, a.id)
        );
        let cycles = [&ab, &ba]
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Dependency(DependencyError::Cycle(_)))))
            .count();
        assert_eq!(
            (ab.is_ok() as usize + ba.is_ok() as usize, cycles),
            (1, 1),
            "{ab:?} {ba:?}"
        );
    }
}

async fn a_failed_write_consumes_no_offset(db: &TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    let a = store.create_task(new_task("a")).await.unwrap();
    let b = store.create_task(new_task("b")).await.unwrap();
    store.add_dependency(b.id, a.id).await.unwrap();
    assert!(matches!(
        store.add_dependency(a.id, b.id).await,
        Err(StoreError::Dependency(DependencyError::Cycle(_)))
    ));
    assert!(matches!(
        store.delete_task(a.id, false).await,
        Err(StoreError::HasDependents(_))
    ));
    let stale = TaskChange {
        priority: Some(Priority::parse(9).unwrap()),
        ..TaskChange::default()
    };
    assert!(store.update_task(a.id, stale, Some(99)).await.is_err());
    assert_eq!(
        store.last_offset("project:default").await.unwrap(),
        3,
        "refused writes leave no hole"
    );
    let c = store.create_task(new_task("c")).await.unwrap();
    let events = store.events_after("project:default", 0, 10).await.unwrap();
    assert_eq!(events.last().unwrap().offset, 4);
    assert_eq!(events.last().unwrap().data["id"], c.id.to_string());
}

/// Every event the store published, in publication order.
#[derive(Default)]
struct Recorder(Mutex<Vec<LoggedEvent>>);

impl EventSink for Recorder {
    fn committed(&self, events: Vec<LoggedEvent>) {
        self.0.lock().unwrap().extend(events);
    }
}

/// Many writes at once (with SQLite they share transactions): every one commits, offsets have no
/// hole, and each write's event was published once, before the write returned.
async fn concurrent_writes_all_commit_with_gapless_offsets(db: &TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    let sink = Arc::new(Recorder::default());
    store.set_event_sink(sink.clone());
    let writes = (0..200).map(|i| {
        let (store, sink) = (store.clone(), sink.clone());
        async move {
            let task = store.create_task(new_task(&format!("t{i}"))).await.unwrap();
            let published = sink.0.lock().unwrap().clone();
            assert!(
                published
                    .iter()
                    .any(|e| e.data["id"] == task.id.to_string()),
                "task {i}'s event was published before its write returned"
            );
            task
        }
    });
    let tasks = futures::future::join_all(writes).await;
    let logged = store
        .events_after("project:default", 0, 1000)
        .await
        .unwrap();
    let offsets: Vec<i64> = logged.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, (1..=200).collect::<Vec<_>>());
    let mut ids: Vec<&str> = logged
        .iter()
        .map(|e| e.data["id"].as_str().unwrap())
        .collect();
    let mut created: Vec<String> = tasks.iter().map(|t| t.id.to_string()).collect();
    ids.sort_unstable();
    created.sort_unstable();
    assert_eq!(ids, created, "one event per created task");
    // Published exactly once each. (With PostgreSQL, writes commit on connections of their own
    // and may reach the sink out of order; the hub puts them back in order.)
    let mut published = sink.0.lock().unwrap().clone();
    published.sort_by_key(|e| e.offset);
    assert_eq!(published, logged, "every committed event published once");
}
