//! `GET /tasks/{id}/history`: a task's changes from the event log, newest first, paged.

use crate::common::TestApp;
use reqwest::Method;
use serde_json::{json, Value};

crate::on_both_backends!(
    every_change_is_an_entry_naming_what_changed,
    pages_follow_the_cursor_without_gap_or_repeat,
    members_only_like_get_task,
    bad_cursors_and_limits_are_refused,
);

async fn send(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Value {
    let mut req = app.admin(method.clone(), path);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn patch(app: &TestApp, id: &str, body: Value) -> Value {
    send(app, Method::PATCH, &format!("/tasks/{id}"), Some(body)).await
}

async fn history(app: &TestApp, id: &str, query: &str) -> Value {
    send(
        app,
        Method::GET,
        &format!("/tasks/{id}/history{query}"),
        None,
    )
    .await
}

fn id(task: &Value) -> &str {
    task["id"].as_str().unwrap()
}

/// `(kind, changes)` of each entry.
fn summary(page: &Value) -> Vec<(String, Value)> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap().to_owned(), e["changes"].clone()))
        .collect()
}

async fn every_change_is_an_entry_naming_what_changed(app: TestApp) {
    app.create_project("h", &[]).await;
    let a = app
        .create_task(json!({ "title": "a", "priority": 1, "project_id": "h" }))
        .await;
    let b = app
        .create_task(json!({ "title": "b", "project_id": "h" }))
        .await;
    let (a_id, b_id) = (id(&a), id(&b));
    patch(&app, a_id, json!({ "title": "a2" })).await;
    patch(&app, a_id, json!({ "priority": 7 })).await;
    patch(&app, a_id, json!({ "assignee": "bob" })).await;
    send(
        &app,
        Method::PUT,
        &format!("/tasks/{a_id}/dependencies/{b_id}"),
        None,
    )
    .await;
    // b done unblocks a: a's entry for that names only `blocked`.
    patch(&app, b_id, json!({ "status": "done" })).await;
    send(
        &app,
        Method::DELETE,
        &format!("/tasks/{a_id}/dependencies/{b_id}"),
        None,
    )
    .await;
    // A change to the value the task already has is still an entry, naming nothing.
    patch(&app, a_id, json!({ "status": "todo" })).await;

    let page = history(&app, a_id, "").await;
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(
        summary(&page),
        [
            ("task.updated".into(), json!([])),
            ("dependency.removed".into(), json!(["dependencies"])),
            ("task.updated".into(), json!(["blocked"])),
            (
                "dependency.added".into(),
                json!(["dependencies", "blocked"])
            ),
            ("task.updated".into(), json!(["assignee"])),
            ("task.moved".into(), json!(["priority"])),
            ("task.updated".into(), json!(["title"])),
            ("task.created".into(), Value::Null),
        ]
    );
    let items = page["items"].as_array().unwrap();
    let offsets: Vec<i64> = items
        .iter()
        .map(|e| e["offset"].as_i64().unwrap())
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] > w[1]), "{offsets:?}");
    // Each entry holds the task as the change left it: versions count down to 1.
    let versions: Vec<i64> = items
        .iter()
        .map(|e| e["task"]["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [8, 7, 6, 5, 4, 3, 2, 1]);
    let now = send(&app, Method::GET, &format!("/tasks/{a_id}"), None).await;
    assert_eq!(items[0]["task"], now);
    assert_eq!(items[7]["task"]["title"], "a");
    for (entry, dependency) in [(1, json!(b_id)), (3, json!(b_id)), (0, Value::Null)] {
        assert_eq!(items[entry]["dependency_id"], dependency, "entry {entry}");
    }
    let mut ats: Vec<&str> = items.iter().map(|e| e["at"].as_str().unwrap()).collect();
    let newest_first = ats.clone();
    ats.sort_unstable_by(|x, y| y.cmp(x));
    assert_eq!(ats, newest_first);

    // b's history is b's own events: a's dependency on it is a's change, not b's.
    let page = history(&app, b_id, "").await;
    assert_eq!(
        summary(&page),
        [
            ("task.updated".into(), json!(["status"])),
            ("task.created".into(), Value::Null),
        ]
    );
}

async fn pages_follow_the_cursor_without_gap_or_repeat(app: TestApp) {
    let task = app.create_task(json!({ "title": "t0" })).await;
    let other = app.create_task(json!({ "title": "other" })).await;
    let task_id = id(&task);
    for i in 1..=11 {
        patch(&app, task_id, json!({ "title": format!("t{i}") })).await;
        // Another task's events in the same room, between this one's.
        patch(&app, id(&other), json!({ "priority": i })).await;
    }
    let whole = history(&app, task_id, "?limit=500").await;
    let whole = whole["items"].as_array().unwrap().clone();
    assert_eq!(whole.len(), 12);

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=5&cursor={c}"),
            None => "?limit=5".to_owned(),
        };
        let page = history(&app, task_id, &query).await;
        if cursor.is_none() {
            // A change after the first page is read comes first in a new listing, never on
            // the pages that follow the cursor.
            patch(&app, task_id, json!({ "title": "later" })).await;
        }
        let items = page["items"].as_array().unwrap();
        sizes.push(items.len());
        seen.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(sizes, [5, 5, 2]);
    // The same entries as in one page, `changes` included (an entry at the end of a page is
    // compared with the first of the next).
    assert_eq!(seen, whole);
    let titles: Vec<&str> = seen
        .iter()
        .map(|e| e["task"]["title"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..=11).rev().map(|i| format!("t{i}")).collect();
    assert_eq!(titles, expected);
    let latest = history(&app, task_id, "?limit=1").await;
    assert_eq!(latest["items"][0]["task"]["title"], "later");
    assert_eq!(latest["items"][0]["changes"], json!(["title"]));
}

async fn members_only_like_get_task(app: TestApp) {
    app.create_project("private", &["alice"]).await;
    let task = app
        .create_task(json!({ "title": "secret", "project_id": "private" }))
        .await;
    let alice = app.token_for("alice").await;
    let mallory = app.token_for("mallory").await;
    let status = |token: &str, path: String| {
        let req = app.with(token, Method::GET, &path);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let task_path = format!("/tasks/{}", id(&task));
    let history_path = format!("{task_path}/history");
    assert_eq!(status(&alice, history_path.clone()).await, 200);
    assert_eq!(status(&mallory, task_path.clone()).await, 403);
    let res = app
        .with(&mallory, Method::GET, &history_path)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");

    // No such task, and a deleted one: 404 as for the task itself.
    let unknown = format!("/tasks/{}/history", uuid::Uuid::now_v7());
    for token in [alice.as_str(), mallory.as_str()] {
        let res = app.with(token, Method::GET, &unknown).send().await.unwrap();
        assert_eq!(res.status(), 404);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "task_not_found");
    }
    send(&app, Method::DELETE, &task_path, None).await;
    assert_eq!(status(&alice, task_path).await, 404);
    assert_eq!(status(&alice, history_path).await, 404);
}

async fn bad_cursors_and_limits_are_refused(app: TestApp) {
    let task = app.create_task(json!({ "title": "t" })).await;
    let path = format!("/tasks/{}/history", id(&task));
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=-1", "limit"),
        ("limit=many", "limit"),
        ("cursor=abc", "cursor"),
        ("cursor=0", "cursor"),
        ("cursor=007", "cursor"),
        ("cursor=-3", "cursor"),
        ("cursor=1234567890123456789", "cursor"),
        ("cursor=1.5.0123456789abcdef0123456789abcdef", "cursor"),
    ] {
        let res = app
            .admin(Method::GET, &format!("{path}?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{query}");
        assert_eq!(res.headers()["content-type"], "application/json");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_field", "{query}: {body}");
        assert_eq!(body["error"]["details"]["field"], field, "{query}: {body}");
    }
    let res = app
        .admin(Method::GET, "/tasks/not-a-task/history")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // A cursor past the newest entry is a valid one: the whole history.
    let page = history(&app, id(&task), "?cursor=999999999999999999").await;
    assert_eq!(summary(&page), [("task.created".into(), Value::Null)]);
    // One below the oldest: an empty last page.
    let offset = page["items"][0]["offset"].as_i64().unwrap();
    let page = history(&app, id(&task), &format!("?cursor={offset}")).await;
    assert_eq!(page, json!({ "items": [], "next_cursor": null }));
}
