use crate::common::TestApp;
use reqwest::Method;
use serde_json::{json, Value};

crate::on_both_backends!(
    create_returns_the_task_with_defaults,
    create_then_get_update_delete,
    stale_if_match_is_refused,
    listing_is_ordered_filtered_and_paginated,
    priority_queue_serves_highest_ready_task,
    claim_takes_the_next_task,
    every_change_is_logged_in_the_project_room,
);

async fn create_returns_the_task_with_defaults(app: TestApp) {
    let task = app
        .create_task(json!({ "title": "  WebSocket test  ", "priority": 5 }))
        .await;
    assert_eq!(task["title"], "WebSocket test", "title is trimmed");
    assert_eq!(task["priority"], 5);
    assert_eq!(task["status"], "todo");
    assert_eq!(task["project_id"], "default");
    assert_eq!(task["version"], 1);
    assert_eq!(task["blocked"], false);
    assert_eq!(task["dependencies"], json!([]));
    let id = task["id"].as_str().unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(id).unwrap().get_version_num(),
        7,
        "ids are UUIDv7"
    );
}

async fn create_then_get_update_delete(app: TestApp) {
    let task = app
        .create_task(json!({ "title": "a", "description": "d", "assignee": "bob" }))
        .await;
    let id = task["id"].as_str().unwrap();
    let path = format!("/tasks/{id}");

    let res = app.admin(Method::GET, &path).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["etag"], "\"1\"");
    let got: Value = res.json().await.unwrap();
    assert_eq!(got, task);

    let res = app
        .admin(Method::PATCH, &path)
        .json(&json!({ "status": "in_progress", "description": null }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let updated: Value = res.json().await.unwrap();
    assert_eq!(updated["status"], "in_progress");
    assert_eq!(updated["description"], Value::Null, "null clears");
    assert_eq!(updated["assignee"], "bob", "absent fields stay");
    assert_eq!(updated["version"], 2);

    let res = app.admin(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let res = app.admin(Method::GET, &path).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "task_not_found");
}

async fn stale_if_match_is_refused(app: TestApp) {
    let task = app.create_task(json!({ "title": "a" })).await;
    let path = format!("/tasks/{}", task["id"].as_str().unwrap());
    let res = app
        .admin(Method::PATCH, &path)
        .header("If-Match", "\"1\"")
        .json(&json!({ "title": "b" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .admin(Method::PATCH, &path)
        .header("If-Match", "\"1\"")
        .json(&json!({ "title": "c" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 412);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "version_mismatch");
    assert_eq!(body["error"]["details"]["current_version"], 2);
    let current: Value = app
        .admin(Method::GET, &path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(current["title"], "b", "the stale write changed nothing");
}

async fn listing_is_ordered_filtered_and_paginated(app: TestApp) {
    app.create_project("p1", &[]).await;
    let mut expected = Vec::new();
    for (i, priority) in [10, 50, 10, 90, 50, 0, 10].into_iter().enumerate() {
        let t = app
            .create_task(
                json!({ "title": format!("t{i}"), "priority": priority, "project_id": "p1" }),
            )
            .await;
        expected.push((priority, t["id"].as_str().unwrap().to_owned()));
    }
    app.create_task(json!({ "title": "elsewhere" })).await;
    // Highest priority first; among equals, oldest (smallest UUIDv7) first.
    expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/tasks?project=p1&limit=3".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page: Value = app
            .admin(Method::GET, &path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|t| {
            (
                t["priority"].as_i64().unwrap(),
                t["id"].as_str().unwrap().to_owned(),
            )
        }));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let expected: Vec<(i64, String)> = expected.into_iter().map(|(p, id)| (p as i64, id)).collect();
    assert_eq!(seen, expected);

    let page: Value = app
        .admin(Method::GET, "/tasks?status=done")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"], json!([]));
    let res = app
        .admin(Method::GET, "/tasks?cursor=bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = app
        .admin(Method::GET, "/tasks?limit=0")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

async fn priority_queue_serves_highest_ready_task(app: TestApp) {
    let low = app
        .create_task(json!({ "title": "low", "priority": 1 }))
        .await;
    let high = app
        .create_task(json!({ "title": "high", "priority": 99 }))
        .await;
    let blocked_top = app
        .create_task(json!({ "title": "top but blocked", "priority": 100 }))
        .await;
    let res = app
        .admin(
            Method::PUT,
            &format!(
                "/tasks/{}/dependencies/{}",
                blocked_top["id"].as_str().unwrap(),
                low["id"].as_str().unwrap()
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let next: Value = app
        .admin(Method::GET, "/tasks/next?project=default")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(next["id"], high["id"]);

    // Finish `high` and `low`: the once-blocked task becomes the next.
    for t in [&high, &low] {
        let res = app
            .admin(
                Method::PATCH,
                &format!("/tasks/{}", t["id"].as_str().unwrap()),
            )
            .json(&json!({ "status": "done" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let next: Value = app
        .admin(Method::GET, "/tasks/next")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(next["id"], blocked_top["id"]);
    assert_eq!(next["blocked"], false);
}

async fn claim_takes_the_next_task(app: TestApp) {
    app.create_project("p", &["alice"]).await;
    let token = app.token_for("alice").await;
    let task = app
        .create_task(json!({ "title": "only", "project_id": "p" }))
        .await;
    let res = app
        .with(&token, Method::POST, "/tasks/next/claim?project=p")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let claimed: Value = res.json().await.unwrap();
    assert_eq!(claimed["id"], task["id"]);
    assert_eq!(claimed["status"], "in_progress");
    assert_eq!(claimed["assignee"], "alice");
    let res = app
        .with(&token, Method::POST, "/tasks/next/claim?project=p")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_ready_task");
}

async fn every_change_is_logged_in_the_project_room(app: TestApp) {
    app.create_project("p", &[]).await;
    let a = app
        .create_task(json!({ "title": "a", "project_id": "p" }))
        .await;
    let b = app
        .create_task(json!({ "title": "b", "project_id": "p" }))
        .await;
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let patch = |body: Value| {
        app.admin(Method::PATCH, &format!("/tasks/{a_id}"))
            .json(&body)
            .send()
    };
    assert_eq!(patch(json!({ "title": "a2" })).await.unwrap().status(), 200);
    assert_eq!(patch(json!({ "priority": 7 })).await.unwrap().status(), 200);
    let dep = format!("/tasks/{a_id}/dependencies/{b_id}");
    assert_eq!(
        app.admin(Method::PUT, &dep).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        app.admin(Method::DELETE, &dep)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.admin(Method::DELETE, &format!("/tasks/{b_id}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );

    let events = app.store.events_after("project:p", 0, 100).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "task.created",
            "task.created",
            "task.updated",
            "task.moved",
            "dependency.added",
            "dependency.removed",
            "task.deleted"
        ]
    );
    let offsets: Vec<i64> = events.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, (1..=7).collect::<Vec<_>>());
    assert_eq!(
        events[3].data["priority"], 7,
        "events carry the task after the change"
    );
    assert_eq!(events[4].data["dependency_id"], b["id"]);
    assert_eq!(events[6].data["id"], b["id"]);
    assert!(
        app.store
            .events_after("project:default", 0, 10)
            .await
            .unwrap()
            .is_empty(),
        "rooms are per project"
    );
}
