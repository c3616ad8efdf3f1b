//! `POST /tasks/import`: NDJSON or CSV, streamed and atomic.
//!
//! The body is parsed and validated on a blocking thread (so a large import does not stall the
//! async executor) and handed line by line to one store transaction. Nothing is held in memory
//! but the current line and the first 100 errors; if any line is bad the transaction is rolled
//! back and the answer lists the bad lines.

mod parse;

use crate::auth::Caller;
use crate::domain::ProjectId;
use crate::error::ApiError;
use crate::extract::{declared_length, has_content_type, DRAIN_CAP};
use crate::state::AppState;
use crate::store::{ImportSpec, StoreError};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use futures::TryStreamExt;
use parse::{parse_body, Format, Parsed};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use taskflow_protocol::ErrorBody;
use tokio_util::io::{StreamReader, SyncIoBridge};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How many bad lines an answer lists.
const MAX_REPORTED: usize = 100;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    // The import enforces its own (larger) limit while streaming.
    OpenApiRouter::new().routes(routes!(import_tasks))
}

/// Answer of a successful import.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Imported {
    /// How many tasks were created.
    imported: u64,
}

/// Import tasks: all lines or none.
#[utoipa::path(post, path = "/tasks/import", tag = "io", security(("bearer" = [])),
    request_body(content = String, content_type = "application/x-ndjson",
        description = "One task per line: NDJSON objects, or CSV with a header naming the columns (as the export writes them)"),
    responses((status = 201, body = Imported), (status = 400, body = ErrorBody, description = "import_rejected: the bad lines"),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn import_tasks(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Imported>), ApiError> {
    let format = if has_content_type(
        &headers,
        &[
            "application/x-ndjson",
            "application/ndjson",
            "application/jsonl",
        ],
    ) {
        Format::Ndjson
    } else if has_content_type(&headers, &["text/csv"]) {
        Format::Csv
    } else {
        return Err(ApiError::UnsupportedMediaType(
            "expected Content-Type: application/x-ndjson or text/csv".into(),
        ));
    };
    let limit = state.config().max_import_bytes;
    if declared_length(&headers).is_some_and(|len| len > limit + DRAIN_CAP) {
        return Err(ApiError::PayloadTooLarge { limit });
    }

    // Count bytes as they stream in. Past the limit the parser sees no more data, but the rest is
    // still read (up to DRAIN_CAP) so the client gets to read the 413.
    let too_large = Arc::new(AtomicBool::new(false));
    let seen = AtomicUsize::new(0);
    let flag = too_large.clone();
    let stream = body
        .into_data_stream()
        .map_err(std::io::Error::other)
        .and_then(move |chunk| {
            let total = seen.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len();
            let result = if total > limit {
                flag.store(true, Ordering::Relaxed);
                Err(std::io::Error::other("import body too large"))
            } else {
                Ok(chunk)
            };
            futures::future::ready(result)
        });
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Parsed>(256);
    let parser = tokio::task::spawn_blocking(move || parse_body(format, reader, &tx));

    let mut importer = state.store().begin_import().await?;
    let mut allowed: HashMap<ProjectId, bool> = HashMap::new();
    let mut bad: Vec<Value> = Vec::new();
    let mut total_bad: u64 = 0;
    let mut read_error = None;
    while let Some(parsed) = rx.recv().await {
        let (line, outcome) = match parsed {
            Parsed::Line { line, spec } => (line, spec),
            Parsed::Unreadable(err) => {
                read_error = Some(err);
                break;
            }
        };
        let reason = match outcome {
            Err(reason) => Some(reason),
            // After the first bad line the transaction will be rolled back anyway: keep
            // validating the rest, but stop writing.
            Ok(_) if total_bad > 0 => None,
            Ok(spec) => {
                store_line(&state, &caller, &mut allowed, &mut importer, line, &spec).await?
            }
        };
        if let Some(reason) = reason {
            total_bad += 1;
            if bad.len() < MAX_REPORTED {
                bad.push(json!({ "line": line, "reason": reason }));
            }
        }
    }
    drop(rx);
    parser.await.map_err(|e| ApiError::Internal(e.into()))?;
    if too_large.load(Ordering::Relaxed) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    if let Some(err) = read_error {
        return Err(ApiError::MalformedJson(format!(
            "could not read the import body: {err}"
        )));
    }
    if total_bad > 0 {
        return Err(ApiError::ImportRejected {
            lines: bad,
            total: total_bad,
        });
    }
    match importer.commit().await? {
        Ok(imported) => Ok((StatusCode::CREATED, Json(Imported { imported }))),
        Err(lines) => Err(ApiError::ImportRejected {
            total: lines.len() as u64,
            lines: lines
                .into_iter()
                .take(MAX_REPORTED)
                .map(|e| json!({ "line": e.line, "reason": e.reason }))
                .collect(),
        }),
    }
}

/// Checks access and writes one line; `Some(reason)` if the line is refused.
async fn store_line(
    state: &AppState,
    caller: &Caller,
    allowed: &mut HashMap<ProjectId, bool>,
    importer: &mut crate::store::Importer,
    line: u64,
    spec: &ImportSpec,
) -> Result<Option<String>, ApiError> {
    let project = &spec.task.project_id;
    let may = match allowed.get(project) {
        Some(&may) => may,
        None => {
            let may = caller.is_admin() || state.store().is_member(project, caller.user()).await?;
            allowed.insert(project.clone(), may);
            may
        }
    };
    if !may {
        return Ok(Some(format!(
            "project_id: you are not a member of project {project}"
        )));
    }
    match importer.add(line, spec).await {
        Ok(()) => Ok(None),
        Err(err @ (StoreError::Dependency(_) | StoreError::TaskExists(_))) => {
            Ok(Some(err.to_string()))
        }
        Err(StoreError::ProjectNotFound(p)) => {
            Ok(Some(format!("project_id: project {p} does not exist")))
        }
        Err(other) => Err(other.into()),
    }
}
