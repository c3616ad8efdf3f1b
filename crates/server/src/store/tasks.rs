//! Task reads and writes: CRUD, listing, the priority queue, dependencies and the plan.

use super::log::lock_room;
use super::rows::{fetch_row, fetch_task, hydrate, parse_uuid, Binds, TaskRow, TASK_COLUMNS};
use super::tx::WriteTx;
use super::{now_ms, DependencyError, Result, Store, StoreError};
use crate::domain::{
    find_path, plan_order, rules, DocName, NewTask, PlanItem, ProjectId, TaskChange, UserId,
};

use futures::Stream;
use serde::Serialize;
use sqlx::AnyConnection;
use taskflow_protocol::{EventKind, Task, TaskStatus};
use uuid::Uuid;

/// Which tasks a listing or export covers.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only this project.
    pub project: Option<ProjectId>,
    /// Only this status.
    pub status: Option<TaskStatus>,
    /// Only tasks assigned to this user.
    pub assignee: Option<UserId>,
    /// Only projects this user is a member of; `None` for the admin, who sees everything.
    pub visible_to: Option<UserId>,
}

impl TaskFilter {
    /// Appends the filter's conditions (each starting with ` AND`) to a query on `tasks t`.
    fn push_conditions(&self, sql: &mut String, binds: &mut Binds) {
        if let Some(project) = &self.project {
            sql.push_str(&format!(
                " AND t.project_id = {}",
                binds.push(project.as_str().to_owned())
            ));
        }
        if let Some(status) = self.status {
            sql.push_str(&format!(" AND t.status = {}", binds.push(status.as_str())));
        }
        if let Some(assignee) = &self.assignee {
            sql.push_str(&format!(
                " AND t.assignee = {}",
                binds.push(assignee.as_str().to_owned())
            ));
        }
        if let Some(user) = &self.visible_to {
            sql.push_str(&format!(
                " AND t.project_id IN (SELECT project_id FROM project_members WHERE user_id = {})",
                binds.push(user.as_str().to_owned())
            ));
        }
    }
}

/// Where a listing page starts: after the task with this priority and id. Written
/// `<priority>.<id as 32 hex digits>` ([`rules::TASK_CURSOR`]): clients treat it as opaque, and
/// the published pattern is exact, so any string that matches it is a cursor this server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskCursor {
    priority: u8,
    id: Uuid,
}

impl TaskCursor {
    /// Decodes a cursor a client passed back; `None` if it was not one of ours.
    pub fn decode(raw: &str) -> Option<Self> {
        if !rules::TASK_CURSOR.admits(raw) {
            return None;
        }
        let (priority, id) = raw.split_once('.')?;
        Some(Self {
            priority: priority.parse().ok()?,
            id: Uuid::try_parse(id).ok()?,
        })
    }

    /// Encodes for the client.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.priority, self.id.simple())
    }
}

/// Payload of `dependency.added` / `dependency.removed`: the dependent task after the change and
/// the other end of the edge.
#[derive(Serialize)]
struct DependencyChange<'a> {
    task: &'a Task,
    dependency_id: Uuid,
}

/// SQL condition: task `t` is `todo` and has no dependency that is not done.
const READY: &str = "t.status = 'todo' AND NOT EXISTS (SELECT 1 FROM task_dependencies d \
     JOIN tasks dt ON dt.id = d.depends_on WHERE d.task_id = t.id AND dt.status <> 'done')";

impl Store {
    /// Creates a task and logs `task.created`.
    pub async fn create_task(&self, new: NewTask) -> Result<Task> {
        self.write(move |tx| {
            Box::pin(async move {
                lock_room(tx, &new.project_id.room()).await?;
                insert_task(tx, Uuid::now_v7(), &new).await
            })
        })
        .await
    }

    /// One task.
    pub async fn get_task(&self, id: Uuid) -> Result<Task> {
        let mut conn = self.read.acquire().await?;
        fetch_task(&mut conn, id).await
    }

    /// The project a task belongs to; the first step of every task write (to lock its room) and
    /// of every access check.
    pub async fn task_project(&self, id: Uuid) -> Result<ProjectId> {
        let project: Option<String> =
            sqlx::query_scalar("SELECT project_id FROM tasks WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.read)
                .await?;
        let project = project.ok_or(StoreError::TaskNotFound(id))?;
        ProjectId::parse(&project).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// One page of tasks ordered by priority (highest first) then creation, and the cursor of the
    /// next page if there is one.
    pub async fn list_tasks(
        &self,
        filter: &TaskFilter,
        after: Option<TaskCursor>,
        limit: u32,
    ) -> Result<(Vec<Task>, Option<TaskCursor>)> {
        let mut binds = Binds::default();
        let mut sql = format!("SELECT {} FROM tasks t WHERE 1 = 1", prefixed(TASK_COLUMNS));
        filter.push_conditions(&mut sql, &mut binds);
        if let Some(cursor) = after {
            let p = binds.push(i64::from(cursor.priority));
            let id = binds.push(cursor.id.to_string());
            sql.push_str(&format!(
                " AND (t.priority < {p} OR (t.priority = {p} AND t.id > {id}))"
            ));
        }
        sql.push_str(&format!(
            " ORDER BY t.priority DESC, t.id LIMIT {}",
            binds.push(i64::from(limit) + 1)
        ));
        let mut conn = self.read.acquire().await?;
        let mut rows: Vec<TaskRow> = sqlx::query_as_with(&sql, binds.into_args())
            .fetch_all(&mut *conn)
            .await?;
        let next = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            let last = rows.last().expect("limit is at least 1");
            Some(TaskCursor {
                priority: u8::try_from(last.priority).unwrap_or(0),
                id: last.uuid()?,
            })
        } else {
            None
        };
        Ok((hydrate(&mut conn, rows).await?, next))
    }

    /// Every task the filter covers, in id (creation) order, read in chunks by keyset so memory
    /// stays constant however many tasks there are.
    pub fn export_tasks(
        &self,
        filter: TaskFilter,
    ) -> impl Stream<Item = Result<Task>> + Send + 'static {
        const CHUNK: i64 = 500;
        let pool = self.read.clone();
        async_stream::try_stream! {
            let mut after = String::new();
            loop {
                let mut binds = Binds::default();
                let mut sql = format!("SELECT {} FROM tasks t WHERE t.id > {}", prefixed(TASK_COLUMNS), binds.push(after.clone()));
                filter.push_conditions(&mut sql, &mut binds);
                sql.push_str(&format!(" ORDER BY t.id LIMIT {}", binds.push(CHUNK)));
                let mut conn = pool.acquire().await?;
                let rows: Vec<TaskRow> = sqlx::query_as_with(&sql, binds.into_args()).fetch_all(&mut *conn).await?;
                let Some(last) = rows.last() else { break };
                after = last.id.clone();
                let full = rows.len() as i64 == CHUNK;
                let tasks = hydrate(&mut conn, rows).await?;
                drop(conn);
                for task in tasks {
                    yield task;
                }
                if !full {
                    break;
                }
            }
        }
    }

    /// Applies a partial update and logs `task.moved` if the priority changed, `task.updated`
    /// otherwise. With `if_match`, refuses unless the task is still at that version.
    pub async fn update_task(
        &self,
        id: Uuid,
        change: TaskChange,
        if_match: Option<i64>,
    ) -> Result<Task> {
        let project = self.task_project(id).await?;
        self.write(move |tx| Box::pin(update_in(tx, project, id, change, if_match)))
            .await
    }

    /// Deletes a task and logs `task.deleted`. Tasks that depend on it make this a conflict,
    /// unless `cascade` removes those edges first (each logged as `dependency.removed`).
    pub async fn delete_task(&self, id: Uuid, cascade: bool) -> Result<Task> {
        let room = self.task_project(id).await?.room();
        self.write(move |tx| {
            Box::pin(async move {
                lock_room(tx, &room).await?;
                let task = fetch_task(tx, id).await?;
                let dependents: Vec<String> = sqlx::query_scalar(
                    "SELECT task_id FROM task_dependencies WHERE depends_on = $1 ORDER BY task_id",
                )
                .bind(id.to_string())
                .fetch_all(&mut **tx)
                .await?;
                if !dependents.is_empty() && !cascade {
                    let ids = dependents
                        .iter()
                        .map(|d| parse_uuid(d))
                        .collect::<Result<_>>()?;
                    return Err(StoreError::HasDependents(ids));
                }
                for dependent in dependents {
                    let dependent = parse_uuid(&dependent)?;
                    remove_edge(tx, &room, dependent, id).await?;
                }
                sqlx::query("DELETE FROM tasks WHERE id = $1")
                    .bind(id.to_string())
                    .execute(&mut **tx)
                    .await?;
                super::docs::delete_in(tx, &DocName::Task(id).to_string()).await?;
                tx.append(&room, EventKind::TaskDeleted, &task, now_ms())
                    .await?;
                Ok(task)
            })
        })
        .await
    }

    /// The highest-priority ready task of a project (`todo`, no unfinished dependency), oldest
    /// first among equals.
    pub async fn next_task(&self, project: &ProjectId) -> Result<Option<Task>> {
        let mut conn = self.read.acquire().await?;
        match next_ready_id(&mut conn, project).await? {
            Some(id) => Ok(Some(fetch_task(&mut conn, id).await?)),
            None => Ok(None),
        }
    }

    /// Takes the next ready task for `user`: sets it `in_progress`, assigns it, logs
    /// `task.updated`. The room lock makes concurrent claims take turns, so no two get one task.
    pub async fn claim_next(&self, project: &ProjectId, user: &UserId) -> Result<Option<Task>> {
        let (project, user) = (project.clone(), user.clone());
        self.write(move |tx| {
            Box::pin(async move {
                let room = project.room();
                lock_room(tx, &room).await?;
                let Some(id) = next_ready_id(tx, &project).await? else {
                    return Ok(None);
                };
                let previous = fetch_row(tx, id).await?.and_then(|row| row.assignee);
                sqlx::query(
                    "UPDATE tasks SET status = 'in_progress', assignee = $1, updated_at = $2, version = version + 1 \
                     WHERE id = $3",
                )
                .bind(user.as_str().to_owned())
                .bind(now_ms())
                .bind(id.to_string())
                .execute(&mut **tx)
                .await?;
                let task = fetch_task(tx, id).await?;
                tx.append(&room, EventKind::TaskUpdated, &task, now_ms())
                    .await?;
                log_assignment(tx, &task, previous.as_deref()).await?;
                Ok(Some(task))
            })
        })
        .await
    }

    /// Makes `task` depend on `dependency` and logs `dependency.added`. Idempotent: an existing
    /// edge changes nothing. Refuses self-dependencies, other projects and cycles.
    pub async fn add_dependency(&self, task: Uuid, dependency: Uuid) -> Result<Task> {
        if task == dependency {
            return Err(DependencyError::OnItself.into());
        }
        let project = self.task_project(task).await?;
        self.write(move |tx| Box::pin(add_edge(tx, project, task, dependency)))
            .await
    }

    /// Removes the edge `task → dependency` and logs `dependency.removed`.
    pub async fn remove_dependency(&self, task: Uuid, dependency: Uuid) -> Result<Task> {
        let room = self.task_project(task).await?.room();
        self.write(move |tx| {
            Box::pin(async move {
                lock_room(tx, &room).await?;
                remove_edge(tx, &room, task, dependency).await
            })
        })
        .await
    }

    /// Every task of a project in an order that respects dependencies, ties broken by priority
    /// then age.
    pub async fn plan(&self, project: &ProjectId) -> Result<Vec<Task>> {
        let mut conn = self.read.acquire().await?;
        let sql = format!(
            "SELECT {} FROM tasks t WHERE t.project_id = $1",
            prefixed(TASK_COLUMNS)
        );
        let rows: Vec<TaskRow> = sqlx::query_as(&sql)
            .bind(project.as_str().to_owned())
            .fetch_all(&mut *conn)
            .await?;
        let edges = project_edges(&mut conn, project).await?;
        let mut tasks = hydrate(&mut conn, rows).await?;
        let items: Vec<PlanItem<Uuid>> = tasks
            .iter()
            .map(|t| PlanItem {
                id: t.id,
                priority: t.priority,
            })
            .collect();
        let order = plan_order(&items, &edges);
        let position: std::collections::HashMap<Uuid, usize> = order
            .into_iter()
            .enumerate()
            .map(|(i, id)| (id, i))
            .collect();
        tasks.sort_by_key(|t| position[&t.id]);
        Ok(tasks)
    }
}

/// [`Store::update_task`] inside its transaction.
pub(crate) async fn update_in(
    tx: &mut WriteTx<'_>,
    project: ProjectId,
    id: Uuid,
    change: TaskChange,
    if_match: Option<i64>,
) -> Result<Task> {
    lock_room(tx, &project.room()).await?;
    let row = fetch_row(tx, id)
        .await?
        .ok_or(StoreError::TaskNotFound(id))?;
    if let Some(expected) = if_match {
        if expected != row.version {
            return Err(StoreError::StaleVersion {
                expected,
                current: row.version,
            });
        }
    }
    let moved = change
        .priority
        .is_some_and(|p| i64::from(p.get()) != row.priority);
    let description = match change.description {
        Some(d) => d.map(|d| d.as_str().to_owned()),
        None => row.description,
    };
    let previous_assignee = row.assignee.clone();
    let was_done = row.status == TaskStatus::Done.as_str();
    let assignee = match change.assignee {
        Some(a) => a.map(|a| a.as_str().to_owned()),
        None => row.assignee,
    };
    sqlx::query(
        "UPDATE tasks SET title = $1, description = $2, status = $3, priority = $4, assignee = $5, \
         updated_at = $6, version = version + 1 WHERE id = $7",
    )
    .bind(change.title.map_or(row.title, |t| t.as_str().to_owned()))
    .bind(description)
    .bind(change.status.map_or(row.status, |s| s.as_str().to_owned()))
    .bind(change.priority.map_or(row.priority, |p| i64::from(p.get())))
    .bind(assignee)
    .bind(now_ms())
    .bind(id.to_string())
    .execute(&mut **tx)
    .await?;
    let task = fetch_task(tx, id).await?;
    let kind = if moved {
        EventKind::TaskMoved
    } else {
        EventKind::TaskUpdated
    };
    tx.append(&project.room(), kind, &task, now_ms()).await?;
    log_assignment(tx, &task, previous_assignee.as_deref()).await?;
    if was_done != (task.status == TaskStatus::Done) {
        log_dependents(tx, &project, id).await?;
    }
    Ok(task)
}

/// Payload of `task.unblocked`.
#[derive(Serialize)]
struct Unblocked<'a> {
    task: &'a Task,
    dependency_id: Uuid,
}

/// After `dependency` became `done` or stopped being done: every dependent whose `blocked` flag
/// flipped with it (its other dependencies are all done) changes version and is logged as
/// `task.updated` in the project room, so no client has to recompute it; a dependent that is
/// now unblocked and not done tells its assignee, with `task.unblocked` in their user room. All
/// in the transaction of the change that caused it, so these resume like any event.
async fn log_dependents(tx: &mut WriteTx<'_>, project: &ProjectId, dependency: Uuid) -> Result<()> {
    let flipped: Vec<String> = sqlx::query_scalar(
        "SELECT d.task_id FROM task_dependencies d WHERE d.depends_on = $1 AND NOT EXISTS \
         (SELECT 1 FROM task_dependencies o JOIN tasks t ON t.id = o.depends_on \
          WHERE o.task_id = d.task_id AND o.depends_on <> $1 AND t.status <> 'done') \
         ORDER BY d.task_id",
    )
    .bind(dependency.to_string())
    .fetch_all(&mut **tx)
    .await?;
    for dependent in flipped {
        let task = touch(tx, parse_uuid(&dependent)?).await?;
        tx.append(&project.room(), EventKind::TaskUpdated, &task, now_ms())
            .await?;
        let ready = !task.blocked && task.status != TaskStatus::Done;
        if let Some(assignee) = task.assignee.as_deref().filter(|_| ready) {
            let room = format!("user:{assignee}");
            lock_room(tx, &room).await?;
            let unblocked = Unblocked {
                task: &task,
                dependency_id: dependency,
            };
            tx.append(&room, EventKind::TaskUnblocked, &unblocked, now_ms())
                .await?;
        }
    }
    Ok(())
}

/// [`Store::add_dependency`] inside its transaction.
async fn add_edge(
    tx: &mut WriteTx<'_>,
    project: ProjectId,
    task: Uuid,
    dependency: Uuid,
) -> Result<Task> {
    let room = project.room();
    lock_room(tx, &room).await?;
    let row = fetch_row(tx, task)
        .await?
        .ok_or(StoreError::TaskNotFound(task))?;
    let dep = fetch_row(tx, dependency)
        .await?
        .ok_or(DependencyError::Missing(dependency))?;
    if dep.project_id != row.project_id {
        return Err(DependencyError::OtherProject {
            dependency,
            task_project: row.project_id,
        }
        .into());
    }
    let edges = project_edges(tx, &project).await?;
    if edges.contains(&(task, dependency)) {
        return fetch_task(tx, task).await;
    }
    if let Some(path) = find_path(&edges, dependency, task) {
        let mut cycle = Vec::with_capacity(path.len() + 1);
        cycle.push(task);
        cycle.extend(path);
        return Err(DependencyError::Cycle(cycle).into());
    }
    sqlx::query("INSERT INTO task_dependencies (task_id, depends_on) VALUES ($1, $2)")
        .bind(task.to_string())
        .bind(dependency.to_string())
        .execute(&mut **tx)
        .await?;
    let updated = touch(tx, task).await?;
    let change = DependencyChange {
        task: &updated,
        dependency_id: dependency,
    };
    tx.append(&room, EventKind::DependencyAdded, &change, now_ms())
        .await?;
    Ok(updated)
}

/// Inserts a new task (created by the caller's validation) and logs `task.created`. The caller
/// holds the room lock. A new task has no dependencies yet, so the inserted row is the whole
/// task: nothing is read back.
pub(crate) async fn insert_task(tx: &mut WriteTx<'_>, id: Uuid, new: &NewTask) -> Result<Task> {
    let task = insert_row(tx, id, new).await?.into_new_task()?;
    tx.append(
        &new.project_id.room(),
        EventKind::TaskCreated,
        &task,
        now_ms(),
    )
    .await?;
    log_assignment(tx, &task, None).await?;
    Ok(task)
}

/// Inserts the row of a new task, without its event (imports log events once edges are in), and
/// returns the row as stored.
pub(crate) async fn insert_row(
    conn: &mut AnyConnection,
    id: Uuid,
    new: &NewTask,
) -> Result<TaskRow> {
    let now = now_ms();
    let sql = format!(
        "INSERT INTO tasks ({TASK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 1) \
         RETURNING {TASK_COLUMNS}"
    );
    Ok(sqlx::query_as(&sql)
        .bind(id.to_string())
        .bind(new.project_id.as_str().to_owned())
        .bind(new.title.as_str().to_owned())
        .bind(new.description.as_ref().map(|d| d.as_str().to_owned()))
        .bind(new.status.as_str())
        .bind(i64::from(new.priority.get()))
        .bind(new.assignee.as_ref().map(|a| a.as_str().to_owned()))
        .bind(now)
        .fetch_one(&mut *conn)
        .await?)
}

/// Logs `task.created` for a task as it now stands.
pub(crate) async fn log_created(
    conn: &mut WriteTx<'_>,
    id: Uuid,
    project: &ProjectId,
) -> Result<Task> {
    let task = fetch_task(conn, id).await?;
    conn.append(&project.room(), EventKind::TaskCreated, &task, now_ms())
        .await?;
    log_assignment(conn, &task, None).await?;
    Ok(task)
}

/// Logs `task.assigned` in the assignee's user room when the task now has an assignee it did
/// not have before, so every connection of that user hears of it.
async fn log_assignment(tx: &mut WriteTx<'_>, task: &Task, previous: Option<&str>) -> Result<()> {
    if let Some(assignee) = task.assignee.as_deref().filter(|a| Some(*a) != previous) {
        let room = format!("user:{assignee}");
        lock_room(tx, &room).await?;
        tx.append(&room, EventKind::TaskAssigned, task, now_ms())
            .await?;
    }
    Ok(())
}

/// Deletes one edge, bumps the dependent's version and logs `dependency.removed`.
async fn remove_edge(
    conn: &mut WriteTx<'_>,
    room: &str,
    task: Uuid,
    dependency: Uuid,
) -> Result<Task> {
    let done = sqlx::query("DELETE FROM task_dependencies WHERE task_id = $1 AND depends_on = $2")
        .bind(task.to_string())
        .bind(dependency.to_string())
        .execute(&mut **conn)
        .await?;
    if done.rows_affected() == 0 {
        fetch_row(conn, task)
            .await?
            .ok_or(StoreError::TaskNotFound(task))?;
        return Err(DependencyError::NoSuchEdge(dependency).into());
    }
    let updated = touch(conn, task).await?;
    let change = DependencyChange {
        task: &updated,
        dependency_id: dependency,
    };
    conn.append(room, EventKind::DependencyRemoved, &change, now_ms())
        .await?;
    Ok(updated)
}

/// Records that a task changed (version + 1, new `updated_at`) and returns it.
async fn touch(conn: &mut AnyConnection, id: Uuid) -> Result<Task> {
    sqlx::query("UPDATE tasks SET updated_at = $1, version = version + 1 WHERE id = $2")
        .bind(now_ms())
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    fetch_task(conn, id).await
}

async fn next_ready_id(conn: &mut AnyConnection, project: &ProjectId) -> Result<Option<Uuid>> {
    let sql = format!("SELECT t.id FROM tasks t WHERE t.project_id = $1 AND {READY} ORDER BY t.priority DESC, t.id LIMIT 1");
    let id: Option<String> = sqlx::query_scalar(&sql)
        .bind(project.as_str().to_owned())
        .fetch_optional(&mut *conn)
        .await?;
    id.as_deref().map(parse_uuid).transpose()
}

/// Every dependency edge `(task, depends_on)` within a project.
pub(crate) async fn project_edges(
    conn: &mut AnyConnection,
    project: &ProjectId,
) -> Result<Vec<(Uuid, Uuid)>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT d.task_id, d.depends_on FROM task_dependencies d JOIN tasks t ON t.id = d.task_id \
         WHERE t.project_id = $1",
    )
    .bind(project.as_str().to_owned())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|(a, b)| Ok((parse_uuid(a)?, parse_uuid(b)?)))
        .collect()
}

/// `id, title` → `t.id, t.title`.
fn prefixed(columns: &str) -> String {
    columns
        .split(", ")
        .map(|c| format!("t.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}
