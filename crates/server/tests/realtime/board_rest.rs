//! The REST side of people (chat posting, presence) meets the hub: what a page on the SSE or
//! long-polling fallback uses instead of WebSocket commands.

use crate::common::TestApp;
use crate::ws::Ws;
use reqwest::Method;
use serde_json::{json, Value};

crate::on_both_backends!(rest_chat_is_delivered_live_and_presence_is_the_hubs);

async fn rest_chat_is_delivered_live_and_presence_is_the_hubs(app: TestApp) {
    app.create_project("chat", &["alice", "bob"]).await;
    let alice_token = app.token_for("alice").await;
    let bob_token = app.token_for("bob").await;

    let present = |token: String| {
        let request = app.with(&token, Method::GET, "/projects/chat/presence");
        async move {
            let body: Value = request.send().await.unwrap().json().await.unwrap();
            body
        }
    };
    assert_eq!(
        present(bob_token.clone()).await,
        json!({ "room": "project:chat", "present": [] })
    );

    let mut alice = Ws::connect(&app, &alice_token).await;
    let mut alice_2 = Ws::connect(&app, &alice_token).await;
    alice.subscribe("project:chat").await;
    alice_2.subscribe("project:chat").await;
    assert_eq!(
        present(bob_token.clone()).await["present"],
        json!([{ "user": "alice", "connections": 2 }])
    );

    // Bob posts over REST; Alice gets it live, as the same event the log holds.
    let res = app
        .with(&bob_token, Method::POST, "/projects/chat/messages")
        .json(&json!({ "text": "from REST", "id": "r-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let posted: Value = res.json().await.unwrap();
    let live = alice.next_of("event").await;
    assert_eq!(live["event"], "message.created");
    assert_eq!(live["offset"], posted["offset"]);
    assert_eq!(live["data"], json!({ "user": "bob", "text": "from REST" }));

    // The id is shared with the WebSocket `message` command: a resend over WebSocket is a no-op.
    let mut bob = Ws::connect(&app, &bob_token).await;
    bob.send(
        json!({ "type": "message", "room": "project:chat", "text": "from REST", "id": "r-1" }),
    )
    .await;
    let reply = bob.next_of("reply").await;
    assert_eq!(reply["id"], "r-1");
    assert_eq!(reply["result"]["offset"], posted["offset"]);
    let history = app.store.messages("project:chat", None, 10).await.unwrap();
    assert_eq!(history.len(), 1, "posted once");
    drop(alice_2);
}
