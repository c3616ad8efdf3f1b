//! Direct messages (`direct`, `POST /users/{id}/messages`) and the `task.unblocked`
//! notification: logged events in users' rooms, so they reach every tab and resume.

use crate::common::{TestApp, ADMIN_TOKEN};
use crate::sse_client::SseReader;
use crate::ws::Ws;
use reqwest::Method;
use serde_json::{json, Value};

crate::on_both_backends!(
    direct_messages_reach_every_tab_of_both_users_once,
    direct_messages_need_a_shared_project_and_valid_input,
    a_reconnecting_recipient_resumes_its_direct_messages,
    finishing_the_last_dependency_unblocks_the_task_and_tells_its_assignee,
);

/// Sends a command with the given id and returns its reply.
async fn command_with_id(ws: &mut Ws, mut command: Value, id: &str) -> Value {
    command["id"] = json!(id);
    ws.send(command).await;
    loop {
        let frame = ws.next().await;
        if frame["id"] == json!(id) {
            return frame;
        }
    }
}

/// The next `event` frame of `room`, skipping presence and the like.
async fn next_event_in(ws: &mut Ws, room: &str) -> Value {
    loop {
        let frame = ws.next_of("event").await;
        if frame["room"] == room {
            return frame;
        }
    }
}

async fn direct_messages_reach_every_tab_of_both_users_once(app: TestApp) {
    app.create_project("team", &["alice", "bob"]).await;
    let alice_token = app.token_for("alice").await;
    let bob_token = app.token_for("bob").await;
    let mut alice = Ws::connect(&app, &alice_token).await;
    let mut alice_2 = Ws::connect(&app, &alice_token).await;
    let mut bob = Ws::connect(&app, &bob_token).await;
    alice.subscribe("user:alice").await;
    alice_2.subscribe("user:alice").await;
    bob.subscribe("user:bob").await;
    let mut bob_sse = SseReader::open(&app.url("/events?rooms=user:bob"), &bob_token, None).await;
    assert_eq!(bob_sse.next().await.data["type"], "subscribed");

    let command = json!({ "type": "direct", "to": "bob", "text": "  lunch?  " });
    let reply = command_with_id(&mut alice, command.clone(), "d1").await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["result"]["to"], "bob");
    assert_eq!(reply["result"]["room"], "user:alice");
    let sent_at = reply["result"]["offset"].as_i64().unwrap();
    let expected = json!({ "from": "alice", "to": "bob", "text": "lunch?" });

    // The recipient gets it over WebSocket and SSE; both of the sender's tabs get their copy.
    let received = next_event_in(&mut bob, "user:bob").await;
    assert_eq!(received["event"], "message.direct");
    assert_eq!(received["data"], expected);
    let over_sse = bob_sse.next().await.data;
    assert_eq!(over_sse["event"], "message.direct");
    assert_eq!(over_sse["offset"], received["offset"]);
    for tab in [&mut alice, &mut alice_2] {
        let copy = next_event_in(tab, "user:alice").await;
        assert_eq!(copy["event"], "message.direct");
        assert_eq!(copy["offset"], sent_at);
        assert_eq!(copy["data"], expected);
    }

    // A resend with the same id (after a reconnect, say) answers the first send, logs nothing.
    let again = command_with_id(&mut alice, command, "d1").await;
    assert_eq!(again["result"]["offset"], sent_at);
    let bob_log = app.store.events_after("user:bob", 0, 100).await.unwrap();
    assert_eq!(bob_log.len(), 1, "one message in bob's room: {bob_log:?}");

    // Over REST, the answer is the sender's copy; the other side hears of it live.
    let res = app
        .with(&bob_token, Method::POST, "/users/alice/messages")
        .json(&json!({ "text": "yes, at noon", "id": "r1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let posted: Value = res.json().await.unwrap();
    assert_eq!(posted["room"], "user:bob");
    assert_eq!(posted["event"], "message.direct");
    let reply_copy = next_event_in(&mut alice, "user:alice").await;
    assert_eq!(
        reply_copy["data"],
        json!({ "from": "bob", "to": "alice", "text": "yes, at noon" })
    );
    let retry = app
        .with(&bob_token, Method::POST, "/users/alice/messages")
        .json(&json!({ "text": "yes, at noon", "id": "r1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 201);
    assert_eq!(
        retry.json::<Value>().await.unwrap()["offset"],
        posted["offset"]
    );

    // The conversation pages from either side, oldest first, in the reader's own room.
    let page: Vec<Value> = app
        .with(&alice_token, Method::GET, "/users/bob/messages")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let texts: Vec<&str> = page
        .iter()
        .map(|m| m["data"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["lunch?", "yes, at noon"]);
    assert!(page.iter().all(|m| m["room"] == "user:alice"));
    let latest: Vec<Value> = app
        .with(&alice_token, Method::GET, "/users/bob/messages?limit=1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(latest[0]["data"]["text"], "yes, at noon");
    let before = latest[0]["offset"].as_i64().unwrap();
    let older: Vec<Value> = app
        .with(
            &alice_token,
            Method::GET,
            &format!("/users/bob/messages?before={before}"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(older[0]["data"]["text"], "lunch?");
    // Another pair's conversation is not bob's.
    let none: Vec<Value> = app
        .with(&bob_token, Method::GET, "/users/carol/messages")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(none.is_empty());
}

async fn direct_messages_need_a_shared_project_and_valid_input(app: TestApp) {
    app.create_project("team", &["alice", "bob"]).await;
    app.create_project("elsewhere", &["carol"]).await;
    let alice_token = app.token_for("alice").await;
    let carol_token = app.token_for("carol").await;
    let mut alice = Ws::connect(&app, &alice_token).await;

    let refused = alice
        .request(json!({ "type": "direct", "to": "carol", "text": "hi" }))
        .await;
    assert_eq!(refused["ok"], false);
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    let res = app
        .with(&alice_token, Method::POST, "/users/carol/messages")
        .json(&json!({ "text": "hi" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(app
        .store
        .events_after("user:carol", 0, 10)
        .await
        .unwrap()
        .is_empty());

    for (command, field) in [
        (
            json!({ "type": "direct", "to": "alice", "text": "me" }),
            "to",
        ),
        (
            json!({ "type": "direct", "to": "not a user", "text": "hi" }),
            "to",
        ),
        (
            json!({ "type": "direct", "to": "bob", "text": "   " }),
            "text",
        ),
        (
            json!({ "type": "direct", "to": "bob", "text": "x".repeat(4001) }),
            "text",
        ),
    ] {
        let reply = alice.request(command.clone()).await;
        assert_eq!(
            reply["error"]["code"], "invalid_field",
            "{command}: {reply}"
        );
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{reply}"
        );
    }
    let res = app
        .with(&alice_token, Method::POST, "/users/bob/messages")
        .json(&json!({ "text": "" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_field"
    );
    assert!(app
        .store
        .events_after("user:bob", 0, 10)
        .await
        .unwrap()
        .is_empty());

    // The admin may message anyone, and anyone the admin.
    let res = app
        .admin(Method::POST, "/users/carol/messages")
        .json(&json!({ "text": "welcome" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = app
        .with(&carol_token, Method::POST, "/users/admin/messages")
        .json(&json!({ "text": "thanks" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let admin_view: Vec<Value> = app
        .admin(Method::GET, "/users/carol/messages")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(admin_view.len(), 2);
    assert_eq!(admin_view[1]["data"]["from"], "carol");
    let _ = ADMIN_TOKEN;
}

async fn a_reconnecting_recipient_resumes_its_direct_messages(app: TestApp) {
    app.create_project("team", &["alice", "bob"]).await;
    let alice_token = app.token_for("alice").await;
    let bob_token = app.token_for("bob").await;
    let mut bob = Ws::connect(&app, &bob_token).await;
    let subscribed = bob.subscribe("user:bob").await;
    let epoch = subscribed["result"]["epoch"].clone();
    let mut alice = Ws::connect(&app, &alice_token).await;
    let first = alice
        .request(json!({ "type": "direct", "to": "bob", "text": "one" }))
        .await;
    assert_eq!(first["ok"], true);
    let seen = next_event_in(&mut bob, "user:bob").await;
    let last = seen["offset"].as_i64().unwrap();
    drop(bob); // the recipient goes away

    for text in ["two", "three"] {
        let reply = alice
            .request(json!({ "type": "direct", "to": "bob", "text": text }))
            .await;
        assert_eq!(reply["ok"], true);
    }
    // As a resuming client does: no automatic subscriptions, then a subscription with `since`.
    let mut bob = Ws::connect_at(app.addr, &bob_token).await;
    let reply = bob
        .request(json!({ "type": "subscribe", "room": "user:bob", "since": { "epoch": epoch, "offset": last } }))
        .await;
    assert_eq!(reply["result"]["recovered"], true, "{reply}");
    let mut texts = Vec::new();
    let mut offsets = Vec::new();
    for _ in 0..2 {
        let event = next_event_in(&mut bob, "user:bob").await;
        texts.push(event["data"]["text"].as_str().unwrap().to_owned());
        offsets.push(event["offset"].as_i64().unwrap());
    }
    assert_eq!(texts, ["two", "three"]);
    assert_eq!(offsets, [last + 1, last + 2]);
}

/// Makes `task` depend on `dependency`; returns the task after.
async fn depend(app: &TestApp, task: &Value, dependency: &Value) -> Value {
    let path = format!(
        "/tasks/{}/dependencies/{}",
        task["id"].as_str().unwrap(),
        dependency["id"].as_str().unwrap()
    );
    let res = app.admin(Method::PUT, &path).send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    res.json().await.unwrap()
}

async fn patch(app: &TestApp, id: &Value, body: Value) -> Value {
    let res = app
        .admin(Method::PATCH, &format!("/tasks/{}", id.as_str().unwrap()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn finishing_the_last_dependency_unblocks_the_task_and_tells_its_assignee(app: TestApp) {
    app.create_project("p", &["alice"]).await;
    let alice_token = app.token_for("alice").await;
    let design = app
        .create_task(json!({ "title": "design", "project_id": "p" }))
        .await;
    let review = app
        .create_task(json!({ "title": "review", "project_id": "p" }))
        .await;
    let build = app
        .create_task(json!({ "title": "build", "project_id": "p", "assignee": "alice" }))
        .await;
    depend(&app, &build, &design).await;
    let build = depend(&app, &build, &review).await;
    assert_eq!(build["blocked"], true);
    let mut alice = Ws::connect(&app, &alice_token).await;
    alice.subscribe("user:alice").await;
    alice.subscribe("project:p").await;

    // One of two dependencies done: still blocked, nothing about `build`.
    patch(&app, &design["id"], json!({ "status": "done" })).await;
    let first = next_event_in(&mut alice, "project:p").await;
    assert_eq!(first["data"]["id"], design["id"]);

    // The last one done: `build` is logged with its new `blocked` state, and alice is told.
    patch(&app, &review["id"], json!({ "status": "done" })).await;
    let changed = next_event_in(&mut alice, "project:p").await;
    assert_eq!(changed["data"]["id"], review["id"]);
    let dependent = next_event_in(&mut alice, "project:p").await;
    assert_eq!(dependent["event"], "task.updated");
    assert_eq!(dependent["data"]["id"], build["id"]);
    assert_eq!(dependent["data"]["blocked"], false);
    assert_eq!(
        dependent["data"]["version"].as_i64(),
        Some(build["version"].as_i64().unwrap() + 1),
        "a changed `blocked` is a new version"
    );
    let note = next_event_in(&mut alice, "user:alice").await;
    assert_eq!(note["event"], "task.unblocked");
    assert_eq!(note["data"]["task"]["id"], build["id"]);
    assert_eq!(note["data"]["task"]["blocked"], false);
    assert_eq!(note["data"]["dependency_id"], review["id"]);

    // Reopening a dependency blocks it again (logged), with no notification.
    patch(&app, &review["id"], json!({ "status": "todo" })).await;
    next_event_in(&mut alice, "project:p").await;
    let reblocked = next_event_in(&mut alice, "project:p").await;
    assert_eq!(reblocked["data"]["id"], build["id"]);
    assert_eq!(reblocked["data"]["blocked"], true);
    let user_log = app.store.events_after("user:alice", 0, 100).await.unwrap();
    let kinds: Vec<&str> = user_log.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["task.assigned", "task.unblocked"]);

    // A dependent that is already done, or has no assignee, is logged but notifies no one.
    let lone = app
        .create_task(json!({ "title": "docs", "project_id": "p" }))
        .await;
    depend(&app, &lone, &review).await;
    patch(&app, &review["id"], json!({ "status": "done" })).await;
    let stored: Value = app
        .admin(
            Method::GET,
            &format!("/tasks/{}", lone["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored["blocked"], false);
    let user_log = app.store.events_after("user:alice", 0, 100).await.unwrap();
    assert_eq!(user_log.len(), 3, "build was unblocked again: {user_log:?}");
    assert_eq!(user_log[2].event.as_str(), "task.unblocked");
}
