//! What clients leave behind: once the last one is gone, the hub, the dispatcher and the rate
//! limiter hold nothing of them (issue 14, "Memory that comes back").

use crate::common::{Backend, TestApp};
use crate::ws::Ws;
use serde_json::json;
use std::time::{Duration, Instant};
use taskflow_server::hub::HubCounts;

/// How long the counts may take to come back: the dispatcher drops a room's state one to two
/// sweeps (of 1 s) after its last use.
const SETTLE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_clients_leave_behind_is_dropped_when_the_last_one_leaves() {
    // A single node keeps an unused room's tail of recent events for the clients that come
    // back (`replay_tail_retain_secs`); here briefly, so the test sees it go.
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.replay_tail_retain_secs = 2).await;
    let users: Vec<String> = (0..8).map(|i| format!("leaver{i}")).collect();
    let members: Vec<&str> = users.iter().map(String::as_str).collect();
    let projects = ["left-a", "left-b", "left-c"];
    for project in projects {
        app.create_project(project, &members).await;
    }
    // Each user: three connections, each in its own `user:` room and `tasks` (automatic) and
    // one project room; one in every project room, with a message in the user's room.
    let mut clients = Vec::new();
    // One that never subscribes keeps the automatic `tasks` (the others leave it when they
    // subscribe to a room of their own).
    let mut watcher = Ws::connect(&app, &app.token_for(&users[0]).await).await;
    for user in &users {
        let token = app.token_for(user).await;
        for project in projects {
            let mut ws = Ws::connect(&app, &token).await;
            ws.subscribe(&format!("project:{project}")).await;
            clients.push(ws);
        }
    }
    for (i, project) in projects.iter().enumerate() {
        app.create_task(json!({ "title": format!("t{i}"), "project_id": project }))
            .await;
    }
    for ws in &mut clients {
        ws.next_of("event").await;
    }
    watcher.next_of("event").await;
    clients.push(watcher);
    let busy = app.hub.counts();
    assert_eq!(busy.sessions, clients.len());
    assert_eq!(busy.users, users.len());
    // Every user's room, every project room, `tasks`.
    assert_eq!(busy.rooms, users.len() + projects.len() + 1);
    assert!(app.state.dispatcher().counts().rooms >= users.len() + projects.len());
    assert!(app.state.rate_limited_callers() > users.len());

    for mut ws in clients {
        ws.stream.close(None).await.unwrap();
        // Read to the server's close frame, so the connection is gone on both sides.
        while let Some(Ok(_)) = futures::StreamExt::next(&mut ws.stream).await {}
    }

    let start = Instant::now();
    loop {
        // The limiter forgets a caller once its budget has refilled (the server prunes it every
        // minute; here the test does, so as not to wait for that).
        app.state.prune_rate_limits();
        let (hub, dispatcher) = (app.hub.counts(), app.state.dispatcher().counts());
        let limiter = app.state.rate_limited_callers();
        if hub == HubCounts::default() && dispatcher.rooms == 0 && limiter == 0 {
            break;
        }
        assert!(
            start.elapsed() < SETTLE,
            "still held {SETTLE:?} after the last client left: hub {hub:?}, dispatcher \
             {dispatcher:?}, rate limiter {limiter} callers"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.state.dispatcher().counts().pending, 0);

    // A room that comes back starts where the log stands: a new subscriber of a room whose
    // state was dropped gets the next event, and nothing from before it subscribed.
    let mut again = Ws::connect(&app, &app.token_for("leaver0").await).await;
    let answer = again.subscribe("project:left-a").await;
    let last = app.store.last_offset("project:left-a").await.unwrap();
    assert_eq!(
        answer["result"]["offset"], last,
        "the room's position, read from the log: {answer}"
    );
    let task = app
        .create_task(json!({ "title": "after", "project_id": "left-a" }))
        .await;
    let event = again.next_of("event").await;
    assert_eq!(event["room"], "project:left-a");
    assert_eq!(event["offset"], last + 1);
    assert_eq!(event["data"]["id"], task["id"]);
    app.stop().await;
}
