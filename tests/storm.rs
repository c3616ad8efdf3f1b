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
    let (mut child, addr) = binary::start(&db.url);
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
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_reconnect_storm_makes_no_database_queries_on_sqlite() {
    a_warm_reconnect_storm_makes_no_database_queries(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_reconnect_storm_makes_no_database_queries_on_postgres() {
    a_warm_reconnect_storm_makes_no_database_queries(Backend::Postgres).await;
}
