//! `/tasks`: create, read, update, delete, list; the priority queue; dependencies.

use crate::api::fields::{integer, non_null, non_null_integer, present};
use crate::auth::Caller;
use crate::domain::{
    rules, Description, Invalid, NewTask, Priority, ProjectId, TaskChange, TaskTitle, UserId,
};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::store::{TaskCursor, TaskFilter};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use taskflow_protocol::{ErrorBody, Task, TaskPage, TaskStatus};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_task, list_tasks))
        .routes(routes!(get_task, update_task, delete_task))
        .routes(routes!(next_task))
        .routes(routes!(claim_next_task))
        .routes(routes!(add_dependency, remove_dependency))
        .merge(super::history::router())
}

/// Body of `POST /tasks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTask {
    /// Required; trimmed; 1 to 200 characters.
    title: Option<String>,
    /// At most 10,000 characters.
    description: Option<String>,
    /// `todo` unless given.
    status: Option<TaskStatus>,
    /// 0 to 100, default 0.
    #[serde(default, deserialize_with = "integer")]
    priority: Option<i64>,
    /// The project; `default` unless given.
    project_id: Option<String>,
    /// A user id.
    assignee: Option<String>,
}

impl CreateTask {
    /// Validates into a [`NewTask`]; shared with imports, whose lines have the same fields.
    pub(crate) fn validate(self) -> Result<NewTask, Invalid> {
        Ok(NewTask {
            title: TaskTitle::parse(
                self.title
                    .as_deref()
                    .ok_or_else(|| Invalid::new("title", "is required"))?,
            )?,
            description: self
                .description
                .as_deref()
                .map(Description::parse)
                .transpose()?,
            status: self.status.unwrap_or(TaskStatus::Todo),
            priority: self
                .priority
                .map(Priority::parse)
                .transpose()?
                .unwrap_or_default(),
            project_id: match self.project_id.as_deref() {
                Some(p) => ProjectId::parse(p)?,
                None => ProjectId::default_project(),
            },
            assignee: self
                .assignee
                .as_deref()
                .map(|a| UserId::parse(a, "assignee"))
                .transpose()?,
        })
    }

    pub(crate) fn new(
        title: Option<String>,
        description: Option<String>,
        status: Option<TaskStatus>,
        priority: Option<i64>,
        project_id: Option<String>,
        assignee: Option<String>,
    ) -> Self {
        Self {
            title,
            description,
            status,
            priority,
            project_id,
            assignee,
        }
    }
}

/// Body of `PATCH /tasks/{id}`: only the fields present change; `null` clears `description` or
/// `assignee`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateTask {
    /// A title cannot be cleared: `null` is refused.
    #[serde(default, deserialize_with = "non_null")]
    title: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "non_null")]
    status: Option<TaskStatus>,
    #[serde(default, deserialize_with = "non_null_integer")]
    priority: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    assignee: Option<Option<String>>,
}

impl UpdateTask {
    fn validate(self) -> Result<TaskChange, Invalid> {
        Ok(TaskChange {
            title: self.title.as_deref().map(TaskTitle::parse).transpose()?,
            description: self
                .description
                .map(|d| d.as_deref().map(Description::parse).transpose())
                .transpose()?,
            status: self.status,
            priority: self.priority.map(Priority::parse).transpose()?,
            assignee: self
                .assignee
                .map(|a| {
                    a.as_deref()
                        .map(|a| UserId::parse(a, "assignee"))
                        .transpose()
                })
                .transpose()?,
        })
    }
}

/// Query of `GET /tasks`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only this project.
    project: Option<String>,
    /// Only this status.
    status: Option<TaskStatus>,
    /// Only tasks assigned to this user.
    assignee: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Query naming a project (`default` if absent).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProjectQuery {
    /// The project; `default` if absent.
    project: Option<String>,
}

impl ProjectQuery {
    fn project(&self) -> Result<ProjectId, Invalid> {
        match &self.project {
            Some(p) => ProjectId::parse(p).map_err(|e| Invalid::new("project", e.message)),
            None => Ok(ProjectId::default_project()),
        }
    }
}

/// Query of `DELETE /tasks/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteQuery {
    /// Also remove the dependencies other tasks have on this one.
    #[serde(default)]
    cascade: bool,
}

/// The `project` filter of a listing or export: a valid project the caller may see, if given.
pub(crate) async fn project_filter(
    state: &AppState,
    caller: &Caller,
    raw: Option<&str>,
) -> Result<Option<ProjectId>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let project = ProjectId::parse(raw).map_err(|e| Invalid::new("project", e.message))?;
    caller.require_member(state, &project).await?;
    Ok(Some(project))
}

/// A task id from the path.
pub(crate) fn parse_id(raw: &str, field: &'static str) -> Result<Uuid, Invalid> {
    rules::TASK_ID.check(raw, field)?;
    Uuid::parse_str(raw).map_err(|_| Invalid::new(field, rules::TASK_ID.message))
}

/// A task with its version as `ETag`, so a client can send it back in `If-Match`.
#[derive(Serialize)]
struct Tagged(Task);

impl IntoResponse for Tagged {
    fn into_response(self) -> Response {
        let etag = HeaderValue::from_str(&format!("\"{}\"", self.0.version))
            .expect("digits are a valid header");
        ([(header::ETAG, etag)], Json(self.0)).into_response()
    }
}

/// Loads a task the caller may see, or 404 / 403.
async fn visible_task(state: &AppState, caller: &Caller, id: Uuid) -> Result<ProjectId, ApiError> {
    let project = state.store().task_project(id).await?;
    caller.require_member(state, &project).await?;
    Ok(project)
}

/// Create a task.
#[utoipa::path(post, path = "/tasks", tag = "tasks", request_body = CreateTask, security(("bearer" = [])),
    responses((status = 201, body = Task), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn create_task(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateTask>,
) -> Result<(StatusCode, Tagged), ApiError> {
    let new = body.validate()?;
    caller.require_member(&state, &new.project_id).await?;
    let task = state.store().create_task(new).await?;
    Ok((StatusCode::CREATED, Tagged(task)))
}

/// List tasks, highest priority first, oldest first among equals.
#[utoipa::path(get, path = "/tasks", tag = "tasks", params(ListQuery), security(("bearer" = [])),
    responses((status = 403, body = ErrorBody), (status = 200, body = TaskPage), (status = 400, body = ErrorBody)))]
async fn list_tasks(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<TaskPage>, ApiError> {
    let project = project_filter(&state, &caller, query.project.as_deref()).await?;
    let limit = query.limit.unwrap_or(50);
    rules::PAGE_LIMIT.check(limit.into(), "limit")?;
    let cursor = query
        .cursor
        .as_deref()
        .map(|c| {
            TaskCursor::decode(c)
                .ok_or_else(|| Invalid::new("cursor", "is not a cursor this server issued"))
        })
        .transpose()?;
    let filter = TaskFilter {
        project,
        status: query.status,
        assignee: query
            .assignee
            .as_deref()
            .map(|a| UserId::parse(a, "assignee"))
            .transpose()?,
        visible_to: caller.visibility(),
    };
    let (items, next) = state.store().list_tasks(&filter, cursor, limit).await?;
    Ok(Json(TaskPage {
        items,
        next_cursor: next.map(|c| c.encode()),
    }))
}

/// Get one task.
#[utoipa::path(get, path = "/tasks/{id}", tag = "tasks", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 403, body = ErrorBody), (status = 200, body = Task), (status = 404, body = ErrorBody)))]
async fn get_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Tagged, ApiError> {
    let id = parse_id(&id, "id")?;
    visible_task(&state, &caller, id).await?;
    Ok(Tagged(state.store().get_task(id).await?))
}

/// Change some fields of a task. With `If-Match: <version>`, only if the task is still at that
/// version (412 otherwise).
#[utoipa::path(patch, path = "/tasks/{id}", tag = "tasks", request_body = UpdateTask, security(("bearer" = [])),
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "The version the change is based on")),
    responses((status = 403, body = ErrorBody), (status = 200, body = Task), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)))]
async fn update_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateTask>,
) -> Result<Tagged, ApiError> {
    let id = parse_id(&id, "id")?;
    let if_match = parse_if_match(&headers)?;
    let change = body.validate()?;
    if change.is_empty() {
        return Err(Invalid::new("body", "names no field to change").into());
    }
    visible_task(&state, &caller, id).await?;
    Ok(Tagged(
        state.collab().update_task(id, change, if_match).await?,
    ))
}

/// `If-Match: 3`, `"3"` or `W/"3"`.
fn parse_if_match(headers: &HeaderMap) -> Result<Option<i64>, Invalid> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default();
    rules::IF_MATCH.check(text, "If-Match")?;
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse()
        .map(Some)
        .map_err(|_| Invalid::new("If-Match", rules::IF_MATCH.message))
}

/// Delete a task. Refused (409) while other tasks depend on it, unless `cascade=true`.
#[utoipa::path(delete, path = "/tasks/{id}", tag = "tasks", params(("id" = Uuid, Path), DeleteQuery), security(("bearer" = [])),
    responses((status = 403, body = ErrorBody), (status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "id")?;
    visible_task(&state, &caller, id).await?;
    state.store().delete_task(id, query.cascade).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The priority queue: the highest-priority `todo` task with no unfinished dependency.
#[utoipa::path(get, path = "/tasks/next", tag = "tasks", params(ProjectQuery), security(("bearer" = [])),
    responses((status = 403, body = ErrorBody), (status = 200, body = Task), (status = 404, body = ErrorBody, description = "no_ready_task")))]
async fn next_task(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ProjectQuery>,
) -> Result<Tagged, ApiError> {
    let project = query.project()?;
    caller.require_member(&state, &project).await?;
    let task = state.store().next_task(&project).await?;
    task.map(Tagged).ok_or_else(|| no_ready_task(&project))
}

/// Atomically take the next ready task: it becomes `in_progress` and assigned to the caller.
#[utoipa::path(post, path = "/tasks/next/claim", tag = "tasks", params(ProjectQuery), security(("bearer" = [])),
    responses((status = 403, body = ErrorBody), (status = 200, body = Task), (status = 404, body = ErrorBody, description = "no_ready_task")))]
async fn claim_next_task(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ProjectQuery>,
) -> Result<Tagged, ApiError> {
    let project = query.project()?;
    caller.require_member(&state, &project).await?;
    let task = state.store().claim_next(&project, caller.user()).await?;
    task.map(Tagged).ok_or_else(|| no_ready_task(&project))
}

fn no_ready_task(project: &ProjectId) -> ApiError {
    ApiError::NotFound {
        code: "no_ready_task",
        message: format!("project {project} has no task that is todo and unblocked"),
    }
}

/// Make the task depend on `dep_id` (same project; refused with 409 if it would close a cycle).
#[utoipa::path(put, path = "/tasks/{id}/dependencies/{dep_id}", tag = "tasks", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("dep_id" = Uuid, Path)),
    responses((status = 403, body = ErrorBody), (status = 200, body = Task), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn add_dependency(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, dep)): Path<(String, String)>,
) -> Result<Tagged, ApiError> {
    let (id, dep) = (parse_id(&id, "id")?, parse_id(&dep, "dep_id")?);
    visible_task(&state, &caller, id).await?;
    Ok(Tagged(state.store().add_dependency(id, dep).await?))
}

/// Remove the dependency on `dep_id`.
#[utoipa::path(delete, path = "/tasks/{id}/dependencies/{dep_id}", tag = "tasks", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("dep_id" = Uuid, Path)),
    responses((status = 403, body = ErrorBody), (status = 200, body = Task), (status = 404, body = ErrorBody)))]
async fn remove_dependency(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, dep)): Path<(String, String)>,
) -> Result<Tagged, ApiError> {
    let (id, dep) = (parse_id(&id, "id")?, parse_id(&dep, "dep_id")?);
    visible_task(&state, &caller, id).await?;
    Ok(Tagged(state.store().remove_dependency(id, dep).await?))
}
