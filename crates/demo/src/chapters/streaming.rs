//! Chapter 9, streaming: a project's tasks stream out as NDJSON and as CSV (one line per task,
//! CSV with its header), with their throughput; and an import is all or nothing: one bad line in
//! the middle of it is named by its line number and nothing at all is imported (the project's
//! count is the same before and after).

use super::{export, import, ndjson, plain_tasks, Ctx};
use crate::show;
use anyhow::ensure;
use serde_json::json;

pub(super) async fn run(ctx: &mut Ctx) -> anyhow::Result<String> {
    let api = &ctx.api;
    let project = ctx.cast.project(9);
    let count = ctx.sizes.stream_tasks.max(1);
    let imported = import(api, plain_tasks(project, "Streamed task", count)).await?;
    imported.show().expect(201)?;

    let ndjson_out = export(api, project, "ndjson").await?;
    show::note(format!(
        "GET /tasks/export?format=ndjson: {} lines, {}",
        ndjson_out.lines,
        ndjson_out.rates()
    ));
    ensure!(
        ndjson_out.lines == count,
        "the NDJSON export has {} lines for {count} tasks",
        ndjson_out.lines
    );
    let csv_out = export(api, project, "csv").await?;
    show::note(format!(
        "GET /tasks/export?format=csv:    {} lines, {}",
        csv_out.lines,
        csv_out.rates()
    ));
    ensure!(
        csv_out.lines == count + 1,
        "the CSV export has {} lines for {count} tasks and a header",
        csv_out.lines
    );

    let lines = ctx.sizes.bad_import_lines.max(1);
    let bad = lines / 2 + 1;
    let body = ndjson(lines, |i| {
        let status = if i + 1 == bad { "someday" } else { "todo" };
        json!({
            "title": format!("All or nothing {}", i + 1),
            "status": status,
            "project_id": project,
        })
    });
    let refused = import(api, body).await?;
    refused.show().expect(400)?;
    let details = &refused.body["error"]["details"];
    show::note(format!(
        "line {bad} of {lines} has status \"someday\": {} {}",
        refused.error_code().unwrap_or("?"),
        show::brief(details)
    ));
    ensure!(
        refused.error_code() == Some("import_rejected")
            && details["total"] == 1
            && details["lines"][0]["line"] == bad,
        "the refusal does not name line {bad} alone: {}",
        refused.body
    );
    let after = export(api, project, "ndjson").await?;
    show::note(format!(
        "tasks in the project: {} before, {} after",
        ndjson_out.lines, after.lines
    ));
    ensure!(
        after.lines == ndjson_out.lines,
        "the refused import changed the project: {} tasks, {} before",
        after.lines,
        ndjson_out.lines
    );
    Ok(format!(
        "NDJSON {:.1} MB/s, CSV {:.1} MB/s; a bad line {bad} of {lines} imported nothing",
        ndjson_out.bytes as f64 / 1e6 / ndjson_out.elapsed.as_secs_f64().max(1e-6),
        csv_out.bytes as f64 / 1e6 / csv_out.elapsed.as_secs_f64().max(1e-6)
    ))
}
