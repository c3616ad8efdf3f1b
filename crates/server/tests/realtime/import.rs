//! What subscribers receive from an import: a `task.created` per task for a small one, one
//! `tasks.imported` per room for a large one (or whichever `events=` asks), logged with an offset
//! like any event, so a client that was away resumes across it exactly.

use crate::common::TestApp;
use crate::ws::Ws;
use reqwest::Method;
use serde_json::{json, Value};

crate::on_both_backends!(
    a_small_import_delivers_a_task_created_per_task,
    a_large_import_delivers_one_tasks_imported_per_room,
    a_client_away_during_a_large_import_resumes_across_it,
);

async fn import(app: &TestApp, query: &str, body: String) -> reqwest::Response {
    app.admin(Method::POST, &format!("/tasks/import{query}"))
        .header("Content-Type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn lines(n: usize, project: &str, assignee: Option<&str>) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{}\n",
                json!({ "title": format!("t{i}"), "project_id": project, "assignee": assignee })
            )
        })
        .collect()
}

async fn a_small_import_delivers_a_task_created_per_task(app: TestApp) {
    app.create_project("p", &["alice"]).await;
    let mut ws = Ws::connect(&app, &app.token_for("alice").await).await;
    ws.subscribe("project:p").await;
    let res = import(&app, "", lines(5, "p", None)).await;
    assert_eq!(res.status(), 201);
    for offset in 1..=5 {
        let event = ws.next_of("event").await;
        assert_eq!(event["event"], "task.created", "{event}");
        assert_eq!(event["offset"], offset);
        assert_eq!(event["data"]["title"], format!("t{}", offset - 1));
    }
    // events=summary asks for the one event even for a small import.
    let res = import(&app, "?events=summary", lines(3, "p", None)).await;
    assert_eq!(res.status(), 201);
    let event = ws.next_of("event").await;
    assert_eq!(event["event"], "tasks.imported", "{event}");
    assert_eq!(event["offset"], 6);
    assert_eq!(event["data"], json!({ "project_id": "p", "count": 3 }));
}

async fn a_large_import_delivers_one_tasks_imported_per_room(app: TestApp) {
    app.create_project("p", &["alice"]).await;
    app.create_project("q", &["alice"]).await;
    let alice = app.token_for("alice").await;
    let mut ws = Ws::connect(&app, &alice).await;
    ws.subscribe("project:p").await;
    ws.subscribe("project:q").await;
    ws.subscribe("user:alice").await;
    // Over import_task_events_max (1000 by default): per-task events are refused when asked for…
    let body = format!(
        "{}{}",
        lines(1500, "p", Some("alice")),
        lines(20, "q", None)
    );
    let res = import(&app, "?events=tasks", body.clone()).await;
    assert_eq!(res.status(), 400);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["details"]["field"], "events", "{err}");
    // …and the default logs one event per room: the project rooms and the assignee's.
    let res = import(&app, "", body).await;
    assert_eq!(res.status(), 201);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["imported"], 1520);
    let mut got = Vec::new();
    for _ in 0..3 {
        let event = ws.next_of("event").await;
        assert_eq!(event["event"], "tasks.imported", "{event}");
        assert_eq!(event["offset"], 1, "the first event of each room: {event}");
        got.push((
            event["room"].as_str().unwrap().to_owned(),
            event["data"].clone(),
        ));
    }
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            (
                "project:p".to_owned(),
                json!({ "project_id": "p", "count": 1500 })
            ),
            (
                "project:q".to_owned(),
                json!({ "project_id": "q", "count": 20 })
            ),
            (
                "user:alice".to_owned(),
                json!({ "user": "alice", "count": 1500 })
            ),
        ]
    );
    // Nothing else was logged: the next change is offset 2.
    app.create_task(json!({ "title": "after", "project_id": "p" }))
        .await;
    let event = ws.next_of("event").await;
    assert_eq!(
        (event["room"].as_str(), event["offset"].as_i64()),
        (Some("project:p"), Some(2))
    );
    let tasks: Value = app
        .admin(Method::GET, "/tasks?project=p&limit=1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tasks["items"].as_array().unwrap().len(), 1);
    assert_eq!(app.store.last_offset("project:p").await.unwrap(), 2);
}

async fn a_client_away_during_a_large_import_resumes_across_it(app: TestApp) {
    app.create_project("p", &[]).await;
    app.create_task(json!({ "title": "before", "project_id": "p" }))
        .await;
    let mut ws = Ws::connect(&app, crate::common::ADMIN_TOKEN).await;
    let reply = ws.subscribe("project:p").await;
    let epoch = reply["result"]["epoch"].clone();
    assert_eq!(reply["result"]["offset"], 1);
    drop(ws);
    let res = import(&app, "", lines(1200, "p", None)).await;
    assert_eq!(res.status(), 201);
    app.create_task(json!({ "title": "after", "project_id": "p" }))
        .await;
    let mut ws = Ws::connect(&app, crate::common::ADMIN_TOKEN).await;
    let reply = ws
        .request(json!({ "type": "subscribe", "room": "project:p", "since": { "epoch": epoch, "offset": 1 } }))
        .await;
    assert_eq!(reply["result"]["recovered"], true, "{reply}");
    let first = ws.next_of("event").await;
    assert_eq!(
        (first["offset"].as_i64(), first["event"].as_str()),
        (Some(2), Some("tasks.imported"))
    );
    assert_eq!(first["data"]["count"], 1200);
    let second = ws.next_of("event").await;
    assert_eq!(
        (second["offset"].as_i64(), second["event"].as_str()),
        (Some(3), Some("task.created"))
    );
    assert_eq!(second["data"]["title"], "after");
}
