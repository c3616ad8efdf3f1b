//! Chapter 6, error handling: a body that is not JSON and a field of the wrong type are answered
//! in the one structured error shape (`code`, `message`, `request_id`, `details`), and the
//! server's log line for that request carries the same request id, so a user's error report
//! leads straight to it. The log is visible only when the demo started the server itself.

use super::Ctx;
use crate::show;
use anyhow::{ensure, Context};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// How long the log line may take to appear.
const LOG_WAIT: Duration = Duration::from_secs(10);

pub(super) async fn run(ctx: &mut Ctx) -> anyhow::Result<String> {
    let api = &ctx.api;
    let project = ctx.cast.project(6);
    let request_id = format!("demo-{}-malformed", ctx.cast.run);
    let malformed = api
        .call(Method::POST, "/tasks")
        .header("x-request-id", &request_id)
        .body(
            "application/json",
            format!(r#"{{"title": "Half a task", "project_id": "{project}", "priority": "#),
        )
        .send()
        .await?;
    malformed.show().expect(400)?;
    show::note(show::brief(&malformed.body));
    ensure!(
        malformed.error_code() == Some("malformed_json"),
        "not malformed_json: {}",
        malformed.body
    );
    ensure!(
        malformed.body["error"]["request_id"] == request_id.as_str(),
        "the error does not name the request id"
    );

    let mistyped = api
        .call(Method::POST, "/tasks")
        .json(&json!({ "title": "Typed task", "priority": "high", "project_id": project }))
        .send()
        .await?;
    mistyped.show().expect(400)?;
    show::note(show::brief(&mistyped.body));
    ensure!(
        mistyped.error_code() == Some("invalid_field")
            && mistyped.body["error"]["details"]["field"] == "priority",
        "not invalid_field on priority: {}",
        mistyped.body
    );

    let Some(logs) = &ctx.logs else {
        show::note(format!(
            "--target: the server's log is not visible to the demo; look for {request_id} in it"
        ));
        return Ok(
            "structured 400s with the request id (the log is not visible with --target)".into(),
        );
    };
    let line = logs
        .wait_for(&request_id, LOG_WAIT)
        .await
        .with_context(|| format!("no log line names {request_id}"))?;
    show::note(format!("the server's log: {}", show::cut(&line, 240)));
    if let Ok(entry) = serde_json::from_str::<Value>(&line) {
        show::note(format!(
            "level {}, status {}, span request_id {}",
            entry["level"], entry["status"], entry["span"]["request_id"]
        ));
    }
    Ok("structured 400s; the server's log line has the same request id".into())
}
