use crate::common::{Backend, TestApp};
use reqwest::Method;
use serde_json::Value;

crate::on_both_backends!(request_ids_metrics_and_openapi);

async fn request_ids_metrics_and_openapi(app: TestApp) {
    let res = app
        .admin(Method::GET, "/tasks")
        .header("X-Request-Id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    let res = app.client.get(app.url("/tasks")).send().await.unwrap();
    let header = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["error"]["request_id"],
        header.as_str(),
        "the error names its request"
    );

    let task = app.create_task(serde_json::json!({ "title": "m" })).await;
    app.admin(
        Method::GET,
        &format!("/tasks/{}", task["id"].as_str().unwrap()),
    )
    .send()
    .await
    .unwrap();
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"http_requests_total{method="GET",route="/tasks/{id}",status="200"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("http_request_duration_seconds_bucket"));
    assert!(metrics.contains("process_resident_memory_bytes"));

    // The database pools: their sizes and how long this check waited for a connection in
    // /readyz, and as gauges and the acquire probe's histogram in /metrics (sampled each second).
    let ready: Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["pools"][0]["pool"], "read", "{ready}");
    assert_eq!(ready["pools"][1]["pool"], "write", "{ready}");
    assert!(ready["pools"][0]["max"].as_u64().unwrap() >= 1, "{ready}");
    assert!(ready["acquire_ms"].as_f64().unwrap() >= 0.0, "{ready}");
    let start = std::time::Instant::now();
    loop {
        let metrics = app.metrics().await;
        if metrics.contains(r#"db_pool_max_connections{pool="read"}"#)
            && metrics.contains(r#"db_pool_connections{pool="read",state="busy"}"#)
            && metrics.contains(r#"db_pool_acquire_seconds_count{pool="read"}"#)
        {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "no pool metrics: {metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/tasks",
        "/tasks/{id}",
        "/tasks/next",
        "/tasks/next/claim",
        "/tasks/{id}/dependencies/{dep_id}",
        "/tasks/export",
        "/tasks/import",
        "/projects",
        "/projects/{id}/plan",
        "/projects/{id}/members/{user_id}",
        "/auth/tokens",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
    assert!(doc["components"]["schemas"]["Task"].is_object());
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.cors_origins = vec!["http://board.example".into()]
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url("/tasks"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .send()
    };
    let ok = preflight("http://board.example").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "http://board.example"
    );
    let other = preflight("http://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn shutdown_finishes_and_stops_listening() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let addr = app.addr;
    app.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_share_one_metric_label() {
    // Any token is a valid HTTP method; if each became a label of its own, a client could grow
    // the metrics registry (kept for the life of the process) without bound.
    let app = TestApp::spawn(Backend::Sqlite).await;
    for i in 0..20 {
        let method = Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        let res = app
            .client
            .request(method, app.url("/tasks"))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error(), "{}", res.status());
    }
    let metrics = app.metrics().await;
    assert!(!metrics.contains("MADEUP"), "{metrics}");
    assert!(
        metrics.contains(r#"http_requests_total{method="other",route="/tasks""#),
        "{metrics}"
    );
}
