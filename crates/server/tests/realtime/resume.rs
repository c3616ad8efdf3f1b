use crate::common::{Backend, TestApp, ADMIN_TOKEN};
use crate::proxy::Proxy;
use crate::sse_client::SseReader;
use crate::ws::Ws;
use futures::StreamExt;
use serde_json::{json, Value};

crate::on_both_backends!(
    a_cut_websocket_resumes_exactly,
    sse_resumes_with_last_event_id,
    long_polling_delivers_every_event_once,
    events_committed_during_a_replay_are_neither_lost_nor_duplicated,
    a_resent_chat_message_is_not_duplicated,
);

/// Creates `n` tasks in `project`, `concurrency` at a time, in the background.
fn write(
    app: &TestApp,
    project: &str,
    n: usize,
    concurrency: usize,
    description: &str,
) -> tokio::task::JoinHandle<()> {
    let (client, url, project, description) = (
        app.client.clone(),
        app.url("/tasks"),
        project.to_owned(),
        description.to_owned(),
    );
    tokio::spawn(async move {
        let writes = futures::stream::iter(0..n)
            .map(|i| {
                let request = client
                    .post(url.clone())
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&json!({ "title": format!("t{i}"), "project_id": project, "description": description }));
                async move { request.send().await.unwrap().status().as_u16() }
            })
            .buffer_unordered(concurrency);
        let statuses: Vec<u16> = writes.collect().await;
        assert!(statuses.iter().all(|&s| s == 201), "every write succeeds");
    })
}

fn offsets_of(frames: &[Value], room: &str) -> Vec<i64> {
    frames
        .iter()
        .filter(|f| f["type"] == "event" && f["room"] == room)
        .map(|f| f["offset"].as_i64().unwrap())
        .collect()
}

/// Reads events of `room` until `last` arrives.
async fn read_until(ws: &mut Ws, room: &str, last: i64, into: &mut Vec<Value>) {
    while offsets_of(into, room).last().copied().unwrap_or(i64::MIN) < last {
        into.push(ws.next().await);
    }
}

async fn a_cut_websocket_resumes_exactly(app: TestApp) {
    app.create_project("r", &[]).await;
    let proxy = Proxy::start(app.addr).await;
    let mut ws = Ws::connect_at(proxy.addr, ADMIN_TOKEN).await;
    let answer = ws.subscribe("project:r").await["result"].clone();
    let (epoch, start) = (answer["epoch"].clone(), answer["offset"].as_i64().unwrap());
    let writer = write(&app, "r", 1000, 16, "");
    let mut frames = Vec::new();
    while offsets_of(&frames, "project:r").len() < 200 {
        frames.push(ws.next().await);
    }
    proxy.cut();
    while let Some(frame) = ws.try_next().await {
        frames.push(frame);
    }
    let last = *offsets_of(&frames, "project:r").last().unwrap();
    assert!(last < start + 1000, "the cut happened mid-stream");
    let mut ws = Ws::connect_at(proxy.addr, ADMIN_TOKEN).await;
    let reply = ws
        .request(json!({ "type": "subscribe", "room": "project:r", "since": { "epoch": epoch, "offset": last } }))
        .await;
    assert_eq!(reply["result"]["recovered"], true, "{reply}");
    read_until(&mut ws, "project:r", start + 1000, &mut frames).await;
    writer.await.unwrap();
    assert_eq!(
        offsets_of(&frames, "project:r"),
        ((start + 1)..=(start + 1000)).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_closed_by_the_server_resumes_exactly_sqlite() {
    a_slow_consumer_closed_by_the_server_resumes_exactly(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_closed_by_the_server_resumes_exactly_postgres() {
    a_slow_consumer_closed_by_the_server_resumes_exactly(Backend::Postgres).await;
}

async fn a_slow_consumer_closed_by_the_server_resumes_exactly(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.ws_queue_messages = 32;
        c.ws_queue_bytes = 128 * 1024;
    })
    .await;
    app.create_project("r", &[]).await;
    // A reader that does not read while 1,000 large events are written: the server cuts it.
    let mut ws = Ws::connect_small_buffer(app.addr, ADMIN_TOKEN).await;
    let answer = ws.subscribe("project:r").await["result"].clone();
    let (epoch, start) = (answer["epoch"].clone(), answer["offset"].as_i64().unwrap());
    write(&app, "r", 1000, 8, &"x".repeat(9_000)).await.unwrap();
    let mut frames = Vec::new();
    // Read the backlog: it ends with the slow-consumer close, or, if the close frame could not
    // get through the full socket in time, with the connection dropped. Either way the server
    // cut it off before the end.
    loop {
        let next = tokio::time::timeout(crate::ws::WAIT, ws.stream.next()).await;
        let next = next.unwrap_or_else(|_| panic!("stuck after {} frames", frames.len()));
        match next {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                frames.push(serde_json::from_str(&text).unwrap())
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(close)))) => {
                assert_eq!(u16::from(close.code), 4008);
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    let last = offsets_of(&frames, "project:r")
        .last()
        .copied()
        .unwrap_or(start);
    assert!(
        last < start + 1000,
        "the server cut the reader before the end"
    );
    let mut ws = Ws::connect_at(app.addr, ADMIN_TOKEN).await;
    let reply = ws
        .request(json!({ "type": "subscribe", "room": "project:r", "since": { "epoch": epoch, "offset": last } }))
        .await;
    assert_eq!(reply["result"]["recovered"], true);
    read_until(&mut ws, "project:r", start + 1000, &mut frames).await;
    assert_eq!(
        offsets_of(&frames, "project:r"),
        ((start + 1)..=(start + 1000)).collect::<Vec<_>>()
    );
}

async fn sse_resumes_with_last_event_id(app: TestApp) {
    app.create_project("r", &[]).await;
    let url = app.url("/events?rooms=project:r");
    let mut sse = SseReader::open(&url, ADMIN_TOKEN, None).await;
    let subscribed = sse.next().await;
    assert_eq!(subscribed.data["type"], "subscribed");
    assert_eq!(subscribed.data["recovered"], true);
    let start = subscribed.data["offset"].as_i64().unwrap();
    let writer = write(&app, "r", 1000, 16, "");
    let mut offsets = Vec::new();
    let mut last_id = subscribed.id.clone();
    while offsets.len() < 300 {
        let event = sse.next().await;
        if event.data["type"] == "event" {
            offsets.push(event.data["offset"].as_i64().unwrap());
            last_id = event.id.clone();
        }
    }
    drop(sse); // the client goes away mid-stream
    let mut sse = SseReader::open(&url, ADMIN_TOKEN, last_id.as_deref()).await;
    let again = sse.next().await;
    assert_eq!(again.data["type"], "subscribed");
    assert_eq!(again.data["recovered"], true, "{}", again.data);
    while offsets.last() != Some(&(start + 1000)) {
        let event = sse.next().await;
        if event.data["type"] == "event" {
            offsets.push(event.data["offset"].as_i64().unwrap());
        }
    }
    writer.await.unwrap();
    assert_eq!(offsets, ((start + 1)..=(start + 1000)).collect::<Vec<_>>());
}

async fn long_polling_delivers_every_event_once(app: TestApp) {
    app.create_project("r", &[]).await;
    let poll = |cursor: Option<String>| {
        let mut url = app.url("/poll?rooms=project:r&timeout=10");
        if let Some(c) = cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let request = app.client.get(url).bearer_auth(ADMIN_TOKEN);
        async move {
            let res = request.send().await.unwrap();
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()
        }
    };
    let first = poll(None).await;
    assert_eq!(
        first["events"],
        json!([]),
        "a first poll answers at once with the cursor"
    );
    let mut cursor = first["cursor"].as_str().unwrap().to_owned();
    let writer = write(&app, "r", 1000, 16, "");
    let mut offsets = Vec::new();
    while offsets.len() < 1000 {
        let answer = poll(Some(cursor.clone())).await;
        assert_eq!(answer["recovered"], true);
        offsets.extend(
            answer["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["offset"].as_i64().unwrap()),
        );
        cursor = answer["cursor"].as_str().unwrap().to_owned();
    }
    writer.await.unwrap();
    assert_eq!(offsets, (1..=1000).collect::<Vec<_>>());
    // A poll repeated with an old cursor (a proxy cut the answer) gets the same events again.
    let again = poll(Some(first["cursor"].as_str().unwrap().to_owned())).await;
    assert_eq!(again["events"][0]["offset"], 1);
}

async fn events_committed_during_a_replay_are_neither_lost_nor_duplicated(app: TestApp) {
    app.create_project("r", &[]).await;
    let epoch = app.store.epoch().to_owned();
    write(&app, "r", 200, 16, "").await.unwrap();
    for round in 0..10 {
        // Writers keep committing while the client resumes from 150 events back.
        let writer = write(&app, "r", 100, 8, "");
        let since = app.store.last_offset("project:r").await.unwrap() - 150;
        let mut ws = Ws::connect_at(app.addr, ADMIN_TOKEN).await;
        let reply = ws
            .request(json!({ "type": "subscribe", "room": "project:r", "since": { "epoch": epoch, "offset": since } }))
            .await;
        assert_eq!(reply["result"]["recovered"], true);
        writer.await.unwrap();
        let last = app.store.last_offset("project:r").await.unwrap();
        let mut frames = Vec::new();
        read_until(&mut ws, "project:r", last, &mut frames).await;
        assert_eq!(
            offsets_of(&frames, "project:r"),
            ((since + 1)..=last).collect::<Vec<_>>(),
            "round {round}"
        );
    }
}

async fn a_resent_chat_message_is_not_duplicated(app: TestApp) {
    app.create_project("chat", &["alice"]).await;
    let token = app.token_for("alice").await;
    let message =
        json!({ "type": "message", "room": "project:chat", "text": "hello", "id": "m-1" });
    let mut ws = Ws::connect(&app, &token).await;
    ws.send(message.clone()).await;
    let first = ws.next_of("reply").await;
    drop(ws);
    let mut ws = Ws::connect(&app, &token).await;
    ws.send(message).await;
    let again = ws.next_of("reply").await;
    assert_eq!(again["id"], "m-1");
    assert_eq!(
        again["result"], first["result"],
        "the resend gets the first answer"
    );
    let log = app
        .store
        .events_after("project:chat", 0, 100)
        .await
        .unwrap();
    let messages = log
        .iter()
        .filter(|e| e.event.as_str() == "message.created")
        .count();
    assert_eq!(messages, 1);
}

#[tokio::test]
async fn resume_from_before_retention_or_another_epoch_is_not_recovered() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.retention_max_events = 5).await;
    app.create_project("r", &[]).await;
    for i in 0..20 {
        app.create_task(json!({ "title": format!("t{i}"), "project_id": "r" }))
            .await;
    }
    app.store
        .compact(5, i64::MAX / 2, i64::MAX / 2)
        .await
        .unwrap();
    assert_eq!(
        app.store.oldest_offset("project:r").await.unwrap(),
        Some(16)
    );
    let epoch = app.store.epoch().to_owned();
    let mut ws = Ws::connect_at(app.addr, ADMIN_TOKEN).await;
    let reply = ws
        .request(json!({ "type": "subscribe", "room": "project:r", "since": { "epoch": epoch, "offset": 3 } }))
        .await;
    assert_eq!(reply["result"]["recovered"], false, "events 4..15 are gone");
    assert_eq!(reply["result"]["offset"], 20);
    assert_eq!(reply["result"]["epoch"], epoch.as_str());
    // Nothing is replayed: the next event is a new one.
    app.create_task(json!({ "title": "new", "project_id": "r" }))
        .await;
    assert_eq!(ws.next_of("event").await["offset"], 21);

    let mut ws = Ws::connect_at(app.addr, ADMIN_TOKEN).await;
    let reply = ws
        .request(json!({ "type": "subscribe", "room": "project:r", "since": { "epoch": epoch, "offset": 15 } }))
        .await;
    assert_eq!(reply["result"]["recovered"], true, "16.. are retained");
    let replayed: Vec<i64> = {
        let mut v = Vec::new();
        while v.len() < 6 {
            v.push(ws.next_of("event").await["offset"].as_i64().unwrap());
        }
        v
    };
    assert_eq!(replayed, [16, 17, 18, 19, 20, 21]);

    let mut ws = Ws::connect_at(app.addr, ADMIN_TOKEN).await;
    let reply = ws
        .request(json!({ "type": "subscribe", "room": "project:r", "since": { "epoch": "another-history", "offset": 20 } }))
        .await;
    assert_eq!(reply["result"]["recovered"], false, "another epoch");

    // The same signal on SSE and long polling.
    let stale = base64_cursor(&epoch, "project:r", 3);
    let mut sse = SseReader::open(
        &app.url("/events?rooms=project:r"),
        ADMIN_TOKEN,
        Some(&stale),
    )
    .await;
    let subscribed = sse.next().await;
    assert_eq!(subscribed.data["type"], "subscribed");
    assert_eq!(subscribed.data["recovered"], false);
    let answer: Value = app
        .client
        .get(app.url(&format!("/poll?rooms=project:r&cursor={stale}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["recovered"], false);
    assert_eq!(answer["events"], json!([]));
}

fn base64_cursor(epoch: &str, room: &str, offset: i64) -> String {
    use base64::Engine;
    let json = json!({ "e": epoch, "o": { room: offset } }).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_client_resumes_after_a_cut() {
    terminal_client_resumes_after_a_cut(false).await;
}

/// The same against a server that compresses: the client's inflating layer under tungstenite
/// reads every compressed event, across the cut too (that it negotiates compression at all is
/// `the_terminal_client_reports_compressed_events_when_both_sides_want_them`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_client_resumes_after_a_cut_with_compressed_events() {
    terminal_client_resumes_after_a_cut(true).await;
}

async fn terminal_client_resumes_after_a_cut(compress: bool) {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        if compress {
            c.ws_compression = taskflow_server::config::Switch::On;
        }
    })
    .await;
    app.create_project("r", &[]).await;
    let proxy = Proxy::start(app.addr).await;
    let (client, mut lines, stop_tx) = terminal_client(
        &format!("ws://{}/ws/tasks", proxy.addr),
        "project:r",
        true,
        true,
    );
    let mut offsets = Vec::new();
    async fn next_event(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> i64 {
        loop {
            let line = tokio::time::timeout(crate::ws::WAIT, lines.recv())
                .await
                .unwrap()
                .unwrap();
            let frame: Value = serde_json::from_str(&line).unwrap();
            if frame["type"] == "event" {
                return frame["offset"].as_i64().unwrap();
            }
            if frame["type"] == "reply" {
                assert_eq!(frame["result"]["recovered"], true, "{frame}");
            }
        }
    }
    // Write only once the client is subscribed (its answer is printed).
    loop {
        let line = tokio::time::timeout(crate::ws::WAIT, lines.recv())
            .await
            .unwrap()
            .unwrap();
        if line.contains(r#""id":"sub-0""#) {
            break;
        }
    }
    let writer = write(&app, "r", 300, 8, "");
    while offsets.len() < 100 {
        offsets.push(next_event(&mut lines).await);
    }
    proxy.cut();
    while offsets.len() < 300 {
        offsets.push(next_event(&mut lines).await);
    }
    writer.await.unwrap();
    assert_eq!(
        offsets,
        (1..=300).collect::<Vec<_>>(),
        "resumed after the cut: nothing lost, nothing twice"
    );
    stop_tx.send(()).unwrap();
    client.await.unwrap().unwrap();
}

/// The terminal client says when events come compressed, and they do only when it offers and
/// the server is configured to (a task event, inflated, is printed either way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_client_reports_compressed_events_when_both_sides_want_them() {
    for (server, client, expected) in [
        (true, true, true),
        (true, false, false),
        (false, true, false),
    ] {
        let app = TestApp::spawn_with(Backend::Sqlite, |c| {
            if server {
                c.ws_compression = taskflow_server::config::Switch::On;
            }
        })
        .await;
        let (run, mut lines, stop_tx) = terminal_client(
            &format!("ws://{}/ws/tasks", app.addr),
            "project:default",
            false,
            client,
        );
        let connected = next_line(&mut lines).await;
        assert!(connected.starts_with("Connected to "), "{connected}");
        assert_eq!(
            connected.ends_with("(events compressed)"),
            expected,
            "server {server}, client {client}: {connected}"
        );
        assert_eq!(next_line(&mut lines).await, "Waiting for events...");
        // "Waiting" is printed once the subscribe is sent, not answered: a task created before
        // the server took it would not be broadcast to this client, so another is created each
        // second until one is printed. A long description makes the event worth compressing.
        let description = "compressed or not, the same words ".repeat(8);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        'printed: for attempt in 0.. {
            let title = format!("reported {attempt}");
            app.create_task(json!({ "title": title, "description": description }))
                .await;
            let wait = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
            loop {
                match tokio::time::timeout_at(wait.min(deadline), lines.recv()).await {
                    Ok(Some(line)) if line.contains("reported ") => break 'printed,
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("the client stopped"),
                    Err(_) => {
                        assert!(tokio::time::Instant::now() < deadline, "no event printed");
                        break;
                    }
                }
            }
        }
        stop_tx.send(()).unwrap();
        run.await.unwrap().unwrap();
    }
}

/// The terminal client following `room` at `url` as the admin, quick to reconnect: its task,
/// the lines it prints, and the switch that stops it.
fn terminal_client(
    url: &str,
    room: &str,
    json: bool,
    compression: bool,
) -> (
    tokio::task::JoinHandle<Result<(), taskflow_client::session::ClientError>>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (lines_tx, lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let out = LineWriter {
        tx: lines_tx,
        partial: Vec::new(),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let options = taskflow_client::ClientOptions {
        ca_cert: None,
        url: url.to_owned(),
        token: ADMIN_TOKEN.into(),
        rooms: vec![room.to_owned()],
        json,
        backoff_base: std::time::Duration::from_millis(50),
        backoff_cap: std::time::Duration::from_millis(200),
        compression,
    };
    let client = tokio::spawn(taskflow_client::run(options, out, async {
        let _ = stop_rx.await;
    }));
    (client, lines, stop_tx)
}

async fn next_line(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(std::time::Duration::from_secs(10), lines.recv())
        .await
        .expect("the client prints")
        .expect("the client runs")
}

/// An `io::Write` that sends each complete line to a channel.
struct LineWriter {
    tx: tokio::sync::mpsc::UnboundedSender<String>,
    partial: Vec<u8>,
}

impl std::io::Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let _ = self
                .tx
                .send(String::from_utf8_lossy(&line).trim_end().to_owned());
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tasks_room_resumes_every_project() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.create_project("a", &[]).await;
    app.create_project("b", &[]).await;
    let mut ws = Ws::connect_at(app.addr, ADMIN_TOKEN).await;
    let answer = ws.subscribe("tasks").await["result"].clone();
    assert_eq!(answer["offsets"]["project:a"], 0);
    assert_eq!(answer["offsets"]["project:b"], 0);
    let epoch = answer["epoch"].clone();
    for (project, n) in [("a", 3), ("b", 2)] {
        for i in 0..n {
            app.create_task(json!({ "title": format!("{project}{i}"), "project_id": project }))
                .await;
        }
    }
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let e = ws.next_of("event").await;
        seen.push((
            e["room"].as_str().unwrap().to_owned(),
            e["offset"].as_i64().unwrap(),
        ));
    }
    drop(ws);
    // While away: two more in a, one in b, and a chat message (not a task event).
    app.create_task(json!({ "title": "a3", "project_id": "a" }))
        .await;
    app.create_task(json!({ "title": "a4", "project_id": "a" }))
        .await;
    app.create_task(json!({ "title": "b2", "project_id": "b" }))
        .await;
    app.store
        .post_message(
            &taskflow_server::domain::ProjectId::parse("b").unwrap(),
            &taskflow_server::domain::UserId::parse("admin", "u").unwrap(),
            "hi",
            None,
        )
        .await
        .unwrap();
    let mut ws = Ws::connect_at(app.addr, ADMIN_TOKEN).await;
    let since = json!({ "epoch": epoch, "offsets": { "project:a": 3, "project:b": 2, "project:default": 0 } });
    let reply = ws
        .request(json!({ "type": "subscribe", "room": "tasks", "since": since }))
        .await;
    assert_eq!(reply["result"]["recovered"], true, "{reply}");
    app.create_task(json!({ "title": "b-live", "project_id": "b" }))
        .await;
    let mut resumed = Vec::new();
    while resumed.len() < 4 {
        let e = ws.next_of("event").await;
        assert!(
            e["event"].as_str().unwrap().starts_with("task."),
            "tasks carries task events only: {e}"
        );
        resumed.push((
            e["room"].as_str().unwrap().to_owned(),
            e["offset"].as_i64().unwrap(),
        ));
    }
    let expected: Vec<(String, i64)> = [
        ("project:a", 4),
        ("project:a", 5),
        ("project:b", 3),
        ("project:b", 5),
    ]
    .iter()
    .map(|(r, o)| (r.to_string(), *o))
    .collect();
    assert_eq!(
        resumed, expected,
        "missed events per project, then live (b:4 is the chat message)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_several_rooms_with_a_backlog_larger_than_the_queue() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.ws_queue_messages = 64).await;
    app.create_project("a", &[]).await;
    app.create_project("b", &[]).await;
    let url = app.url("/events?rooms=project:a,project:b");
    let mut sse = SseReader::open(&url, ADMIN_TOKEN, None).await;
    let mut last_id = None;
    for _ in 0..2 {
        let subscribed = sse.next().await;
        assert_eq!(subscribed.data["type"], "subscribed");
        last_id = subscribed.id;
    }
    drop(sse);
    // Far more missed events than the 64-frame queue holds, in both rooms.
    write(&app, "a", 300, 16, "").await.unwrap();
    write(&app, "b", 100, 16, "").await.unwrap();
    let mut sse = SseReader::open(&url, ADMIN_TOKEN, last_id.as_deref()).await;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    while a.len() < 300 || b.len() < 100 {
        let event = sse.next().await;
        match (event.data["type"].as_str(), event.data["room"].as_str()) {
            (Some("subscribed"), _) => assert_eq!(event.data["recovered"], true),
            (Some("event"), Some("project:a")) => a.push(event.data["offset"].as_i64().unwrap()),
            (Some("event"), Some("project:b")) => b.push(event.data["offset"].as_i64().unwrap()),
            _ => {}
        }
    }
    assert_eq!(a, (1..=300).collect::<Vec<_>>());
    assert_eq!(b, (1..=100).collect::<Vec<_>>());
}
