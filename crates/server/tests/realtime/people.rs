use crate::common::TestApp;
use crate::ws::Ws;
use serde_json::json;

crate::on_both_backends!(presence_typing_and_chat_cross_over);

async fn presence_typing_and_chat_cross_over(app: TestApp) {
    app.create_project("chat", &["alice", "bob"]).await;
    let alice_token = app.token_for("alice").await;
    let mut alice = Ws::connect(&app, &alice_token).await;
    let mut alice_2 = Ws::connect(&app, &alice_token).await;
    let mut bob = Ws::connect(&app, &app.token_for("bob").await).await;
    alice.subscribe("project:chat").await;
    bob.subscribe("project:chat").await;
    let joined = alice.next_of("presence.joined").await;
    assert_eq!(joined["user"], "bob");
    alice_2.subscribe("project:chat").await;
    let presence = bob
        .request(json!({ "type": "presence", "room": "project:chat" }))
        .await;
    assert_eq!(
        presence["result"]["present"],
        json!([{ "user": "alice", "connections": 2 }, { "user": "bob", "connections": 1 }])
    );

    // Typing reaches the others, not the typist.
    let reply = bob
        .request(json!({ "type": "typing", "room": "project:chat" }))
        .await;
    assert_eq!(reply["ok"], true);
    let typing = alice.next_of("typing").await;
    assert_eq!(typing["user"], "bob");

    // A chat message is acknowledged once logged, with its offset, and delivered as an event.
    let reply = bob
        .request(json!({ "type": "message", "room": "project:chat", "text": "  hello  " }))
        .await;
    assert_eq!(reply["ok"], true);
    let offset = reply["result"]["offset"].as_i64().unwrap();
    let message = alice.next_of("event").await;
    assert_eq!(message["event"], "message.created");
    assert_eq!(message["offset"], offset);
    assert_eq!(message["data"], json!({ "user": "bob", "text": "hello" }));
    let logged = app
        .store
        .events_after("project:chat", offset - 1, 1)
        .await
        .unwrap();
    assert_eq!(logged[0].data["text"], "hello");

    // Closing one of Alice's two connections does not make her leave; closing both does.
    drop(alice_2);
    drop(alice);
    let left = bob.next_of("presence.left").await;
    assert_eq!(left["user"], "alice");
    let presence = bob
        .request(json!({ "type": "presence", "room": "project:chat" }))
        .await;
    assert_eq!(
        presence["result"]["present"],
        json!([{ "user": "bob", "connections": 1 }])
    );

    // Outsiders cannot post.
    let mut eve = Ws::connect(&app, &app.token_for("eve").await).await;
    let reply = eve
        .request(json!({ "type": "message", "room": "project:chat", "text": "hi" }))
        .await;
    assert_eq!(reply["error"]["code"], "forbidden");
}
