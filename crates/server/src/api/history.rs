//! `GET /tasks/{id}/history`: a task's activity, read from the event log. Each entry is one
//! event about the task in its project's room (`task.created`, `task.updated`, `task.moved`,
//! `task.deleted`, `dependency.added`, `dependency.removed`): what happened, when, the task as
//! the change left it, and which of its fields differ from the entry before.
//!
//! The log does not record who made a change (the store's writes are not told the caller), so
//! neither does the history; see docs/api.md.

use crate::api::tasks::parse_id;
use crate::auth::Caller;
use crate::domain::{rules, Invalid};
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use taskflow_protocol::{ErrorBody, EventKind, LoggedEvent, Task};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// Entries a page holds when the request names no `limit`.
const DEFAULT_LIMIT: i64 = 50;

/// Fields that change with every entry, so naming them would say nothing.
const BOOKKEEPING: [&str; 2] = ["version", "updated_at"];

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(task_history))
}

/// Query of `GET /tasks/{id}/history`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    /// Entries per page, 1 to 500 (default 50).
    limit: Option<i64>,
    /// `next_cursor` of the previous page, for the entries older than those already read.
    /// Opaque; any string that matches the pattern is accepted.
    // The pattern is exactly what `decode_cursor` admits (a test holds the two together), so a
    // schema-based tester and the server agree on every cursor.
    #[param(pattern = "^[1-9][0-9]{0,17}$", min_length = 1, max_length = 18)]
    cursor: Option<String>,
}

/// One change to a task, as the log recorded it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HistoryEntry {
    /// The event's offset in the project's room (`project:<id>`), as the real-time transports
    /// deliver it; entries of one task are ordered by it.
    offset: i64,
    /// What happened: `task.created`, `task.updated`, `task.moved`, `task.deleted`,
    /// `dependency.added` or `dependency.removed`.
    kind: EventKind,
    /// When the change was committed.
    at: DateTime<Utc>,
    /// The task as the change left it (as it was, for `task.deleted`).
    task: Task,
    /// For `dependency.added` and `dependency.removed`: the task at the other end of the edge
    /// (the one `task` waits, or no longer waits, for). `null` otherwise.
    dependency_id: Option<Uuid>,
    /// The fields of `task` that differ from the previous entry of this task (`version` and
    /// `updated_at`, which change every time, left out), in the task's field order. `null` when
    /// there is no previous entry: the first one, or the oldest retention has left.
    changes: Option<Vec<String>>,
}

/// One page of a task's history.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskHistory {
    /// Newest first.
    items: Vec<HistoryEntry>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    next_cursor: Option<String>,
}

/// A cursor: the offset of the last entry of the previous page; the next page holds the entries
/// below it. Written in decimal; clients treat it as opaque.
fn decode_cursor(raw: &str) -> Result<i64, Invalid> {
    let digits = raw.len() <= 18 && raw.bytes().all(|b| b.is_ascii_digit());
    match raw.parse::<i64>() {
        Ok(offset) if digits && offset > 0 && !raw.starts_with('0') => Ok(offset),
        _ => Err(Invalid::new("cursor", "is not a cursor this server issued")),
    }
}

/// A task's changes, from the event log, newest first.
///
/// Paged with `cursor`. Only what the log still holds: retention compacts old events away. A
/// deleted task's history is 404, as the task is. Who may read it is who may read the task
/// (`GET /tasks/{id}`). The log does not record who made each change.
#[utoipa::path(get, path = "/tasks/{id}/history", tag = "tasks", params(("id" = Uuid, Path), HistoryQuery), security(("bearer" = [])),
    responses((status = 200, body = TaskHistory), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn task_history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<TaskHistory>, ApiError> {
    let id = parse_id(&id, "id")?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    rules::PAGE_LIMIT.check(limit, "limit")?;
    let before = query.cursor.as_deref().map(decode_cursor).transpose()?;
    // The same check as `GET /tasks/{id}`: 404 for a task that is not (or no longer) there, 403
    // for a project the caller is not a member of.
    let project = state.store().task_project(id).await?;
    caller.require_member(&state, &project).await?;
    // One more than the page: it says whether there is a next page, and it is the entry the
    // page's oldest is compared with.
    let events = state
        .store()
        .task_events(&project, id, before, limit + 1)
        .await?;
    Ok(Json(page(events, limit as usize)?))
}

/// A logged event about a task, its payload taken apart.
struct Change {
    event: LoggedEvent,
    /// The task as the change left it, as logged (what `changes` compares).
    task: Value,
    dependency_id: Option<Uuid>,
}

impl Change {
    /// Reads the payloads store/tasks.rs writes: the task, or `{task, dependency_id}`.
    fn of(mut event: LoggedEvent) -> Result<Self, ApiError> {
        let (offset, room) = (event.offset, event.room.clone());
        let corrupt =
            |what: &str| ApiError::Internal(anyhow::anyhow!("event {offset} of {room} has {what}"));
        let (task, dependency_id) = match event.event {
            EventKind::DependencyAdded | EventKind::DependencyRemoved => {
                let dependency = event
                    .data
                    .get("dependency_id")
                    .and_then(Value::as_str)
                    .and_then(|d| Uuid::parse_str(d).ok())
                    .ok_or_else(|| corrupt("no dependency_id"))?;
                let task = event
                    .data
                    .get_mut("task")
                    .map(Value::take)
                    .ok_or_else(|| corrupt("no task"))?;
                (task, Some(dependency))
            }
            _ => (event.data.take(), None),
        };
        Ok(Self {
            event,
            task,
            dependency_id,
        })
    }

    fn entry(self, previous: Option<&Change>) -> Result<HistoryEntry, ApiError> {
        let changes = previous.map(|p| changed_fields(&p.task, &self.task));
        let task = serde_json::from_value(self.task).map_err(|e| {
            ApiError::Internal(anyhow::anyhow!(
                "event {} of {}: {e}",
                self.event.offset,
                self.event.room
            ))
        })?;
        Ok(HistoryEntry {
            offset: self.event.offset,
            kind: self.event.event,
            at: self.event.at,
            task,
            dependency_id: self.dependency_id,
            changes,
        })
    }
}

/// The page of `limit` entries from events newest first (one more than the page if there is a
/// next page).
fn page(events: Vec<LoggedEvent>, limit: usize) -> Result<TaskHistory, ApiError> {
    let mut changes = events
        .into_iter()
        .map(Change::of)
        .collect::<Result<Vec<_>, _>>()?;
    let beyond = (changes.len() > limit).then(|| changes.split_off(limit));
    let oldest_previous = beyond.as_ref().and_then(|rest| rest.first());
    let next_cursor = beyond
        .as_ref()
        .and(changes.last())
        .map(|c| c.event.offset.to_string());
    let mut items = Vec::with_capacity(changes.len());
    let mut newer_first = changes.into_iter().peekable();
    while let Some(change) = newer_first.next() {
        let previous = newer_first.peek().or(oldest_previous);
        items.push(change.entry(previous)?);
    }
    Ok(TaskHistory { items, next_cursor })
}

/// The fields of `after` whose value is not the one in `before`, bookkeeping left out.
fn changed_fields(before: &Value, after: &Value) -> Vec<String> {
    let Some(after) = after.as_object() else {
        return Vec::new();
    };
    after
        .iter()
        .filter(|(field, value)| {
            !BOOKKEEPING.contains(&field.as_str()) && before.get(field.as_str()) != Some(value)
        })
        .map(|(field, _)| field.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(title: &str, version: i64, dependencies: &[&str]) -> Value {
        json!({
            "id": "01a2010b-1212-766e-a733-4a79e792a55e", "title": title, "description": null,
            "status": "todo", "priority": 0, "project_id": "default", "assignee": null,
            "dependencies": dependencies, "blocked": !dependencies.is_empty(),
            "created_at": "2026-11-22T02:17:12.466Z",
            "updated_at": format!("2026-11-22T02:17:1{version}.466Z"), "version": version,
        })
    }

    fn event(offset: i64, event: EventKind, data: Value) -> LoggedEvent {
        LoggedEvent {
            room: "project:default".into(),
            offset,
            event,
            data,
            at: Utc::now(),
        }
    }

    /// The pattern the `cursor` parameter publishes.
    const CURSOR_PATTERN: &str = "^[1-9][0-9]{0,17}$";

    const DEP: &str = "01a2010b-1212-766e-a733-000000000000";

    /// Newest first, as the store reads them.
    fn log() -> Vec<LoggedEvent> {
        vec![
            event(
                9,
                EventKind::DependencyAdded,
                json!({ "task": task("b", 3, &[DEP]), "dependency_id": DEP }),
            ),
            event(5, EventKind::TaskUpdated, task("b", 2, &[])),
            event(2, EventKind::TaskCreated, task("a", 1, &[])),
        ]
    }

    #[test]
    fn each_entry_names_what_differs_from_the_one_before() {
        let page = page(log(), 50).unwrap();
        assert_eq!(page.next_cursor, None);
        let offsets: Vec<i64> = page.items.iter().map(|e| e.offset).collect();
        assert_eq!(offsets, [9, 5, 2]);
        let changes: Vec<_> = page.items.iter().map(|e| e.changes.clone()).collect();
        assert_eq!(
            changes,
            [
                Some(vec!["dependencies".to_owned(), "blocked".to_owned()]),
                Some(vec!["title".to_owned()]),
                None,
            ]
        );
        assert_eq!(
            page.items[0].dependency_id,
            Some(Uuid::parse_str(DEP).unwrap())
        );
        assert_eq!(page.items[0].task.version, 3);
        assert_eq!(page.items[1].dependency_id, None);
    }

    #[test]
    fn a_page_compares_its_oldest_entry_with_the_one_beyond() {
        let page = page(log(), 2).unwrap();
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.next_cursor.as_deref(), Some("5"));
        assert_eq!(page.items[1].changes, Some(vec!["title".to_owned()]));
    }

    #[test]
    fn cursors_are_exactly_what_the_pattern_admits() {
        let pattern = regex::Regex::new(CURSOR_PATTERN).unwrap();
        for raw in [
            "1",
            "9",
            "10",
            "123456789012345678",
            "999999999999999999",
            "",
            "0",
            "01",
            "-1",
            "+1",
            " 1",
            "1 ",
            "1.5",
            "1234567890123456789",
            "9223372036854775807",
            "abc",
            "٣",
        ] {
            assert_eq!(decode_cursor(raw).is_ok(), pattern.is_match(raw), "{raw:?}");
        }
        assert_eq!(decode_cursor("42").unwrap(), 42);
    }

    /// The parameter the document publishes is the one [`decode_cursor`] reads.
    #[test]
    fn the_document_publishes_the_cursor_pattern() {
        let doc = super::super::openapi();
        let parameters = doc["paths"]["/tasks/{id}/history"]["get"]["parameters"]
            .as_array()
            .expect("the history operation has parameters");
        let cursor = parameters
            .iter()
            .find(|p| p["name"] == "cursor")
            .expect("a cursor parameter");
        assert_eq!(cursor["required"], false);
        assert_eq!(
            cursor["schema"],
            json!({ "type": "string", "pattern": CURSOR_PATTERN, "minLength": 1, "maxLength": 18 })
        );
        let limit = parameters.iter().find(|p| p["name"] == "limit").unwrap();
        assert_eq!(limit["schema"], rules::PAGE_LIMIT.schema());
    }
}
