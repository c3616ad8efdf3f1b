//! What the board needs besides tasks: who the caller is, a project's chat history and posting
//! over REST, and the page itself with its security headers.

use crate::common::TestApp;
use reqwest::Method;
use serde_json::{json, Value};

crate::on_both_backends!(
    me_says_who_the_token_speaks_for,
    chat_history_is_the_rooms_messages_oldest_first,
    chat_posts_are_validated_idempotent_and_for_members_only,
    the_board_is_served_with_strict_security_headers
);

async fn me_says_who_the_token_speaks_for(app: TestApp) {
    let res = app.admin(Method::GET, "/auth/me").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let me: Value = res.json().await.unwrap();
    assert_eq!(me, json!({ "user": "admin", "role": "admin" }));

    let alice = app.token_for("alice").await;
    let me: Value = app
        .with(&alice, Method::GET, "/auth/me")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"], "alice");
    assert_eq!(me["role"], "member");
    assert!(me["expires_at"].as_u64().unwrap() > 0);

    let res = app.client.get(app.url("/auth/me")).send().await.unwrap();
    assert_eq!(res.status(), 401);

    // The new routes are in the OpenAPI document.
    let openapi: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/auth/me",
        "/projects/{id}/messages",
        "/projects/{id}/presence",
    ] {
        assert!(openapi["paths"][path].is_object(), "{path} is documented");
    }
}

async fn post(app: &TestApp, token: &str, project: &str, body: Value) -> reqwest::Response {
    app.with(
        token,
        Method::POST,
        &format!("/projects/{project}/messages"),
    )
    .json(&body)
    .send()
    .await
    .unwrap()
}

async fn chat_history_is_the_rooms_messages_oldest_first(app: TestApp) {
    app.create_project("web", &["alice"]).await;
    let alice = app.token_for("alice").await;
    for text in ["one", "two", "three"] {
        assert_eq!(
            post(&app, &alice, "web", json!({ "text": text }))
                .await
                .status(),
            201
        );
        // Task events in between are not chat.
        app.create_task(json!({ "title": text, "project_id": "web" }))
            .await;
    }
    let history: Vec<Value> = app
        .with(&alice, Method::GET, "/projects/web/messages")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let texts: Vec<&str> = history
        .iter()
        .map(|m| m["data"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one", "two", "three"]);
    assert!(history.iter().all(|m| m["event"] == "message.created"
        && m["room"] == "project:web"
        && m["data"]["user"] == "alice"));
    let offsets: Vec<i64> = history
        .iter()
        .map(|m| m["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets, [1, 3, 5], "offsets in the room's log");

    // The latest `limit`, and paging back with `before`.
    let latest: Vec<Value> = app
        .with(&alice, Method::GET, "/projects/web/messages?limit=2")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(latest.len(), 2);
    assert_eq!(latest[0]["data"]["text"], "two");
    let older: Vec<Value> = app
        .with(&alice, Method::GET, "/projects/web/messages?before=3")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(older[0]["data"]["text"], "one");

    let res = app
        .with(&alice, Method::GET, "/projects/web/messages?limit=0")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["details"]["field"], "limit");
}

async fn chat_posts_are_validated_idempotent_and_for_members_only(app: TestApp) {
    app.create_project("web", &["alice"]).await;
    let alice = app.token_for("alice").await;
    let bob = app.token_for("bob").await;

    let res = post(
        &app,
        &alice,
        "web",
        json!({ "text": "  hi  ", "id": "m-1" }),
    )
    .await;
    assert_eq!(res.status(), 201);
    let first: Value = res.json().await.unwrap();
    assert_eq!(first["data"], json!({ "user": "alice", "text": "hi" }));
    // A retry with the same id posts nothing and answers the first post.
    let again: Value = post(&app, &alice, "web", json!({ "text": "hi", "id": "m-1" }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["offset"], first["offset"]);
    assert_eq!(
        app.store
            .messages("project:web", None, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    for body in [
        json!({ "text": "   " }),
        json!({ "text": "x".repeat(4001) }),
    ] {
        let res = post(&app, &alice, "web", body).await;
        assert_eq!(res.status(), 400);
        let error: Value = res.json().await.unwrap();
        assert_eq!(error["error"]["code"], "invalid_field");
        assert_eq!(error["error"]["details"]["field"], "text");
    }

    // Not a member: neither the history nor posting.
    assert_eq!(
        post(&app, &bob, "web", json!({ "text": "hi" }))
            .await
            .status(),
        403
    );
    let res = app
        .with(&bob, Method::GET, "/projects/web/messages")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = app
        .with(&bob, Method::GET, "/projects/web/presence")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // A project that does not exist.
    let res = app
        .admin(Method::GET, "/projects/nope/messages")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "project_not_found");
}

async fn the_board_is_served_with_strict_security_headers(app: TestApp) {
    let res = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/board/app.js">"#));
    assert!(!html.contains("<script>"), "no inline script");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from elsewhere"
    );

    for (path, content_type) in [
        ("/board/app.js", "text/javascript; charset=utf-8"),
        ("/board/board.css", "text/css; charset=utf-8"),
        ("/board/icon.svg", "image/svg+xml"),
    ] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["content-type"], content_type, "{path}");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    }
    let res = app
        .client
        .get(app.url("/board/secrets.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}
