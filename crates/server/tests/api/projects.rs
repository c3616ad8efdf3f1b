use crate::common::TestApp;
use reqwest::Method;
use serde_json::{json, Value};

crate::on_both_backends!(
    members_see_only_their_projects,
    project_ids_are_validated_and_unique
);

async fn members_see_only_their_projects(app: TestApp) {
    let alice = app.token_for("alice").await;
    let bob = app.token_for("bob").await;
    // Alice creates a project: she becomes its member.
    let res = app
        .with(&alice, Method::POST, "/projects")
        .json(&json!({ "id": "web", "name": "Web" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let project: Value = res.json().await.unwrap();
    assert_eq!(project["members"], json!(["alice"]));

    let res = app
        .with(&alice, Method::POST, "/tasks")
        .json(&json!({ "title": "secret", "project_id": "web" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let task: Value = res.json().await.unwrap();
    let task_path = format!("/tasks/{}", task["id"].as_str().unwrap());

    // Bob is not a member: 403 everywhere, and his listing is empty.
    assert_eq!(
        app.with(&bob, Method::GET, &task_path)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        app.with(&bob, Method::GET, "/projects/web")
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let res = app
        .with(&bob, Method::POST, "/tasks")
        .json(&json!({ "title": "intrude", "project_id": "web" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    let page: Value = app
        .with(&bob, Method::GET, "/tasks")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"], json!([]));
    let projects: Value = app
        .with(&bob, Method::GET, "/projects")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(projects, json!([]));
    // Bob cannot see the default project either (only its members and the admin can).
    assert_eq!(
        app.with(&bob, Method::GET, "/tasks/next")
            .send()
            .await
            .unwrap()
            .status(),
        403
    );

    // Alice adds Bob; now he sees the task.
    let res = app
        .with(&alice, Method::PUT, "/projects/web/members/bob")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        app.with(&bob, Method::GET, &task_path)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let page: Value = app
        .with(&bob, Method::GET, "/tasks")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    // And removes him again.
    let res = app
        .with(&alice, Method::DELETE, "/projects/web/members/bob")
        .send()
        .await
        .unwrap();
    let project: Value = res.json().await.unwrap();
    assert_eq!(project["members"], json!(["alice"]));
    assert_eq!(
        app.with(&bob, Method::GET, &task_path)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );

    // The admin sees everything.
    let projects: Value = app
        .admin(Method::GET, "/projects")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = projects
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["default", "web"]);
}

async fn project_ids_are_validated_and_unique(app: TestApp) {
    app.create_project("p1", &[]).await;
    let res = app
        .admin(Method::POST, "/projects")
        .json(&json!({ "id": "p1", "name": "again" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "project_exists");
    let res = app
        .admin(Method::POST, "/projects")
        .json(&json!({ "id": "Bad Id", "name": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["details"]["field"], "id");
    let res = app
        .admin(Method::POST, "/projects")
        .json(&json!({ "name": "generated id" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = app
        .admin(Method::POST, "/tasks")
        .json(&json!({ "title": "x", "project_id": "nope" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "project_not_found");
    assert_eq!(
        app.admin(Method::GET, "/projects/nope")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}
