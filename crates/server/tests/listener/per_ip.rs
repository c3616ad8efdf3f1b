//! `max_connections_per_ip`: the N+1st connection from one address is refused with a 503, and
//! admitted again once one closes; forwarded clients of trusted proxies are counted per request.

use crate::common::{Backend, TestApp};
use crate::raw::{connect_from, get_from, read_response, send, BOUND};
use std::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Polls `GET /healthz` from `from` on new connections until one is answered 200, and returns
/// that connection (open: it holds a place).
async fn until_admitted(app: &TestApp, from: [u8; 4]) -> tokio::net::TcpStream {
    let start = Instant::now();
    loop {
        let mut stream = connect_from(from, app.addr).await;
        send(
            &mut stream,
            &format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", app.addr),
        )
        .await;
        let res = read_response(&mut stream).await;
        if res.status == 200 {
            return stream;
        }
        assert_eq!(res.status, 503);
        assert!(start.elapsed() < BOUND, "never admitted again");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_refuses_the_next_connection_and_admits_again_when_one_closes() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.max_connections_per_ip = 2;
    })
    .await;
    // (Not `app.client`: its pooled connection would hold a place.)
    let token = crate::common::ADMIN_TOKEN;
    // One place held by an idle HTTP connection, one by a WebSocket (its socket keeps the
    // place after the upgrade).
    let mut idle = connect_from([127, 0, 0, 1], app.addr).await;
    send(
        &mut idle,
        &format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", app.addr),
    )
    .await;
    assert_eq!(read_response(&mut idle).await.status, 200);
    let mut request = format!("ws://{}/ws/tasks", app.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let ws = tokio_tungstenite::client_async(request, connect_from([127, 0, 0, 1], app.addr).await)
        .await
        .expect("the WebSocket opens")
        .0;

    let refused = get_from([127, 0, 0, 1], app.addr, "/healthz").await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("5"));
    assert_eq!(refused.header("content-type"), Some("application/json"));
    assert_eq!(refused.json()["error"]["code"], "too_many_connections");
    // Another address has places of its own.
    let other = get_from([127, 0, 0, 2], app.addr, "/healthz").await;
    assert_eq!(other.status, 200, "{other:?}");

    drop(idle);
    // Both places taken again (a new idle one and the WebSocket): refused; closing the
    // WebSocket gives its place back.
    let _idle = until_admitted(&app, [127, 0, 0, 1]).await;
    assert_eq!(
        get_from([127, 0, 0, 1], app.addr, "/healthz").await.status,
        503
    );
    drop(ws);
    until_admitted(&app, [127, 0, 0, 1]).await;

    let metrics = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 3]))
        .build()
        .unwrap()
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("http_connections_refused_total{reason=\"per_ip\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_client_is_counted() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.max_connections_per_ip = 1;
        config.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    app.create_project("p", &["alice"]).await;
    let token = app.token_for("alice").await;
    let forwarded = |client: &str| {
        format!(
            "GET /events?rooms=project:p&access_token={token} HTTP/1.1\r\nHost: {}\r\nX-Forwarded-For: {client}\r\n\r\n",
            app.addr
        )
    };
    // The proxy's own connections are not capped: an SSE stream for one client holds that
    // client's place as long as it runs.
    let mut stream = connect_from([127, 0, 0, 1], app.addr).await;
    send(&mut stream, &forwarded("203.0.113.7")).await;
    let mut head = [0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut stream, &mut head)
        .await
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");

    let mut second = connect_from([127, 0, 0, 1], app.addr).await;
    send(&mut second, &forwarded("203.0.113.7")).await;
    let res = read_response(&mut second).await;
    assert_eq!(res.status, 503, "the same forwarded client again");
    assert_eq!(res.json()["error"]["code"], "too_many_connections");

    let mut other = connect_from([127, 0, 0, 1], app.addr).await;
    send(&mut other, &forwarded("198.51.100.1, 203.0.113.8")).await;
    let mut head = [0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut other, &mut head)
        .await
        .unwrap();
    assert_eq!(
        &head, b"HTTP/1.1 200",
        "another client (the spoofable left entry ignored)"
    );

    drop(stream);
    let start = Instant::now();
    loop {
        let mut again = connect_from([127, 0, 0, 1], app.addr).await;
        send(&mut again, &forwarded("203.0.113.7")).await;
        let mut head = [0u8; 12];
        tokio::io::AsyncReadExt::read_exact(&mut again, &mut head)
            .await
            .unwrap();
        if &head == b"HTTP/1.1 200" {
            break;
        }
        assert!(
            start.elapsed() < BOUND,
            "the forwarded client never got its place back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
