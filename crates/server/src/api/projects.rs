//! `/projects`: create, list, read, members, and the plan.

use crate::auth::Caller;
use crate::domain::{rules, Invalid, ProjectId, UserId};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use taskflow_protocol::{ErrorBody, Project, Task};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_project, list_projects))
        .routes(routes!(get_project))
        .routes(routes!(add_member, remove_member))
        .routes(routes!(project_plan))
}

/// Body of `POST /projects`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateProject {
    /// A slug; generated if absent.
    id: Option<String>,
    /// A human name, 1 to 200 characters.
    name: Option<String>,
    /// Initial members besides the creator.
    #[serde(default)]
    members: Vec<String>,
}

/// The plan of a project.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Plan {
    /// The project.
    project_id: String,
    /// Every task of the project; each comes after its dependencies.
    tasks: Vec<Task>,
}

fn parse_project(raw: &str) -> Result<ProjectId, Invalid> {
    ProjectId::parse(raw).map_err(|e| Invalid::new("id", e.message))
}

/// Create a project. A non-admin creator becomes its first member.
#[utoipa::path(post, path = "/projects", tag = "projects", request_body = CreateProject, security(("bearer" = [])),
    responses((status = 201, body = Project), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_project(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateProject>,
) -> Result<(StatusCode, Json<Project>), ApiError> {
    let id = match body.id.as_deref() {
        Some(id) => parse_project(id)?,
        None => ProjectId::parse(&uuid::Uuid::now_v7().simple().to_string())
            .expect("hex is a valid slug"),
    };
    let name = body
        .name
        .as_deref()
        .ok_or_else(|| Invalid::new("name", "is required"))?;
    rules::PROJECT_NAME.check(name, "name")?;
    let name = name.trim();
    let mut members = body
        .members
        .iter()
        .map(|m| UserId::parse(m, "members"))
        .collect::<Result<Vec<_>, _>>()?;
    if !caller.is_admin() {
        members.push(caller.user().clone());
    }
    let project = state.store().create_project(&id, name, &members).await?;
    Ok((StatusCode::CREATED, Json(project)))
}

/// The projects the caller may see (all of them for the admin).
#[utoipa::path(get, path = "/projects", tag = "projects", security(("bearer" = [])), responses((status = 200, body = Vec<Project>)))]
async fn list_projects(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Project>>, ApiError> {
    Ok(Json(
        state
            .store()
            .list_projects(caller.visibility().as_ref())
            .await?,
    ))
}

/// One project.
#[utoipa::path(get, path = "/projects/{id}", tag = "projects", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Project), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Project>, ApiError> {
    let id = parse_project(&id)?;
    caller.require_member(&state, &id).await?;
    Ok(Json(state.store().get_project(&id).await?))
}

/// Add a member (admin or a member).
#[utoipa::path(put, path = "/projects/{id}/members/{user_id}", tag = "projects", security(("bearer" = [])),
    params(("id" = String, Path), ("user_id" = String, Path)),
    responses((status = 200, body = Project), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user)): Path<(String, String)>,
) -> Result<Json<Project>, ApiError> {
    let id = parse_project(&id)?;
    let user = UserId::parse(&user, "user_id")?;
    caller.require_member(&state, &id).await?;
    Ok(Json(state.store().add_member(&id, &user).await?))
}

/// Remove a member (admin or a member).
#[utoipa::path(delete, path = "/projects/{id}/members/{user_id}", tag = "projects", security(("bearer" = [])),
    params(("id" = String, Path), ("user_id" = String, Path)),
    responses((status = 200, body = Project), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user)): Path<(String, String)>,
) -> Result<Json<Project>, ApiError> {
    let id = parse_project(&id)?;
    let user = UserId::parse(&user, "user_id")?;
    caller.require_member(&state, &id).await?;
    Ok(Json(state.store().remove_member(&id, &user).await?))
}

/// Every task of the project in an order that respects dependencies, ties broken by priority.
#[utoipa::path(get, path = "/projects/{id}/plan", tag = "projects", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Plan), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn project_plan(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Plan>, ApiError> {
    let id = parse_project(&id)?;
    caller.require_member(&state, &id).await?;
    state.store().get_project(&id).await?;
    let tasks = state.store().plan(&id).await?;
    Ok(Json(Plan {
        project_id: id.to_string(),
        tasks,
    }))
}
