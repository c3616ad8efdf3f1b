//! Restarts: after the server is killed with SIGKILL, or stopped with SIGTERM, and started again
//! on the same database, a client reconnects and resumes from the durable log with nothing lost
//! and nothing twice.

mod binary;
#[path = "../crates/server/tests/common/mod.rs"]
mod common;

use binary::{start, start_capturing, TOKEN};
use common::{Backend, TestDb};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use taskflow_server::store::Store;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(20);

async fn connect(addr: &str) -> Socket {
    let mut request = format!("ws://{addr}/ws/tasks?auto=false")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let hello = next(&mut socket).await.expect("hello");
    assert_eq!(hello["type"], "hello");
    socket
}

/// The next text frame, or `None` when the connection ends (closed or killed).
async fn next(socket: &mut Socket) -> Option<Value> {
    loop {
        match tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a frame or the end in time")
        {
            Some(Ok(Message::Text(text))) => return Some(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

async fn subscribe(socket: &mut Socket, since: Option<Value>) -> Value {
    let mut command = json!({ "type": "subscribe", "room": "project:default", "id": "s" });
    if let Some(since) = since {
        command["since"] = since;
    }
    socket
        .send(Message::text(command.to_string()))
        .await
        .unwrap();
    loop {
        let frame = next(socket).await.expect("the answer");
        if frame["id"] == "s" {
            assert_eq!(frame["ok"], true, "{frame}");
            return frame["result"].clone();
        }
    }
}

/// Writes tasks until the server stops answering; returns the ids answered 201.
fn writer(addr: String, acked: Arc<Mutex<Vec<String>>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        for i in 0.. {
            let res = client
                .post(format!("http://{addr}/tasks"))
                .bearer_auth(TOKEN)
                .json(&json!({ "title": format!("t{i}") }))
                .send()
                .await;
            let Ok(res) = res else { break };
            if res.status() != 201 {
                break;
            }
            let Ok(task) = res.json::<Value>().await else {
                break;
            };
            acked
                .lock()
                .unwrap()
                .push(task["id"].as_str().unwrap().to_owned());
        }
    })
}

enum Stop {
    Kill,
    Term,
}

async fn restart_and_resume(stop: Stop) {
    let db = TestDb::new(Backend::Sqlite).await;
    // Logged at info, into a pipe: what a log file or collector receives.
    let (mut child, addr, output) = start_capturing(&db.url, &[("TASKFLOW_LOG_LEVEL", "info")]);
    let mut socket = connect(&addr).await;
    let answer = subscribe(&mut socket, None).await;
    let epoch = answer["epoch"].clone();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let writing = writer(addr.clone(), acked.clone());
    let mut received: Vec<Value> = Vec::new();
    while received.len() < 100 {
        let frame = next(&mut socket)
            .await
            .expect("events while the server runs");
        if frame["type"] == "event" {
            received.push(frame);
        }
    }
    stop_server(&mut child, &stop);
    let mut saw_close = false;
    while let Some(frame) = next(&mut socket).await {
        if frame["type"] == "event" {
            received.push(frame);
        }
        saw_close = true;
    }
    let _ = saw_close;
    writing.await.unwrap();
    let logs = output.lines_after_exit();
    if matches!(stop, Stop::Term) {
        assert!(
            logs.iter().any(|l| l.contains("shutting down")),
            "the shutdown is logged at info: {logs:?}"
        );
    }
    for line in &logs {
        assert!(
            !line.contains("\x1b["),
            "no colour codes in logs written to a pipe: {line:?}"
        );
    }

    let (mut child, addr) = start(&db.url);
    let last = received.last().unwrap()["offset"].clone();
    let mut socket = connect(&addr).await;
    let answer = subscribe(&mut socket, Some(json!({ "epoch": epoch, "offset": last }))).await;
    assert_eq!(answer["recovered"], true, "the log survived: {answer}");
    assert_eq!(answer["epoch"], epoch, "same database, same epoch");
    // More writes after the restart, then read up to the end of the log.
    let mut more: Vec<String> = Vec::new();
    let client = reqwest::Client::new();
    for i in 0..20 {
        let res = client
            .post(format!("http://{addr}/tasks"))
            .bearer_auth(TOKEN)
            .json(&json!({ "title": format!("after {i}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let task: Value = res.json().await.unwrap();
        more.push(task["id"].as_str().unwrap().to_owned());
    }
    let store = Store::connect(&db.url).await.unwrap();
    let end = store.last_offset("project:default").await.unwrap();
    while received.last().unwrap()["offset"].as_i64().unwrap() < end {
        let frame = next(&mut socket).await.expect("the rest of the log");
        if frame["type"] == "event" {
            received.push(frame);
        }
    }
    let offsets: Vec<i64> = received
        .iter()
        .map(|f| f["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(
        offsets,
        (1..=end).collect::<Vec<_>>(),
        "nothing lost, nothing twice, in order"
    );
    let ids: HashSet<&str> = received
        .iter()
        .map(|f| f["data"]["id"].as_str().unwrap())
        .collect();
    let acked = acked.lock().unwrap().clone();
    for id in acked.iter().chain(more.iter()) {
        assert!(
            ids.contains(id.as_str()),
            "acknowledged task {id} was delivered"
        );
    }
    store.close().await;
    child.kill().unwrap();
    child.wait().unwrap();
}

fn stop_server(child: &mut Child, stop: &Stop) {
    match stop {
        Stop::Kill => child.kill().unwrap(),
        Stop::Term => {
            let status = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_after_sigkill_and_restart() {
    restart_and_resume(Stop::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_after_a_clean_restart() {
    restart_and_resume(Stop::Term).await;
}
