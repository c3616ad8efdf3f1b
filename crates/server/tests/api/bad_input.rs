use crate::common::TestApp;
use reqwest::Method;
use serde_json::{json, Value};

crate::on_both_backends!(bad_bodies_get_clear_errors_and_change_nothing);

async fn error_of(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status(), status);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: Value = res.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["request_id"].is_string(), "{body}");
    body["error"].clone()
}

async fn bad_bodies_get_clear_errors_and_change_nothing(app: TestApp) {
    let post = |body: reqwest::Body| {
        app.admin(Method::POST, "/tasks")
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let e = error_of(post("{\"title\": ".into()).await.unwrap(), 400).await;
    assert_eq!(e["code"], "malformed_json");
    let e = error_of(post("".into()).await.unwrap(), 400).await;
    assert_eq!(e["code"], "malformed_json");
    assert!(e["message"].as_str().unwrap().contains("empty"));
    let e = error_of(
        post(r#"{"title":"x","priority":"high"}"#.into())
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(e["code"], "invalid_field");
    assert_eq!(e["details"]["field"], "priority");
    let e = error_of(
        post(r#"{"title":"x","status":"someday"}"#.into())
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(e["details"]["field"], "status");
    assert!(e["message"].as_str().unwrap().contains("someday"));
    let e = error_of(
        post(r#"{"title":"x","priority":101}"#.into())
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(e["details"]["field"], "priority");
    let e = error_of(post(r#"{"title":"   "}"#.into()).await.unwrap(), 400).await;
    assert_eq!(e["details"]["field"], "title");
    let e = error_of(post(r#"{"priority":1}"#.into()).await.unwrap(), 400).await;
    assert_eq!(e["details"]["field"], "title");
    let e = error_of(
        post(r#"{"title":"x","colour":"red"}"#.into())
            .await
            .unwrap(),
        400,
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("colour"));
    let e = error_of(post(r#"[1,2]"#.into()).await.unwrap(), 400).await;
    assert_eq!(e["code"], "invalid_field");
    let e = error_of(
        post(json!({ "title": "x".repeat(201) }).to_string().into())
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(e["details"]["field"], "title");

    // A 10 MiB title: refused by the body limit before it is parsed.
    let huge = json!({ "title": "x".repeat(10 * 1024 * 1024) }).to_string();
    let e = error_of(post(huge.into()).await.unwrap(), 413).await;
    assert_eq!(e["code"], "payload_too_large");

    // Not JSON at all.
    let res = app
        .admin(Method::POST, "/tasks")
        .header("Content-Type", "text/plain")
        .body("title=x")
        .send()
        .await
        .unwrap();
    let e = error_of(res, 415).await;
    assert_eq!(e["code"], "unsupported_media_type");

    // Bad ids, bad If-Match, bad queries, unknown routes, wrong methods.
    let e = error_of(
        app.admin(Method::GET, "/tasks/not-a-uuid")
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(e["details"]["field"], "id");
    let task = app.create_task(json!({ "title": "keep" })).await;
    let path = format!("/tasks/{}", task["id"].as_str().unwrap());
    let res = app
        .admin(Method::PATCH, &path)
        .header("If-Match", "yesterday")
        .json(&json!({ "title": "y" }))
        .send()
        .await
        .unwrap();
    let e = error_of(res, 400).await;
    assert_eq!(e["details"]["field"], "If-Match");
    let e = error_of(
        app.admin(Method::PATCH, &path)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(e["code"], "invalid_field");
    let e = error_of(
        app.admin(Method::GET, "/tasks?status=later")
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(e["details"]["field"], "status");
    let e = error_of(
        app.admin(Method::GET, "/no/such/route")
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_eq!(e["code"], "not_found");
    let e = error_of(app.admin(Method::PUT, "/tasks").send().await.unwrap(), 405).await;
    assert_eq!(e["code"], "method_not_allowed");

    // Nothing was created or changed by any of it.
    let page: Value = app
        .admin(Method::GET, "/tasks")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["title"], "keep");
    assert_eq!(page["items"][0]["version"], 1);
}
