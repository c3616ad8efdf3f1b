//! `taskflow client` turned away by a node that cannot take it now: the real binary against a
//! real server at its connection limit (one connection, held by the test). The server answers
//! the client's handshake with 503 and `Retry-After`; the client says so, waits at least that
//! long (with jitter on top), gets in once the place is free, and follows the events written
//! after. The delay itself is unit-tested in crates/client/src/backoff.rs.

mod binary;

use binary::{start_with, TOKEN};
use futures::StreamExt;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const WAIT: Duration = Duration::from_secs(20);

/// Ends a child process even when an assertion fails first.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The client's standard output, one JSON line at a time, each with when the test read it.
struct Lines(mpsc::UnboundedReceiver<(Instant, String)>);

impl Lines {
    async fn next(&mut self) -> (Instant, Value) {
        let (at, line) = tokio::time::timeout(WAIT, self.0.recv())
            .await
            .expect("the client prints a line in time")
            .expect("the client is still running");
        let value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("--json prints JSON lines ({e}): {line}"));
        (at, value)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_client_waits_out_a_503s_retry_after_then_gets_in() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("retry.db").display());
    let (server, addr) = start_with(
        &database,
        &[
            ("TASKFLOW_WS_MAX_CONNECTIONS", "1"),
            ("TASKFLOW_WS_RETRY_AFTER_SECS", "1"),
        ],
    );
    let _server = KillOnDrop(server);

    // The node's one connection, held here until the client has been refused.
    let mut request = format!("ws://{addr}/ws/tasks")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (mut held, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    held.next().await.expect("hello").unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_taskflow"))
        .args(["client", "--json", "--room", "project:default", "--url"])
        .arg(format!("ws://{addr}/ws/tasks"))
        .env("TASKFLOW_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the taskflow binary starts");
    let stdout = child.stdout.take().unwrap();
    let _client = KillOnDrop(child);
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let mut lines = Lines(rx);

    // Refused, and told how long to stay away: the client reports it and a wait at least that.
    let refused = |news: &Value| -> u64 {
        assert_eq!(news["type"], "client.reconnecting", "{news}");
        assert_eq!(news["status"], 503, "{news}");
        assert_eq!(news["refusal"], "server_full", "{news}");
        let retry_after = news["retry_after_secs"].as_u64().expect("retry_after_secs");
        assert!(
            (1..=2).contains(&retry_after),
            "the server jitters Retry-After between ws_retry_after_secs and twice that: {news}"
        );
        let retry_in_ms = news["retry_in_ms"].as_u64().unwrap();
        assert!(
            retry_in_ms >= retry_after * 1000,
            "the client waits at least the Retry-After: {news}"
        );
        retry_after
    };
    let (mut refused_at, news) = lines.next().await;
    let mut retry_after = refused(&news);

    // The place is free; the client comes in after its wait (refused again meanwhile if it
    // comes before the server has let the held connection go: the same rules apply).
    held.close(None).await.unwrap();
    tokio::time::timeout(WAIT, async { while held.next().await.is_some() {} })
        .await
        .expect("the server answers the close");
    loop {
        let (at, frame) = lines.next().await;
        if frame["type"] == "client.reconnecting" {
            retry_after = refused(&frame);
            refused_at = at;
            continue;
        }
        assert_eq!(frame["type"], "hello", "{frame}");
        let waited = at - refused_at;
        assert!(
            waited >= Duration::from_secs(retry_after),
            "the client came back after {waited:?}, before the server's Retry-After of {retry_after} s"
        );
        break;
    }

    // Subscribed to the project and its user's room, it follows what is written now.
    let mut subscribed = 0;
    while subscribed < 2 {
        let (_, frame) = lines.next().await;
        if frame["type"] == "reply" {
            assert_eq!(frame["ok"], true, "{frame}");
            subscribed += 1;
        }
    }
    let created = reqwest::Client::new()
        .post(format!("http://{addr}/tasks"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "title": "after the refusal" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    loop {
        let (_, frame) = lines.next().await;
        if frame["type"] == "event" && frame["event"] == "task.created" {
            assert_eq!(frame["room"], "project:default", "{frame}");
            assert_eq!(frame["data"]["title"], "after the refusal", "{frame}");
            break;
        }
    }
}
