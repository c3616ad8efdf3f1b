//! The dashboard the server pushes: `stats` frames in the admin-only `system` room, over every
//! transport, whose numbers follow what the hub does.

use crate::common::{Backend, TestApp, ADMIN_TOKEN};
use crate::sse_client::SseReader;
use crate::ws::Ws;
use serde_json::{json, Value};
use std::time::Duration;

/// A server that pushes every 100 ms, so a test waits a few frames, not seconds.
async fn spawn() -> TestApp {
    TestApp::spawn_with(Backend::Sqlite, |c| c.dashboard_interval_ms = 100).await
}

/// The next `stats` frame on `ws`.
async fn next_stats(ws: &mut Ws) -> Value {
    let frame = ws.next_of("stats").await;
    assert_eq!(frame["room"], "system", "{frame}");
    assert_eq!(frame["node"], "local", "{frame}");
    assert_eq!(frame["broker"], "none", "{frame}");
    frame
}

/// Reads `stats` frames until one satisfies `done` (the numbers move within a few intervals).
async fn stats_until(ws: &mut Ws, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let wait = async {
        loop {
            let frame = next_stats(ws).await;
            if done(&frame) {
                return frame;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .unwrap_or_else(|_| panic!("no stats frame showed {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_frames_numbers_follow_connections_and_events() {
    let app = spawn().await;
    app.create_project("web", &["alice"]).await;
    let mut admin = Ws::connect(&app, ADMIN_TOKEN).await;
    let reply = admin.subscribe("system").await;
    assert_eq!(reply["ok"], true, "{reply}");

    let first = next_stats(&mut admin).await;
    let websockets = first["connections"]["websocket"].as_u64().unwrap();
    assert!(
        websockets >= 1,
        "the admin's own connection counts: {first}"
    );
    assert!(first["rss_bytes"].as_u64().unwrap() > 1 << 20, "{first}");
    let interval = first["interval_ms"].as_u64().unwrap();
    assert!((50..=2_000).contains(&interval), "{first}");

    // Three more WebSocket connections, one SSE stream: the counts move.
    let alice_token = app.token_for("alice").await;
    let mut tabs = Vec::new();
    for _ in 0..3 {
        let mut tab = Ws::connect(&app, &alice_token).await;
        tab.subscribe("project:web").await;
        tabs.push(tab);
    }
    let mut sse = SseReader::open(&app.url("/events?rooms=project:web"), &alice_token, None).await;
    assert_eq!(sse.next().await.data["type"], "subscribed");
    let more = stats_until(&mut admin, "the new connections", |f| {
        f["connections"]["websocket"].as_u64() == Some(websockets + 3)
            && f["connections"]["sse"] == 1
    })
    .await;
    assert!(more["subscriptions"].as_u64().unwrap() >= 5, "{more}");

    // Events flow: each task created is one event, delivered to three tabs and the stream.
    for n in 0..20 {
        app.create_task(json!({ "title": format!("t{n}"), "project_id": "web" }))
            .await;
    }
    let busy = stats_until(&mut admin, "the events", |f| {
        f["events_per_sec"].as_f64().unwrap() > 0.0
    })
    .await;
    assert!(
        busy["deliveries_per_sec"].as_f64().unwrap() >= busy["events_per_sec"].as_f64().unwrap(),
        "every event reached at least one subscriber: {busy}"
    );
    let latency = &busy["latency_ms"];
    assert!(latency["p50"].as_f64().unwrap() <= latency["p99"].as_f64().unwrap());
    assert!(latency["p99"].as_f64().unwrap() <= latency["max"].as_f64().unwrap());

    // Quiet again: the rates fall back to zero, the latency to null; the tabs go, and so do
    // their connections.
    drop(tabs);
    drop(sse);
    let quiet = stats_until(&mut admin, "the quiet after", |f| {
        f["events_per_sec"] == 0.0
            && f["latency_ms"].is_null()
            && f["connections"]["websocket"].as_u64() == Some(websockets)
            && f["connections"]["sse"] == 0
    })
    .await;
    assert_eq!(quiet["slow_consumer_closes"], 0, "{quiet}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_room_is_the_admins_and_reaches_sse_and_long_polling() {
    let app = spawn().await;
    app.create_project("web", &["alice"]).await;
    let alice_token = app.token_for("alice").await;

    // Not for a member: refused on every transport.
    let mut alice = Ws::connect(&app, &alice_token).await;
    let refused = alice
        .request(json!({ "type": "subscribe", "room": "system" }))
        .await;
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    for path in ["/events?rooms=system", "/poll?rooms=system"] {
        let response = reqwest::Client::new()
            .get(app.url(path))
            .bearer_auth(&alice_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden", "{path}: {body}");
    }

    // The admin's SSE stream gets the frames.
    let mut sse = SseReader::open(&app.url("/events?rooms=system"), ADMIN_TOKEN, None).await;
    assert_eq!(sse.next().await.data["type"], "subscribed");
    let pushed = loop {
        let frame = sse.next().await.data;
        if frame["type"] == "stats" {
            break frame;
        }
    };
    assert_eq!(pushed["connections"]["sse"], 1, "{pushed}");

    // A long poll answers with the frame pushed while it waited, and the next poll with the
    // next one; the cursor stays valid throughout.
    let client = reqwest::Client::new();
    let first: Value = client
        .get(app.url("/poll?rooms=system"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut cursor = first["cursor"].as_str().unwrap().to_owned();
    let mut polled = Vec::new();
    while polled.len() < 2 {
        let answer: Value = client
            .get(app.url(&format!("/poll?rooms=system&cursor={cursor}&timeout=10")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["recovered"], true, "{answer}");
        cursor = answer["cursor"].as_str().unwrap().to_owned();
        for frame in answer["events"].as_array().unwrap() {
            assert_eq!(frame["type"], "stats", "{frame}");
            polled.push(frame.clone());
        }
    }
    // The poll waiting counted as a long-polling connection in the frame it got.
    assert!(
        polled.iter().all(|f| f["connections"]["long_polling"] == 1),
        "{polled:?}"
    );
    let at = |f: &Value| {
        chrono::DateTime::parse_from_rfc3339(f["at"].as_str().unwrap()).expect("an RFC 3339 time")
    };
    assert!(at(&polled[0]) < at(&polled[1]), "{polled:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_computed_while_nobody_follows_the_system_room() {
    let app = spawn().await;
    app.create_project("web", &["alice"]).await;
    let mut alice = Ws::connect(&app, &app.token_for("alice").await).await;
    alice.subscribe("project:web").await;
    // No follower: the hub does not count itself as wanted.
    assert!(!app.hub.stats_wanted(Duration::from_millis(300)));
    let mut admin = Ws::connect(&app, ADMIN_TOKEN).await;
    admin.subscribe("system").await;
    assert!(app.hub.stats_wanted(Duration::from_millis(300)));
    next_stats(&mut admin).await;
    let reply = admin
        .request(json!({ "type": "unsubscribe", "room": "system" }))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(!app.hub.stats_wanted(Duration::from_millis(300)));
    // Events while nobody watches (delivered to alice) do not show up in the first frame of
    // the next follower.
    for n in 0..5 {
        app.create_task(json!({ "title": format!("t{n}"), "project_id": "web" }))
            .await;
    }
    for _ in 0..5 {
        assert_eq!(alice.next_of("event").await["event"], "task.created");
    }
    // The next tick zeroes the interval's counts although it reports nothing.
    let zeroed = async {
        while app.hub.tally().interval_events() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), zeroed)
        .await
        .expect("an idle tick zeroes the interval");
    admin.subscribe("system").await;
    let first = next_stats(&mut admin).await;
    assert_eq!(first["events_per_sec"], 0.0, "{first}");
    app.stop().await;
}
