use crate::common::TestApp;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashSet;

crate::on_both_backends!(
    concurrent_claims_never_share_a_task,
    concurrent_creates_get_gapless_offsets
);

async fn concurrent_claims_never_share_a_task(app: TestApp) {
    app.create_project("q", &[]).await;
    for i in 0..30 {
        app.create_task(
            json!({ "title": format!("job {i}"), "project_id": "q", "priority": i % 7 }),
        )
        .await;
    }
    let claims = (0..50).map(|_| {
        let req = app.admin(Method::POST, "/tasks/next/claim?project=q");
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        }
    });
    let results = futures::future::join_all(claims).await;
    let claimed: Vec<&str> = results
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, t)| t["id"].as_str().unwrap())
        .collect();
    let empty = results
        .iter()
        .filter(|(s, b)| *s == 404 && b["error"]["code"] == "no_ready_task")
        .count();
    assert_eq!(claimed.len(), 30, "every task is claimed once");
    assert_eq!(
        claimed.iter().collect::<HashSet<_>>().len(),
        30,
        "no task is claimed twice"
    );
    assert_eq!(empty, 20);
}

async fn concurrent_creates_get_gapless_offsets(app: TestApp) {
    app.create_project("busy", &[]).await;
    let creates = (0..1000).map(|i| {
        let req = app
            .admin(Method::POST, "/tasks")
            .json(&json!({ "title": format!("t{i}"), "project_id": "busy" }));
        async move { req.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures::future::join_all(creates).await;
    assert!(statuses.iter().all(|&s| s == 201), "{statuses:?}");
    let events = app
        .store
        .events_after("project:busy", 0, 2000)
        .await
        .unwrap();
    let offsets: Vec<i64> = events.iter().map(|e| e.offset).collect();
    assert_eq!(
        offsets,
        (1..=1000).collect::<Vec<_>>(),
        "offsets 1..=1000, no hole, no repeat"
    );
    let ids: HashSet<&str> = events
        .iter()
        .map(|e| e.data["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1000, "one event per task");
}
