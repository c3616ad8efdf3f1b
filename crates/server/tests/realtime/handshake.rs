use crate::common::{Backend, TestApp, ADMIN_TOKEN};
use crate::ws::Ws;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Error as WsError;

fn status_of(err: WsError) -> (u16, serde_json::Value) {
    match err {
        WsError::Http(response) => {
            let body = response.body().clone().unwrap_or_default();
            (
                response.status().as_u16(),
                serde_json::from_slice(&body).unwrap_or_default(),
            )
        }
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

#[tokio::test]
async fn the_handshake_needs_a_valid_token() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let request = format!("ws://{}/ws/tasks", app.addr)
        .into_client_request()
        .unwrap();
    let (status, body) = status_of(tokio_tungstenite::connect_async(request).await.unwrap_err());
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = status_of(Ws::open(&app, "not-a-token").await.unwrap_err());
    assert_eq!(status, 401);
    // Browsers pass the token in the query string.
    let url = format!("ws://{}/ws/tasks?access_token={ADMIN_TOKEN}", app.addr);
    let (stream, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("query token accepted");
    let ws = Ws::greeted(stream).await;
    assert_eq!(ws.hello["user"], "admin");
}

#[tokio::test]
async fn plain_requests_get_426() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let res = app
        .client
        .get(app.url("/ws/tasks"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 426);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upgrade_required");
    let res = app
        .client
        .get(app.url("/ws/tasks"))
        .bearer_auth(ADMIN_TOKEN)
        .header("Connection", "upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("Sec-WebSocket-Version", "8")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 426);
    assert_eq!(res.headers()["sec-websocket-version"], "13");
}

#[tokio::test]
async fn foreign_origins_are_refused() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.ws_allowed_origins = vec!["http://board.example".into()]
    })
    .await;
    let connect = |origin: &'static str| {
        let mut request = format!("ws://{}/ws/tasks", app.addr)
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
        );
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    let (status, body) = status_of(connect("http://evil.example").await.unwrap_err());
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(connect("http://board.example").await.is_ok());
    let own = format!("http://{}", app.addr);
    let mut request = format!("ws://{}/ws/tasks", app.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
    );
    request.headers_mut().insert("origin", own.parse().unwrap());
    assert!(
        tokio_tungstenite::connect_async(request).await.is_ok(),
        "the server's own pages may connect"
    );
}

#[tokio::test]
async fn connection_limits_answer_503() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.ws_max_connections_per_user = 2;
        c.ws_max_connections = 3;
    })
    .await;
    let alice = app.token_for("alice").await;
    let _a1 = Ws::connect(&app, &alice).await;
    let a2 = Ws::connect(&app, &alice).await;
    let (status, body) = status_of(Ws::open(&app, &alice).await.unwrap_err());
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "unavailable");
    let _b1 = Ws::connect(&app, &app.token_for("bob").await).await;
    let (status, _) = status_of(
        Ws::open(&app, &app.token_for("carol").await)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 503, "the server-wide limit");
    // A slot comes back when a connection ends.
    drop(a2);
    let deadline = tokio::time::Instant::now() + crate::ws::WAIT;
    loop {
        // The server frees the slot when it sees the connection end; each attempt is a real
        // handshake, retried until then.
        match Ws::open(&app, &alice).await {
            Ok(_) => break,
            Err(_) => assert!(
                tokio::time::Instant::now() < deadline,
                "the freed slot is reusable"
            ),
        }
    }
}

/// A refusal for "not now" says when to retry (`Retry-After`, jittered between the configured
/// base and twice it, also in the body with the reason), and a plain GET of the endpoint (how a
/// browser, which cannot read a refused handshake, learns it) gets the same answer while the
/// node would refuse, and 426 once it would not.
#[tokio::test]
async fn a_refusal_says_when_to_retry_and_a_probe_learns_it() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.ws_max_connections = 1;
        c.ws_retry_after_secs = 3;
    })
    .await;
    let probe = || reqwest::get(app.url("/ws/tasks"));
    assert_eq!(probe().await.unwrap().status(), 426, "room for one more");
    let held = Ws::connect(&app, &app.token_for("ivy").await).await;
    let refused = match Ws::open(&app, &app.token_for("joe").await).await {
        Err(WsError::Http(response)) => response,
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    };
    assert_eq!(refused.status(), 503);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3..=6).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value =
        serde_json::from_slice(refused.body().as_deref().unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert_eq!(body["error"]["details"]["reason"], "server_full");
    assert_eq!(body["error"]["details"]["retry_after_secs"], retry_after);

    let answer = probe().await.unwrap();
    assert_eq!(answer.status(), 503);
    assert!(answer.headers().contains_key("retry-after"));
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["details"]["reason"], "server_full");

    drop(held);
    let deadline = tokio::time::Instant::now() + crate::ws::WAIT;
    while probe().await.unwrap().status() != 426 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the probe says come in once the slot is free"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
