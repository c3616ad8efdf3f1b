//! `GET /tasks/export`: every visible task, streamed from the store as NDJSON or CSV, so memory
//! stays constant however many tasks there are.

use crate::api::tasks::project_filter;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;
use crate::store::TaskFilter;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use taskflow_protocol::{ErrorBody, Task};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export_tasks))
}

/// The two formats import and export share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Format {
    /// One JSON task per line.
    Ndjson,
    /// A header line, then one task per line.
    Csv,
}

/// CSV columns, in order. `dependencies` holds task ids separated by spaces.
pub(crate) const CSV_COLUMNS: [&str; 12] = [
    "id",
    "title",
    "description",
    "status",
    "priority",
    "project_id",
    "assignee",
    "dependencies",
    "blocked",
    "created_at",
    "updated_at",
    "version",
];

/// Query of `GET /tasks/export`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportQuery {
    /// `ndjson` (default) or `csv`.
    format: Option<Format>,
    /// Only this project.
    project: Option<String>,
}

/// Stream every task the caller may see, oldest first.
#[utoipa::path(get, path = "/tasks/export", tag = "io", params(ExportQuery), security(("bearer" = [])),
    responses((status = 200, description = "NDJSON or CSV stream", content_type = "application/x-ndjson"),
              (status = 403, body = ErrorBody)))]
async fn export_tasks(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let project = project_filter(&state, &caller, query.project.as_deref()).await?;
    let filter = TaskFilter {
        project,
        visible_to: caller.visibility(),
        ..TaskFilter::default()
    };
    let format = query.format.unwrap_or(Format::Ndjson);
    let tasks = state.store().export_tasks(filter);
    // The store reads tasks a page at a time; each page becomes one chunk of the body, encoded
    // into one buffer (one write, one chunk header), not a chunk per task.
    let lines = tasks.ready_chunks(EXPORT_CHUNK).map(move |batch| {
        let tasks = batch.into_iter().collect::<Result<Vec<Task>, _>>();
        tasks.map(|tasks| encode(format, &tasks)).map_err(|err| {
            // Headers are gone by now: the only way to signal failure is to cut the stream, so
            // the client sees a truncated body rather than a silently short export.
            tracing::error!(error = %err, "export failed mid-stream");
            std::io::Error::other("export failed")
        })
    });
    let (content_type, extension) = match format {
        Format::Ndjson => ("application/x-ndjson", "ndjson"),
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    let header = match format {
        Format::Csv => Some(Ok(Bytes::from(csv_line(&CSV_COLUMNS)))),
        Format::Ndjson => None,
    };
    // The next pages are read and encoded while the previous ones are on their way to the
    // client (the store's worker and the socket each keep a core busy), at most
    // EXPORT_AHEAD chunks ahead: memory stays a few pages however large the export. A client
    // that goes away drops the receiver, which ends the reader.
    let (ahead, chunks) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(EXPORT_AHEAD);
    tokio::spawn(async move {
        let mut lines = std::pin::pin!(futures::stream::iter(header).chain(lines));
        while let Some(chunk) = lines.next().await {
            if ahead.send(chunk).await.is_err() {
                break;
            }
        }
    });
    let body = Body::from_stream(futures::stream::unfold(chunks, |mut chunks| async move {
        chunks.recv().await.map(|chunk| (chunk, chunks))
    }));
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"tasks.{extension}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// Tasks per chunk of the body at most: the store's page.
const EXPORT_CHUNK: usize = 500;

/// Chunks read ahead of the client at most.
const EXPORT_AHEAD: usize = 4;

/// Encodes tasks as lines of the format, into one buffer.
fn encode(format: Format, tasks: &[Task]) -> Bytes {
    match format {
        Format::Ndjson => {
            let mut out = Vec::with_capacity(tasks.len() * 384);
            for task in tasks {
                serde_json::to_writer(&mut out, task).expect("tasks serialize");
                out.push(b'\n');
            }
            Bytes::from(out)
        }
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(Vec::with_capacity(tasks.len() * 256));
            let mut deps = String::new();
            for task in tasks {
                deps.clear();
                for (i, dep) in task.dependencies.iter().enumerate() {
                    if i > 0 {
                        deps.push(' ');
                    }
                    deps.push_str(&dep.to_string());
                }
                writer
                    .write_record([
                        task.id.to_string().as_str(),
                        &task.title,
                        task.description.as_deref().unwrap_or(""),
                        task.status.as_str(),
                        &task.priority.to_string(),
                        &task.project_id,
                        task.assignee.as_deref().unwrap_or(""),
                        &deps,
                        if task.blocked { "true" } else { "false" },
                        &task
                            .created_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        &task
                            .updated_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        &task.version.to_string(),
                    ])
                    .expect("writing to memory cannot fail");
            }
            Bytes::from(writer.into_inner().expect("writing to memory cannot fail"))
        }
    }
}

/// One CSV record with its line ending, quoted where needed by the csv crate.
fn csv_line(fields: &[&str]) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(fields)
        .expect("writing to memory cannot fail");
    writer.into_inner().expect("writing to memory cannot fail")
}
