//! Chapter 1, HTTP routing: every route the demo calls is one the server documents in
//! `/openapi.json`; a path with a parameter is matched to its route; an unknown path is a 404
//! and a known path with the wrong method a 405, both with the API's one JSON error shape.

use super::Ctx;
use crate::show;
use anyhow::{ensure, Context};
use reqwest::Method;
use serde_json::json;

/// The routes the demo calls (besides `/openapi.json` itself, `/healthz` and `/metrics`), as
/// `/openapi.json` names them.
const ROUTES: [(&str, &str); 14] = [
    ("post", "/projects"),
    ("get", "/projects/{id}/plan"),
    ("post", "/auth/tokens"),
    ("get", "/auth/me"),
    ("post", "/tasks"),
    ("get", "/tasks"),
    ("get", "/tasks/{id}"),
    ("patch", "/tasks/{id}"),
    ("get", "/tasks/next"),
    ("post", "/tasks/next/claim"),
    ("put", "/tasks/{id}/dependencies/{dep_id}"),
    ("get", "/tasks/export"),
    ("post", "/tasks/import"),
    ("get", "/events"),
];

pub(super) async fn run(ctx: &mut Ctx) -> anyhow::Result<String> {
    let api = &ctx.api;
    let doc = api
        .call_anonymous(Method::GET, "/openapi.json")
        .send()
        .await?;
    doc.show().expect(200)?;
    let paths = doc.body["paths"]
        .as_object()
        .context("/openapi.json has no paths")?;
    let operations: usize = paths
        .values()
        .filter_map(|p| p.as_object())
        .map(|p| p.len())
        .sum();
    show::note(format!(
        "the server documents {} paths, {operations} operations; the demo calls {} of them:",
        paths.len(),
        ROUTES.len()
    ));
    for chunk in ROUTES.chunks(5) {
        let line: Vec<String> = chunk
            .iter()
            .map(|(m, p)| format!("{} {p}", m.to_uppercase()))
            .collect();
        show::note(format!("  {}", line.join(", ")));
    }
    let missing: Vec<String> = ROUTES
        .iter()
        .filter(|(method, path)| paths.get(*path).and_then(|p| p.get(*method)).is_none())
        .map(|(m, p)| format!("{} {p}", m.to_uppercase()))
        .collect();
    ensure!(
        missing.is_empty(),
        "not in /openapi.json: {}",
        missing.join(", ")
    );

    let project = ctx.cast.project(1);
    let created = api
        .call(Method::POST, "/tasks")
        .json(&json!({ "title": "Route me", "project_id": project }))
        .send()
        .await?;
    created.show().expect(201)?;
    let id = created.body["id"].as_str().context("no id")?.to_owned();
    let path = format!("/tasks/{id}");
    let read = api.call(Method::GET, &path).send().await?;
    read.show().expect(200)?;
    ensure!(
        read.body["id"] == id.as_str(),
        "another task: {}",
        read.body
    );
    show::note(format!(
        "matched GET /tasks/{{id}} with id = {}; ETag {}",
        show::short_id(&id),
        read.header("etag").unwrap_or("(none)")
    ));

    let unknown = api.call(Method::GET, "/no/such/route").send().await?;
    unknown.show().expect(404)?;
    show::note(show::brief(&unknown.body));
    ensure!(
        unknown.error_code() == Some("not_found"),
        "a 404 without the not_found error body: {}",
        unknown.body
    );

    let wrong = api.call(Method::DELETE, "/projects").send().await?;
    wrong.show().expect(405)?;
    show::note(show::brief(&wrong.body));
    if let Some(allow) = wrong.header("allow") {
        show::note(format!("Allow: {allow}"));
    }
    ensure!(
        wrong.error_code() == Some("method_not_allowed"),
        "a 405 without the method_not_allowed error body: {}",
        wrong.body
    );
    Ok(format!(
        "{} routes called are documented; 404 not_found and 405 method_not_allowed as JSON",
        ROUTES.len()
    ))
}
