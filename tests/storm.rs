//! Reconnect storms against the real `taskflow` binary (issue 15): when every client of a node
//! drops at once and comes straight back, resuming where it stopped, the node serves the wave from
//! memory. Memberships come from its cache (a cold one costs one query per user, however many
//! connections that user has), positions from the dispatcher, and the missed events from the
//! room's tail. The `realtime_db_queries_total` metric is the proof, read from the node itself.

mod binary;
#[path = "../crates/server/tests/common/mod.rs"]
mod common;
mod realtime_client;

use common::{Backend, TestDb};
use futures::future::join_all;
use realtime_client::*;

/// Clients in the wave, over [`USERS`] users.
const CLIENTS: usize = 40;
const USERS: usize = 4;

async fn a_warm_reconnect_storm_makes_no_database_queries(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (child, addr) = binary::start(&db.url);
    let _server = binary::Running(child);
    let users: Vec<String> = (0..USERS).map(|u| format!("storm{u}")).collect();
    let members: Vec<&str> = users.iter().map(String::as_str).collect();
    create_project(&addr, "storm", &members).await;
    let mut tokens = Vec::new();
    for user in &users {
        tokens.push(token_for(&addr, user).await);
    }
    let mut clients = join_all(
        (0..CLIENTS).map(|i| Client::connect(&addr, &tokens[i % USERS], &["project:storm"])),
    )
    .await;
    let memberships = r#"reason="memberships""#;
    assert_eq!(
        counter_of(&addr, "realtime_db_queries_total", memberships).await,
        USERS as f64,
        "a cold cache costs one query per user, not one per connection"
    );
    assert_eq!(writer(addr.clone(), "storm", 5).await.unwrap(), 5);
    let targets = last_offsets(&db, &["project:storm"]).await;
    for client in &mut clients {
        assert!(client.read_until(&targets).await);
    }
    let queries = counter_sum(&addr, "realtime_db_queries_total").await;
    let opened = counter(&addr, "hub_connections_opened_total").await;

    // Every connection drops at once (no closing handshake: a blip), events go on meanwhile,
    // and every client comes back at once and resumes.
    for client in &mut clients {
        drop(client.socket.take());
    }
    assert_eq!(writer(addr.clone(), "storm", 5).await.unwrap(), 5);
    join_all(clients.iter_mut().map(|c| c.resume(&addr))).await;
    let targets = last_offsets(&db, &["project:storm"]).await;
    for client in &mut clients {
        assert!(client.read_until(&targets).await);
        client.assert_complete(&targets);
    }
    let reconnections = counter(&addr, "hub_connections_opened_total").await - opened;
    assert_eq!(reconnections, CLIENTS as f64);
    let per_connection =
        (counter_sum(&addr, "realtime_db_queries_total").await - queries) / reconnections;
    assert!(
        per_connection <= 0.05,
        "{per_connection} database queries per warm reconnection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_reconnect_storm_makes_no_database_queries_on_sqlite() {
    a_warm_reconnect_storm_makes_no_database_queries(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_reconnect_storm_makes_no_database_queries_on_postgres() {
    a_warm_reconnect_storm_makes_no_database_queries(Backend::Postgres).await;
}

/// Long polling on a single node: each request is answered from the dispatcher's position and
/// the room's tail, so pollers cost no query either, and still get every event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_are_answered_from_memory() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (child, addr) = binary::start(&db.url);
    let _server = binary::Running(child);
    create_project(&addr, "polled", &["pia"]).await;
    let token = token_for(&addr, "pia").await;
    let http = reqwest::Client::new();
    let poll = |cursor: Option<String>| {
        let mut url = format!("http://{addr}/poll?rooms=project:polled&timeout=5");
        if let Some(cursor) = cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        http.get(url).bearer_auth(&token).send()
    };
    let first: serde_json::Value = poll(None).await.unwrap().json().await.unwrap();
    let mut cursor = first["cursor"].as_str().unwrap().to_owned();
    let queries = counter_sum(&addr, "realtime_db_queries_total").await;
    assert_eq!(writer(addr.clone(), "polled", 6).await.unwrap(), 6);
    let mut offsets = Vec::new();
    while offsets.len() < 6 {
        let answer: serde_json::Value = poll(Some(cursor.clone()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["recovered"], true, "{answer}");
        for event in answer["events"].as_array().unwrap() {
            assert_eq!(event["event"], "task.created");
            offsets.push(event["offset"].as_i64().unwrap());
        }
        cursor = answer["cursor"].as_str().unwrap().to_owned();
    }
    let start = offsets[0];
    assert_eq!(offsets, (start..start + 6).collect::<Vec<_>>());
    assert_eq!(
        counter_sum(&addr, "realtime_db_queries_total").await,
        queries,
        "no query for a warm poller"
    );
}
