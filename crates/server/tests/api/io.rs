use crate::common::{Backend, TestApp};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

crate::on_both_backends!(
    export_streams_every_task_as_ndjson_and_csv,
    an_export_imports_back_identically,
    one_bad_line_in_a_large_import_imports_nothing,
    import_reports_each_bad_line,
    an_import_does_not_stall_other_requests,
    a_taken_id_deep_in_a_large_import_imports_nothing,
    dependencies_cross_batches_and_are_checked_at_the_end,
);

async fn import(
    app: &TestApp,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.admin(Method::POST, "/tasks/import")
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The `(line, reason)` pairs of an `import_rejected` answer.
fn bad_lines(err: &Value) -> Vec<(i64, String)> {
    err["error"]["details"]["lines"]
        .as_array()
        .expect("an import_rejected answer lists its lines")
        .iter()
        .map(|l| {
            (
                l["line"].as_i64().unwrap(),
                l["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn count_tasks(app: &TestApp) -> usize {
    let res = app
        .admin(Method::GET, "/tasks/export")
        .send()
        .await
        .unwrap();
    res.text().await.unwrap().lines().count()
}

async fn export_streams_every_task_as_ndjson_and_csv(app: TestApp) {
    // More than one store chunk (500), so the keyset paging is exercised.
    let lines: String = (0..1234)
        .map(|i| format!("{{\"title\":\"t{i}\",\"priority\":{}}}\n", i % 101))
        .collect();
    assert_eq!(
        import(&app, "application/x-ndjson", lines).await.status(),
        201
    );

    let res = app
        .admin(Method::GET, "/tasks/export?format=ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let text = res.text().await.unwrap();
    let tasks: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tasks.len(), 1234);
    let mut ids: Vec<&str> = tasks.iter().map(|t| t["id"].as_str().unwrap()).collect();
    let sorted = {
        let mut s = ids.clone();
        s.sort();
        s
    };
    assert_eq!(ids, sorted, "oldest first");
    ids.dedup();
    assert_eq!(ids.len(), 1234, "no task twice across chunks");

    let res = app
        .admin(Method::GET, "/tasks/export?format=csv")
        .send()
        .await
        .unwrap();
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = res.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(reader.headers().unwrap().get(1), Some("title"));
    assert_eq!(reader.records().count(), 1234);
    let res = app
        .admin(Method::GET, "/tasks/export?format=xml")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

async fn an_export_imports_back_identically(app: TestApp) {
    app.create_project("p", &[]).await;
    let a = app.create_task(json!({ "title": "a, with \"quotes\"", "description": "and a\nnewline", "project_id": "p", "priority": 3 })).await;
    let b = app
        .create_task(
            json!({ "title": "b", "project_id": "p", "assignee": "zoe", "status": "done" }),
        )
        .await;
    let res = app
        .admin(
            Method::PUT,
            &format!(
                "/tasks/{}/dependencies/{}",
                a["id"].as_str().unwrap(),
                b["id"].as_str().unwrap()
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for format in ["csv", "ndjson"] {
        let exported = app
            .admin(Method::GET, &format!("/tasks/export?format={format}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let target = TestApp::spawn(Backend::Sqlite).await;
        target.create_project("p", &[]).await;
        let content_type = if format == "csv" {
            "text/csv"
        } else {
            "application/x-ndjson"
        };
        let res = import(&target, content_type, exported).await;
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["imported"], 2, "{format}: {body}");
        for original in [&a, &b] {
            let path = format!("/tasks/{}", original["id"].as_str().unwrap());
            let copy: Value = target
                .admin(Method::GET, &path)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let fresh: Value = app
                .admin(Method::GET, &path)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for field in [
                "id",
                "title",
                "status",
                "priority",
                "project_id",
                "assignee",
                "dependencies",
                "blocked",
            ] {
                assert_eq!(copy[field], fresh[field], "{format}: {field}");
            }
        }
    }
}

async fn one_bad_line_in_a_large_import_imports_nothing(app: TestApp) {
    let mut body = String::new();
    for i in 1..=20_000 {
        if i == 10_000 {
            body.push_str("{\"title\":\"bad\",\"status\":\"someday\"}\n");
        } else {
            body.push_str(&format!("{{\"title\":\"task {i}\"}}\n"));
        }
    }
    let res = import(&app, "application/x-ndjson", body).await;
    assert_eq!(res.status(), 400);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "import_rejected");
    assert_eq!(err["error"]["details"]["total"], 1);
    assert_eq!(err["error"]["details"]["lines"][0]["line"], 10_000);
    assert!(err["error"]["details"]["lines"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("status"));
    assert_eq!(count_tasks(&app).await, 0, "nothing imported");
    assert!(
        app.store
            .events_after("project:default", 0, 10)
            .await
            .unwrap()
            .is_empty(),
        "no event logged"
    );
    assert_eq!(
        app.store.last_offset("project:default").await.unwrap(),
        0,
        "no offset consumed"
    );
}

async fn import_reports_each_bad_line(app: TestApp) {
    let first = uuid::Uuid::now_v7();
    let body = format!(
        "{{\"id\":\"{first}\",\"title\":\"first\"}}\n\
         {{\"title\":\"second\",\"dependencies\":[\"{first}\"]}}\n\
         \n\
         not json\n\
         {{\"title\":\"x\",\"priority\":500}}\n\
         {{\"title\":\"y\",\"dependencies\":[\"{}\"]}}\n",
        uuid::Uuid::now_v7()
    );
    let res = import(&app, "application/x-ndjson", body).await;
    let err: Value = res.json().await.unwrap();
    let lines: Vec<i64> = err["error"]["details"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [4, 5], "{err}");
    // Past the first bad line only validation continues; fixing those imports the rest, with a
    // dependency on an earlier line of the same import.
    let body = format!(
        "{{\"id\":\"{first}\",\"title\":\"first\"}}\n{{\"title\":\"second\",\"dependencies\":[\"{first}\"]}}\n"
    );
    let res = import(&app, "application/ndjson", body).await;
    assert_eq!(res.status(), 201);
    // Dependencies are checked once every line is in: a missing one, and a cycle, are reported
    // on their lines.
    let (x, y) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let missing = uuid::Uuid::now_v7();
    let body = format!(
        "{{\"id\":\"{x}\",\"title\":\"x\",\"dependencies\":[\"{y}\"]}}\n\
         {{\"id\":\"{y}\",\"title\":\"y\",\"dependencies\":[\"{x}\"]}}\n\
         {{\"title\":\"z\",\"dependencies\":[\"{missing}\"]}}\n"
    );
    let err: Value = import(&app, "application/x-ndjson", body)
        .await
        .json()
        .await
        .unwrap();
    let reasons = bad_lines(&err);
    assert_eq!(reasons.len(), 3, "{err}");
    assert!(
        reasons[0].1.contains("cycle") && reasons[1].1.contains("cycle"),
        "{reasons:?}"
    );
    assert_eq!(reasons[2].0, 3);
    assert!(reasons[2].1.contains("not found"));
    let res = import(&app, "text/csv", "title,priority,colour\nx,1,red\n").await;
    let err: Value = res.json().await.unwrap();
    assert!(err["error"]["details"]["lines"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("colour"));
    let res = import(&app, "text/csv", "title,priority\nok,1\nbad,high\n,3\n").await;
    let err: Value = res.json().await.unwrap();
    let lines: Vec<i64> = err["error"]["details"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [3, 4]);
    let res = import(&app, "application/json", "[]").await;
    assert_eq!(res.status(), 415);
    assert_eq!(count_tasks(&app).await, 2);
}

async fn an_import_does_not_stall_other_requests(app: TestApp) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let importing = tokio::spawn({
        let req = app
            .admin(Method::POST, "/tasks/import")
            .header("Content-Type", "application/x-ndjson")
            .body(body);
        async move { req.send().await.unwrap() }
    });
    tx.send(Ok("{\"title\":\"one\"}\n".into())).await.unwrap();
    // The import is open and waiting for more body; reads and health checks still answer.
    for _ in 0..3 {
        let res = app.admin(Method::GET, "/tasks").send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            app.client
                .get(app.url("/healthz"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    tx.send(Ok("{\"title\":\"two\"}\n".into())).await.unwrap();
    drop(tx);
    let res = importing.await.unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(count_tasks(&app).await, 2);
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<String, std::io::Error>>,
) -> impl futures::Stream<Item = Result<String, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

#[tokio::test]
async fn an_import_over_the_limit_gets_413_and_imports_nothing() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.max_import_bytes = 10_000).await;
    let body: String = (0..1000)
        .map(|i| format!("{{\"title\":\"t{i}\"}}\n"))
        .collect();
    let res = import(&app, "application/x-ndjson", body.clone()).await;
    assert_eq!(res.status(), 413);
    // Without Content-Length (chunked), the limit is enforced while streaming.
    let chunks: Vec<Result<String, std::io::Error>> =
        body.lines().map(|l| Ok(format!("{l}\n"))).collect();
    let res = import(
        &app,
        "application/x-ndjson",
        reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
    )
    .await;
    assert_eq!(res.status(), 413);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "payload_too_large");
    assert_eq!(count_tasks(&app).await, 0);
}

/// Lines go in 500 per statement: an id taken by an earlier line of the import, or by a task
/// that exists, is still refused with its line, and the whole import with it.
async fn a_taken_id_deep_in_a_large_import_imports_nothing(app: TestApp) {
    let existing = app.create_task(json!({ "title": "there before" })).await;
    let repeated = uuid::Uuid::now_v7();
    let mut body = String::new();
    for i in 1..=3000 {
        let line = match i {
            10 | 2000 => json!({ "id": repeated, "title": format!("t{i}") }),
            2999 => json!({ "id": existing["id"], "title": "clash" }),
            _ => json!({ "title": format!("t{i}") }),
        };
        body.push_str(&format!("{line}\n"));
    }
    let res = import(&app, "application/x-ndjson", body).await;
    assert_eq!(res.status(), 400);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "import_rejected", "{err}");
    let lines: Vec<i64> = err["error"]["details"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_i64().unwrap())
        .collect();
    // The import stops at the first batch with a taken id: line 2000 (line 10 took it first).
    assert_eq!(lines, [2000], "{err}");
    assert!(err["error"]["details"]["lines"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("exists"));
    assert_eq!(count_tasks(&app).await, 1, "nothing imported");
    assert_eq!(app.store.last_offset("project:default").await.unwrap(), 1);
    let body = format!("{}\n", json!({ "id": existing["id"], "title": "clash" }));
    let err: Value = import(&app, "application/x-ndjson", body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(err["error"]["details"]["lines"][0]["line"], 1, "{err}");
}

/// A dependency may point forward, past the batch its line is inserted in; the checks (missing,
/// other project, cycle) run once every line is in, and name the lines.
async fn dependencies_cross_batches_and_are_checked_at_the_end(app: TestApp) {
    app.create_project("other", &[]).await;
    let elsewhere = app
        .create_task(json!({ "title": "elsewhere", "project_id": "other" }))
        .await;
    let ids: Vec<uuid::Uuid> = (0..1300).map(|_| uuid::Uuid::now_v7()).collect();
    let line = |i: usize, deps: Vec<String>| {
        format!(
            "{}\n",
            json!({ "id": ids[i], "title": format!("t{i}"), "dependencies": deps })
        )
    };
    // Line 1 depends on line 1201 (another batch, inserted later); every other line on the next.
    let mut good = String::new();
    for i in 0..1300 {
        let deps = match i {
            0 => vec![ids[1200].to_string()],
            1299 => vec![],
            _ => vec![ids[i + 1].to_string()],
        };
        good.push_str(&line(i, deps));
    }
    // A cycle among the last 50 lines, a missing task and another project's task. (Every task
    // that waits on a cycle is reported with it, so the other lines wait on nothing here.)
    let mut bad = String::new();
    for i in 0..1300 {
        let deps = match i {
            0 => vec![ids[1200].to_string()],
            1250..=1298 => vec![ids[i + 1].to_string()],
            1299 => vec![ids[1250].to_string()],
            700 => vec![uuid::Uuid::now_v7().to_string()],
            900 => vec![elsewhere["id"].as_str().unwrap().to_owned()],
            _ => vec![],
        };
        bad.push_str(&line(i, deps));
    }
    let err: Value = import(&app, "application/x-ndjson", bad)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(err["error"]["code"], "import_rejected", "{err}");
    let reasons = bad_lines(&err);
    assert!(
        reasons
            .iter()
            .any(|(l, r)| *l == 701 && r.contains("not found")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(l, r)| *l == 901 && r.contains("project")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(l, r)| *l == 1300 && r.contains("cycle")),
        "{reasons:?}"
    );
    assert_eq!(reasons.len(), 52, "{reasons:?}");
    assert_eq!(count_tasks(&app).await, 1, "nothing imported");

    let res = import(&app, "application/x-ndjson", good).await;
    assert_eq!(res.status(), 201);
    let first: Value = app
        .admin(Method::GET, &format!("/tasks/{}", ids[0]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["dependencies"], json!([ids[1200]]));
    assert_eq!(first["blocked"], true);
    assert_eq!(count_tasks(&app).await, 1301);
}
