//! `POST /tasks/import`: NDJSON or CSV, streamed and atomic.
//!
//! The body is parsed and validated on a blocking thread (so a large import does not stall the
//! async executor) while it is spooled to a temporary file; nothing is locked meanwhile. Only a
//! valid body is then replayed from the spool into one store transaction, in batches (see
//! `store::import`). Memory holds a batch of lines, the first 100 errors, the set of projects
//! and assignees named and a count for each; dependency edges wait in a temporary table of the
//! transaction. Only an import small enough to log a `task.created` per task
//! (`import_task_events_max`) remembers its tasks' ids until commit; a larger one logs one
//! `tasks.imported` per room.

pub(crate) mod parse;

pub(crate) use parse::ImportLine;

use crate::auth::Caller;
use crate::domain::ProjectId;
use crate::error::ApiError;
use crate::extract::{declared_length, has_content_type, DRAIN_CAP};
use crate::state::AppState;
use crate::store::{ImportEvents, StoreError};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use futures::TryStreamExt;
use parse::{parse_body, Format, Parsed};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use taskflow_protocol::ErrorBody;
use tokio_util::io::{StreamReader, SyncIoBridge};
use utoipa::{IntoParams, ToSchema};
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

/// What an import logs for subscribers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EventsChoice {
    /// `tasks` up to `import_task_events_max` lines, `summary` beyond.
    #[default]
    Auto,
    /// A `task.created` per task (refused beyond `import_task_events_max` lines).
    Tasks,
    /// One `tasks.imported` per room; subscribers reload.
    Summary,
}

/// The import's options.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ImportQuery {
    /// What subscribers receive: `auto` (the default), `tasks` or `summary`.
    #[serde(default)]
    #[param(inline)]
    events: EventsChoice,
}

/// Import tasks: all lines or none.
#[utoipa::path(post, path = "/tasks/import", tag = "io", security(("bearer" = [])), params(ImportQuery),
    request_body(content = String, content_type = "application/x-ndjson",
        description = "One task per line: NDJSON objects, or CSV with a header naming the columns (as the export writes them)"),
    responses((status = 201, body = Imported), (status = 403, body = ErrorBody), (status = 400, body = ErrorBody, description = "import_rejected: the bad lines"),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn import_tasks(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ImportQuery>,
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
            let result = if total <= limit {
                Ok(chunk)
            } else if total <= limit + DRAIN_CAP {
                flag.store(true, Ordering::Relaxed);
                Ok(axum::body::Bytes::new())
            } else {
                Err(std::io::Error::other("import body too large"))
            };
            futures::future::ready(result)
        });
    let reader = SyncIoBridge::new(StreamReader::new(stream));

    // Pass 1, with no transaction open: spool the body to a temporary file while validating
    // every line, and learn which projects and users it touches. A slow upload therefore holds
    // no lock and no writer.
    let started = std::time::Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Parsed>(256);
    let spooler = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let mut spool = tempfile::tempfile()?;
        parse_body(
            format,
            Tee {
                from: reader,
                to: &mut spool,
            },
            &tx,
        );
        spool.flush()?;
        Ok(spool)
    });
    let mut report = Report::default();
    let mut projects: BTreeMap<ProjectId, u64> = BTreeMap::new();
    let mut assignees: BTreeSet<String> = BTreeSet::new();
    let mut read_error = None;
    let mut valid = 0u64;
    while let Some(parsed) = rx.recv().await {
        match parsed {
            Parsed::Line {
                spec: Ok(spec),
                line,
            } => {
                valid += 1;
                projects.entry(spec.task.project_id.clone()).or_insert(line);
                if let Some(assignee) = &spec.task.assignee {
                    assignees.insert(assignee.to_string());
                }
            }
            Parsed::Line {
                spec: Err(reason),
                line,
            } => report.add(line, reason),
            Parsed::Unreadable(err) => read_error = Some(err),
        }
    }
    let spool = spooler.await.map_err(|e| ApiError::Internal(e.into()))?;
    if too_large.load(Ordering::Relaxed) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    if let Some(err) = read_error {
        return Err(ApiError::MalformedJson(format!(
            "could not read the import body: {err}"
        )));
    }
    let mut spool = spool.map_err(|e| ApiError::Internal(e.into()))?;
    for (project, &line) in &projects {
        if !caller.is_admin() && !state.store().is_member(project, caller.user()).await? {
            report.add(
                line,
                format!("project_id: you are not a member of project {project}"),
            );
        }
    }
    report.reject_if_any()?;
    let most = state.config().import_task_events_max;
    let events = match query.events {
        EventsChoice::Summary => ImportEvents::Summary,
        EventsChoice::Auto if valid > most => ImportEvents::Summary,
        EventsChoice::Auto => ImportEvents::Tasks,
        EventsChoice::Tasks if valid > most => {
            return Err(ApiError::InvalidField {
                field: "events".into(),
                message: format!(
                    "a task.created per task is for imports of at most {most} lines \
                     (import_task_events_max); this one has {valid}: use events=summary"
                ),
            })
        }
        EventsChoice::Tasks => ImportEvents::Tasks,
    };

    tracing::info!(
        lines = valid,
        seconds = started.elapsed().as_secs_f64(),
        ?events,
        "import validated and spooled"
    );
    let started = std::time::Instant::now();

    // Pass 2: one transaction, every room locked up front in sorted order; lines are parsed
    // again from the spool.
    let first_lines = projects.clone();
    let mut importer = match state
        .store()
        .begin_import(projects.into_keys().collect(), assignees, events)
        .await
    {
        Err(StoreError::ProjectNotFound(p)) => {
            let line = ProjectId::parse(&p)
                .ok()
                .and_then(|id| first_lines.get(&id).copied())
                .unwrap_or(0);
            report.add(line, format!("project_id: project {p} does not exist"));
            report.reject_if_any()?;
            unreachable!("a report with a line rejects")
        }
        other => other?,
    };
    spool
        .seek(SeekFrom::Start(0))
        .map_err(|e| ApiError::Internal(e.into()))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Parsed>(256);
    let parser = tokio::task::spawn_blocking(move || {
        parse_body(format, std::io::BufReader::new(spool), &tx)
    });
    while let Some(parsed) = rx.recv().await {
        let Parsed::Line {
            spec: Ok(spec),
            line,
        } = parsed
        else {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "the import spool changed between passes"
            )));
        };
        for rejected in importer.add(line, &spec).await? {
            report.add(rejected.line, rejected.reason);
        }
        if report.total > 0 {
            break;
        }
    }
    drop(rx);
    parser.await.map_err(|e| ApiError::Internal(e.into()))?;
    if report.total > 0 {
        importer.abandon().await?;
        report.reject_if_any()?;
        unreachable!("a report with a line rejects");
    }
    match importer.commit().await? {
        Ok(imported) => {
            tracing::info!(
                imported,
                seconds = started.elapsed().as_secs_f64(),
                "import committed"
            );
            Ok((StatusCode::CREATED, Json(Imported { imported })))
        }
        Err(lines) => {
            for line in lines {
                report.add(line.line, line.reason);
            }
            report.reject_if_any()?;
            unreachable!("a rejected commit names its lines")
        }
    }
}

/// The bad lines of an import: the first [`MAX_REPORTED`] and how many in all.
#[derive(Default)]
struct Report {
    lines: Vec<Value>,
    total: u64,
}

impl Report {
    fn add(&mut self, line: u64, reason: String) {
        self.total += 1;
        if self.lines.len() < MAX_REPORTED {
            self.lines.push(json!({ "line": line, "reason": reason }));
        }
    }

    fn reject_if_any(&mut self) -> Result<(), ApiError> {
        if self.total == 0 {
            return Ok(());
        }
        self.lines.sort_by_key(|l| l["line"].as_u64());
        Err(ApiError::ImportRejected {
            lines: std::mem::take(&mut self.lines),
            total: self.total,
        })
    }
}

/// A reader that copies what it reads into a writer (the spool).
struct Tee<R, W> {
    from: R,
    to: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.from.read(buf)?;
        self.to.write_all(&buf[..n])?;
        Ok(n)
    }
}
