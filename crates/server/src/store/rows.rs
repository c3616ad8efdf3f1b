//! Reading tasks back: the row shape, and hydration of each task's dependencies and `blocked`.

use super::{Result, StoreError};
use chrono::{DateTime, Utc};
use sqlx::any::AnyArguments;
use sqlx::AnyConnection;
use sqlx::{Arguments, FromRow};
use std::collections::HashMap;
use taskflow_protocol::{Task, TaskStatus};
use uuid::Uuid;

/// The columns of `tasks`, in [`TaskRow`] order.
pub(crate) const TASK_COLUMNS: &str =
    "id, project_id, title, description, status, priority, assignee, created_at, updated_at, version";

/// One row of `tasks`.
#[derive(Debug, Clone, FromRow)]
pub(crate) struct TaskRow {
    pub(crate) id: String,
    pub(crate) project_id: String,
    pub(crate) title: String,
    pub(crate) description: Option<String>,
    pub(crate) status: String,
    pub(crate) priority: i64,
    pub(crate) assignee: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) version: i64,
}

impl TaskRow {
    pub(crate) fn uuid(&self) -> Result<Uuid> {
        parse_uuid(&self.id)
    }

    pub(crate) fn status(&self) -> Result<TaskStatus> {
        TaskStatus::parse(&self.status).ok_or_else(|| {
            StoreError::Corrupt(format!("task {}: status {:?}", self.id, self.status))
        })
    }

    /// The task of a row just inserted, which has no dependencies yet.
    pub(crate) fn into_new_task(self) -> Result<Task> {
        self.into_task(Vec::new())
    }

    fn into_task(self, dependencies: Vec<(Uuid, TaskStatus)>) -> Result<Task> {
        Ok(Task {
            id: self.uuid()?,
            status: self.status()?,
            priority: u8::try_from(self.priority)
                .map_err(|_| StoreError::Corrupt(format!("task {}: priority", self.id)))?,
            blocked: dependencies.iter().any(|(_, s)| *s != TaskStatus::Done),
            dependencies: dependencies.into_iter().map(|(id, _)| id).collect(),
            title: self.title,
            description: self.description,
            project_id: self.project_id,
            assignee: self.assignee,
            created_at: from_ms(self.created_at),
            updated_at: from_ms(self.updated_at),
            version: self.version,
        })
    }
}

pub(crate) fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|_| StoreError::Corrupt(format!("bad uuid {s:?}")))
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Builds the `$n` placeholders and arguments of a dynamic query, so filters can be optional
/// without string-splicing values into SQL.
#[derive(Default)]
pub(crate) struct Binds {
    args: AnyArguments<'static>,
    count: usize,
}

impl Binds {
    /// Adds a value and returns its placeholder.
    pub(crate) fn push<T>(&mut self, value: T) -> String
    where
        T: 'static + Send + sqlx::Encode<'static, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        self.args
            .add(value)
            .expect("encoding a text or integer argument cannot fail");
        self.count += 1;
        format!("${}", self.count)
    }

    pub(crate) fn into_args(self) -> AnyArguments<'static> {
        self.args
    }
}

/// Loads full tasks for `rows`, keeping their order: one extra query fetches every dependency of
/// the batch with its status.
pub(crate) async fn hydrate(conn: &mut AnyConnection, rows: Vec<TaskRow>) -> Result<Vec<Task>> {
    // Bounded batches keep each query under the databases' limits on bound parameters.
    const BATCH: usize = 500;
    // SQLite resolves a numbered parameter (`$7`) by scanning the statement's parameter names,
    // for each parameter at every execution: quadratic in a 500-parameter list, and the largest
    // item of an export's profile. Its anonymous `?` binds by position.
    let anonymous = conn.backend_name() == "SQLite";
    let mut deps: HashMap<String, Vec<(Uuid, TaskStatus)>> = HashMap::new();
    for batch in rows.chunks(BATCH) {
        let mut binds = Binds::default();
        let placeholders: Vec<String> = batch
            .iter()
            .map(|r| {
                let numbered = binds.push(r.id.clone());
                if anonymous {
                    "?".to_owned()
                } else {
                    numbered
                }
            })
            .collect();
        let sql = format!(
            "SELECT d.task_id, d.depends_on, t.status FROM task_dependencies d \
             JOIN tasks t ON t.id = d.depends_on WHERE d.task_id IN ({}) ORDER BY d.task_id, d.depends_on",
            placeholders.join(", ")
        );
        let edges: Vec<(String, String, String)> = sqlx::query_as_with(&sql, binds.into_args())
            .fetch_all(&mut *conn)
            .await?;
        for (task, dep, status) in edges {
            let status = TaskStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("task {dep}: status {status:?}")))?;
            deps.entry(task)
                .or_default()
                .push((parse_uuid(&dep)?, status));
        }
    }
    rows.into_iter()
        .map(|row| {
            let d = deps.remove(&row.id).unwrap_or_default();
            row.into_task(d)
        })
        .collect()
}

/// Loads one task row, if present.
pub(crate) async fn fetch_row(conn: &mut AnyConnection, id: Uuid) -> Result<Option<TaskRow>> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
    Ok(sqlx::query_as(&sql)
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?)
}

/// Loads one full task, or `TaskNotFound`.
pub(crate) async fn fetch_task(conn: &mut AnyConnection, id: Uuid) -> Result<Task> {
    let row = fetch_row(conn, id)
        .await?
        .ok_or(StoreError::TaskNotFound(id))?;
    let mut tasks = hydrate(conn, vec![row]).await?;
    Ok(tasks.pop().expect("one row in, one task out"))
}
