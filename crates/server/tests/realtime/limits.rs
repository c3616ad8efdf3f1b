use crate::common::{Backend, TestApp, ADMIN_TOKEN};
use crate::ws::Ws;
use futures::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn bad_commands_get_error_replies_and_the_connection_survives() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut ws = Ws::connect(&app, ADMIN_TOKEN).await;
    ws.stream.send(Message::text("{not json")).await.unwrap();
    let frame = ws.next_of("error").await;
    assert_eq!(frame["error"]["code"], "bad_json");
    let reply = ws.request(json!({ "type": "dance" })).await;
    assert_eq!(reply["ok"], false);
    assert_eq!(reply["error"]["code"], "unknown_type");
    let reply = ws.request(json!({ "type": "subscribe" })).await;
    assert_eq!(reply["error"]["code"], "invalid_field");
    let reply = ws
        .request(json!({ "type": "subscribe", "room": "lobby" }))
        .await;
    assert_eq!(reply["error"]["code"], "invalid_room");
    let reply = ws
        .request(json!({ "type": "message", "room": "project:default", "text": "" }))
        .await;
    assert_eq!(reply["error"]["code"], "invalid_field");
    let reply = ws
        .request(json!({ "type": "unsubscribe", "room": "project:nope" }))
        .await;
    assert_eq!(reply["error"]["code"], "not_subscribed");
    ws.stream
        .send(Message::binary(vec![1, 2, 3]))
        .await
        .unwrap();
    assert_eq!(ws.next_of("error").await["error"]["code"], "unsupported");
    // Still alive: every command with an id got exactly one reply, and ping answers.
    let pong = ws.request(json!({ "type": "ping" })).await;
    assert_eq!(pong["type"], "pong");
    let task = app.create_task(json!({ "title": "still here" })).await;
    assert_eq!(ws.next_of("event").await["data"]["id"], task["id"]);
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.ws_max_message_bytes = 1024).await;
    let mut ws = Ws::connect(&app, ADMIN_TOKEN).await;
    let big = json!({ "type": "message", "room": "project:default", "text": "x".repeat(2000) });
    ws.stream
        .send(Message::text(big.to_string()))
        .await
        .unwrap();
    assert_eq!(ws.closed().await.0, 1009);
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut ws = Ws::connect(&app, ADMIN_TOKEN).await;
    let frame = Frame::message(vec![0xff, 0xfe, b'{'], OpCode::Data(Data::Text), true);
    ws.stream.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(ws.closed().await.0, 1007);
}

#[tokio::test]
async fn a_command_flood_gets_refused_then_closed_with_1008() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.ws_commands_per_sec = 1;
        c.ws_commands_burst = 5;
    })
    .await;
    let mut ws = Ws::connect(&app, ADMIN_TOKEN).await;
    for i in 0..6 {
        ws.send(json!({ "type": "ping", "id": i })).await;
    }
    let mut pongs = 0;
    loop {
        let frame = ws.next().await;
        if frame["type"] == "pong" {
            pongs += 1;
        } else {
            assert_eq!(frame["error"]["code"], "rate_limited", "{frame}");
            assert_eq!(frame["id"], 5, "the refusal answers the refused command");
            break;
        }
    }
    assert_eq!(pongs, 5, "the burst is served");
    for i in 0..40 {
        if ws
            .stream
            .send(Message::text(
                json!({ "type": "ping", "id": 100 + i }).to_string(),
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(ws.closed().await.0, 1008);
}

#[tokio::test]
async fn subscriptions_per_connection_are_limited() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.ws_max_subscriptions = 3).await;
    let mut ws = Ws::connect(&app, ADMIN_TOKEN).await;
    // `tasks` and `user:admin` are the two implicit ones; the first explicit one replaces `tasks`.
    for p in ["a", "b", "c"] {
        app.create_project(p, &[]).await;
    }
    ws.subscribe("project:a").await;
    ws.subscribe("project:b").await;
    let reply = ws
        .request(json!({ "type": "subscribe", "room": "project:c" }))
        .await;
    assert_eq!(reply["error"]["code"], "too_many_subscriptions");
    ws.request(json!({ "type": "unsubscribe", "room": "project:a" }))
        .await;
    ws.subscribe("project:c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_cut_off_while_a_fast_one_gets_everything() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.ws_queue_messages = 64;
        c.ws_queue_bytes = 256 * 1024;
        c.dashboard_interval_ms = 100;
    })
    .await;
    app.create_project("busy", &["slow", "fast"]).await;
    // The admin's dashboard, to see the cut counted.
    let mut dashboard = Ws::connect(&app, crate::common::ADMIN_TOKEN).await;
    dashboard.subscribe("system").await;
    // The slow client's socket has a tiny receive buffer and it never reads.
    let mut slow = Ws::connect_small_buffer(app.addr, &app.token_for("slow").await).await;
    slow.subscribe("project:busy").await;
    let mut fast = Ws::connect(&app, &app.token_for("fast").await).await;
    let start = fast.subscribe("project:busy").await["result"]["offset"]
        .as_i64()
        .unwrap();

    // Big events until the fast client hears that the slow one left.
    let description = "d".repeat(9_000);
    let mut created = 0i64;
    let mut offsets = Vec::new();
    let left = loop {
        assert!(created < 5_000, "the slow consumer was never cut off");
        app.create_task(json!({ "title": format!("t{created}"), "project_id": "busy", "description": description }))
            .await;
        created += 1;
        // Drain what the fast client has so far, without waiting on what has not come.
        let mut gone = false;
        while let Ok(frame) =
            tokio::time::timeout(std::time::Duration::from_millis(1), fast.next()).await
        {
            match frame["type"].as_str() {
                Some("event") => offsets.push(frame["offset"].as_i64().unwrap()),
                Some("presence.left") if frame["user"] == "slow" => gone = true,
                _ => {}
            }
        }
        if gone {
            break created;
        }
    };
    // The fast client gets every event, in order, including those after the cut.
    while offsets.len() < left as usize {
        let frame = fast.next_of("event").await;
        offsets.push(frame["offset"].as_i64().unwrap());
    }
    assert_eq!(offsets, ((start + 1)..=(start + left)).collect::<Vec<_>>());
    // The slow client, when it finally reads, finds the slow-consumer close after its backlog.
    assert_eq!(slow.closed().await.0, 4008);
    // The dashboard's frame of the interval it happened in counts it.
    loop {
        let stats = dashboard.next_of("stats").await;
        if stats["slow_consumer_closes"] == 1 {
            break;
        }
        assert_eq!(stats["slow_consumer_closes"], 0, "{stats}");
    }
}

#[tokio::test]
async fn a_protocol_violation_closes_with_1002() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut ws = Ws::connect(&app, ADMIN_TOKEN).await;
    // A text frame with RSV1 set, which no extension was negotiated for: FIN|RSV1|text, masked,
    // two payload bytes.
    let raw = [0xC1, 0x82, 1, 2, 3, 4, b'{' ^ 1, b'}' ^ 2];
    match ws.stream.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.write_all(&raw).await.unwrap(),
        _ => unreachable!("the test connects over plain TCP"),
    }
    assert_eq!(ws.closed().await.0, 1002);
}

/// The held-writes counter, from `/metrics` (process-wide: other tests may add to it).
async fn writes_held(app: &TestApp) -> u64 {
    app.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("hub_writes_held_total "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Back-pressure from the fan-out: while connections whose clients read are behind, a REST write
/// waits (bounded, 1 s) for them to catch up; reads are not held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_while_the_fanout_lags() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let before = writes_held(&app).await;
    app.hub.fanout_lag().enter(); // as a session whose queue passed half its limit would
    let started = std::time::Instant::now();
    let write = tokio::spawn(
        app.admin(reqwest::Method::POST, "/tasks")
            .json(&json!({ "title": "held" }))
            .send(),
    );
    let read = app
        .admin(reqwest::Method::GET, "/tasks")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "reads go through");
    assert!(!write.is_finished(), "the write waits for the fan-out");
    // The lag never ends here, so the write goes through at the gate's bound (1 s) and not
    // before: a lower bound, which no slowness of the machine can break. (Leaving the lag
    // here instead would race the write's arrival at the gate.)
    assert_eq!(write.await.unwrap().unwrap().status(), 201);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "held for the gate's bound"
    );
    app.hub.fanout_lag().leave();
    assert!(writes_held(&app).await > before, "counted as held");
}
