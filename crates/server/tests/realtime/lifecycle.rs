use crate::common::{Backend, TestApp, ADMIN_TOKEN};
use crate::ws::Ws;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_pings_is_terminated_and_freed() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.ws_heartbeat_interval_ms = 100;
        c.ws_pong_timeout_ms = 100;
        c.ws_max_missed_pongs = 2;
    })
    .await;
    app.create_project("room", &["ghost", "watcher"]).await;
    let mut ghost = Ws::connect(&app, &app.token_for("ghost").await).await;
    ghost.subscribe("project:room").await;
    let mut watcher = Ws::connect(&app, &app.token_for("watcher").await).await;
    watcher.subscribe("project:room").await;
    // The ghost stops reading: its client library no longer answers pings. The watcher keeps
    // reading (and so answering pings) and sees the ghost leave.
    let left = loop {
        let frame = watcher.next().await;
        if frame["type"] == "presence.left" {
            break frame;
        }
    };
    assert_eq!(left["user"], "ghost");
    assert_eq!(left["room"], "project:room");
    let presence = watcher
        .request(json!({ "type": "presence", "room": "project:room" }))
        .await;
    assert_eq!(
        presence["result"]["present"],
        json!([{ "user": "watcher", "connections": 1 }])
    );
    // The watcher, answering pings all along, is still connected.
    assert_eq!(
        watcher.request(json!({ "type": "ping" })).await["type"],
        "pong"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("ws_heartbeat_terminations_total"),
        "{metrics}"
    );
    drop(ghost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_client_with_1001() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(Ws::connect(&app, ADMIN_TOKEN).await);
    }
    let stopping = tokio::spawn(app.stop());
    for ws in &mut clients {
        let (code, reason) = ws.closed().await;
        assert_eq!(code, 1001);
        assert!(reason.contains("shutting down"), "{reason}");
    }
    stopping.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_while_connected_closes_with_4001() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let res = app
        .admin(Method::POST, "/auth/tokens")
        .json(&json!({ "user": "brief", "ttl_secs": 1 }))
        .send()
        .await
        .unwrap();
    let token: Value = res.json().await.unwrap();
    let mut ws = Ws::connect(&app, token["token"].as_str().unwrap()).await;
    assert_eq!(ws.closed().await.0, 4001);
}
