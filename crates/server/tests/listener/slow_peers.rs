//! Slow and idle peers cannot hold the server: header timeout, body rate, keep-alive timeout.

use crate::common::{Backend, TestApp, ADMIN_TOKEN};
use crate::raw::{connect_from, dribble, get_from, read_response, read_until_closed, send};
use std::time::Duration;

const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// One byte every 200 ms, as the slowloris in issue 14.
const DRIBBLE: Duration = Duration::from_millis(200);

async fn app() -> TestApp {
    TestApp::spawn_with(Backend::Sqlite, |config| {
        config.header_timeout_secs = HEADER_TIMEOUT.as_secs();
        config.keepalive_timeout_secs = 1;
        config.body_min_bytes_per_sec = 100;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_handshake_dribbled_byte_by_byte_is_cut_at_the_header_timeout() {
    let app = app().await;
    let handshake = format!(
        "GET /ws/tasks?access_token={ADMIN_TOKEN} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        app.addr
    );
    // Sent in full, it would take far longer than the timeout.
    assert!(DRIBBLE * handshake.len() as u32 > HEADER_TIMEOUT * 5);
    let (mut read, mut write) = connect_from([127, 0, 0, 1], app.addr).await.into_split();
    let writer =
        tokio::spawn(async move { dribble(&mut write, handshake.as_bytes(), DRIBBLE).await });

    // Other clients are answered meanwhile.
    for _ in 0..3 {
        let res = get_from([127, 0, 0, 1], app.addr, "/healthz").await;
        assert_eq!(res.status, 200);
    }
    let (received, after) = read_until_closed(&mut read).await;
    assert!(
        received.is_empty(),
        "no answer, no upgrade: {:?}",
        String::from_utf8_lossy(&received)
    );
    assert!(
        after < HEADER_TIMEOUT + Duration::from_secs(3),
        "cut after {after:?}, the header timeout is {HEADER_TIMEOUT:?}"
    );
    writer.abort();
    assert!(app
        .metrics()
        .await
        .contains("http_connections_cut_total{reason=\"header_timeout\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_request_dribbled_byte_by_byte_is_cut_too() {
    let app = app().await;
    let request = format!(
        "GET /tasks HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n",
        app.addr
    );
    let (mut read, mut write) = connect_from([127, 0, 0, 1], app.addr).await.into_split();
    let writer =
        tokio::spawn(async move { dribble(&mut write, request.as_bytes(), DRIBBLE).await });
    let (received, after) = read_until_closed(&mut read).await;
    assert!(received.is_empty());
    assert!(
        after < HEADER_TIMEOUT + Duration::from_secs(3),
        "cut after {after:?}"
    );
    let sent = writer.await.unwrap();
    assert!(
        sent < 40,
        "the connection was cut mid-headers, after {sent} bytes"
    );
}

/// A body sent at 5 bytes/s against a minimum of 100 bytes/s: the handler's read fails, the
/// server answers and closes, long before the request timeout (30 s).
async fn a_slow_body_is_cut(path: &str, content_type: &str) {
    let app = app().await;
    let body = "x".repeat(1000);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        app.addr,
        body.len()
    );
    let (mut read, mut write) = connect_from([127, 0, 0, 1], app.addr).await.into_split();
    use tokio::io::AsyncWriteExt;
    write.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move { dribble(&mut write, body.as_bytes(), DRIBBLE).await });
    let (received, after) = read_until_closed(&mut read).await;
    let answer = String::from_utf8_lossy(&received);
    assert!(
        answer.starts_with("HTTP/1.1 4"),
        "an error answer: {answer}"
    );
    assert!(answer.contains("slower than 100 bytes/s"), "{answer}");
    assert!(after < Duration::from_secs(10), "cut after {after:?}");
    let sent = writer.await.unwrap();
    assert!(
        sent < 1000,
        "cut before the body was complete ({sent} bytes sent)"
    );
    let res = get_from([127, 0, 0, 1], app.addr, "/healthz").await;
    assert_eq!(res.status, 200, "the server keeps answering");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_rest_body_is_cut() {
    a_slow_body_is_cut("/tasks", "application/json").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_import_body_is_cut_although_imports_have_no_request_timeout() {
    a_slow_body_is_cut("/tasks/import", "application/x-ndjson").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keepalive_connection_is_closed_after_the_keepalive_timeout() {
    let app = app().await;
    let mut stream = connect_from([127, 0, 0, 1], app.addr).await;
    for _ in 0..2 {
        send(
            &mut stream,
            &format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", app.addr),
        )
        .await;
        let res = read_response(&mut stream).await;
        assert_eq!(res.status, 200);
        assert_ne!(res.header("connection"), Some("close"), "kept alive");
    }
    let (received, after) = read_until_closed(&mut stream).await;
    assert!(received.is_empty());
    assert!(
        after < Duration::from_secs(5),
        "closed after {after:?}, keep-alive timeout 1 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_its_responses_is_cut_at_the_send_timeout() {
    const SEND_TIMEOUT: Duration = Duration::from_secs(1);
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.send_timeout_secs = SEND_TIMEOUT.as_secs();
    })
    .await;
    // A small receive window, so the server's writes back up soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    // Pipelined requests for a large document, whose answers are never read: far more than the
    // socket buffers on both sides hold.
    let request = format!("GET /openapi.json HTTP/1.1\r\nHost: {}\r\n\r\n", app.addr);
    let size = get_from([127, 0, 0, 1], app.addr, "/openapi.json")
        .await
        .body
        .len();
    let count = 64 * 1024 * 1024 / size.max(1) + 1;
    let writer = tokio::spawn(async move {
        for _ in 0..count {
            if tokio::io::AsyncWriteExt::write_all(&mut write, request.as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
        write
    });
    let cut = "http_connections_cut_total{reason=\"send_timeout\"}";
    let start = std::time::Instant::now();
    while !app.metrics().await.contains(cut) {
        assert!(
            start.elapsed() < SEND_TIMEOUT + crate::raw::BOUND,
            "the stalled connection was not cut"
        );
        // Others are answered meanwhile.
        assert_eq!(
            get_from([127, 0, 0, 2], app.addr, "/healthz").await.status,
            200
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What the server had already written is still delivered, then the connection ends.
    let (received, _) = read_until_closed(&mut read).await;
    assert!(
        received.starts_with(b"HTTP/1.1 200"),
        "the answers began: {:?}",
        String::from_utf8_lossy(&received[..received.len().min(80)])
    );
    assert!(
        received.len() < count * size,
        "not every answer was written"
    );
    writer.abort();
}
