use crate::common::TestApp;
use reqwest::Method;
use serde_json::{json, Value};

crate::on_both_backends!(
    a_cycle_is_refused_with_its_path,
    self_and_cross_project_dependencies_are_refused,
    deleting_a_depended_on_task_needs_cascade,
    the_plan_respects_dependencies_then_priority,
);

async fn put_dep(app: &TestApp, task: &Value, dep: &Value) -> reqwest::Response {
    app.admin(
        Method::PUT,
        &format!(
            "/tasks/{}/dependencies/{}",
            task["id"].as_str().unwrap(),
            dep["id"].as_str().unwrap()
        ),
    )
    .send()
    .await
    .unwrap()
}

async fn a_cycle_is_refused_with_its_path(app: TestApp) {
    let a = app.create_task(json!({ "title": "a" })).await;
    let b = app.create_task(json!({ "title": "b" })).await;
    let c = app.create_task(json!({ "title": "c" })).await;
    assert_eq!(put_dep(&app, &a, &b).await.status(), 200);
    assert_eq!(put_dep(&app, &b, &c).await.status(), 200);
    let res = put_dep(&app, &c, &a).await;
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "dependency_cycle");
    assert_eq!(
        body["error"]["details"]["cycle"],
        json!([c["id"], a["id"], b["id"], c["id"]])
    );
    // Adding an existing edge again is harmless and changes nothing.
    let res = put_dep(&app, &a, &b).await;
    assert_eq!(res.status(), 200);
    let again: Value = res.json().await.unwrap();
    assert_eq!(again["version"], 2);
    assert_eq!(again["dependencies"], json!([b["id"]]));
    assert_eq!(again["blocked"], true);
}

async fn self_and_cross_project_dependencies_are_refused(app: TestApp) {
    app.create_project("other", &[]).await;
    let a = app.create_task(json!({ "title": "a" })).await;
    let x = app
        .create_task(json!({ "title": "x", "project_id": "other" }))
        .await;
    let res = put_dep(&app, &a, &a).await;
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "dependency_cycle");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("itself"));
    let res = put_dep(&app, &a, &x).await;
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "dependency_other_project");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("within a project"),
        "{body}"
    );
    let missing = json!({ "id": uuid::Uuid::now_v7().to_string() });
    let res = put_dep(&app, &a, &missing).await;
    assert_eq!(res.status(), 404);
}

async fn deleting_a_depended_on_task_needs_cascade(app: TestApp) {
    let base = app.create_task(json!({ "title": "base" })).await;
    let d1 = app.create_task(json!({ "title": "d1" })).await;
    let d2 = app.create_task(json!({ "title": "d2" })).await;
    put_dep(&app, &d1, &base).await;
    put_dep(&app, &d2, &base).await;
    let path = format!("/tasks/{}", base["id"].as_str().unwrap());
    let res = app.admin(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "has_dependents");
    let mut named: Vec<Value> = body["error"]["details"]["dependents"]
        .as_array()
        .unwrap()
        .clone();
    named.sort_by_key(|v| v.as_str().unwrap().to_owned());
    assert_eq!(named, vec![d1["id"].clone(), d2["id"].clone()]);

    let res = app
        .admin(Method::DELETE, &format!("{path}?cascade=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let d1_now: Value = app
        .admin(
            Method::GET,
            &format!("/tasks/{}", d1["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d1_now["dependencies"], json!([]));
    assert_eq!(d1_now["blocked"], false);
}

async fn the_plan_respects_dependencies_then_priority(app: TestApp) {
    app.create_project("plan", &[]).await;
    let t = |title: &str, priority: i64| json!({ "title": title, "priority": priority, "project_id": "plan" });
    let deploy = app.create_task(t("deploy", 100)).await;
    let build = app.create_task(t("build", 10)).await;
    let test = app.create_task(t("test", 20)).await;
    let docs = app.create_task(t("docs", 50)).await;
    put_dep(&app, &deploy, &test).await;
    put_dep(&app, &test, &build).await;
    let plan: Value = app
        .admin(Method::GET, "/projects/plan/plan")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order: Vec<&str> = plan["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["docs", "build", "test", "deploy"]);
    let _ = docs;
}
