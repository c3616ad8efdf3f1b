//! Atomic imports at the store's speed: every line of an import goes into one transaction,
//! committed only if every line was valid, written in batches.
//!
//! The caller validates the whole body first, without any transaction open (see
//! `api::import`), and only then starts an [`Importer`], naming every room the import will write
//! to: they are locked up front in one sorted order, which cannot deadlock with other writers
//! (each of which locks one project room, then at most one user room, in that same order).
//!
//! What makes it fast and bounded:
//! - tasks are inserted [`BATCH`] rows per statement (one prepared statement, reused), not one
//!   statement per line; an explicit id that already exists is found by the statement's own
//!   `ON CONFLICT DO NOTHING RETURNING id`, not by a lookup per line;
//! - dependencies may point at any task of the import, earlier or later (an export lists tasks
//!   oldest first, and a task may depend on a newer one), so they are checked at the end; until
//!   then they wait in a temporary table of the transaction, not in memory, and the checks
//!   (missing task, other project, on itself) are joins;
//! - what the import logs is chosen by [`ImportEvents`]: per task, only for imports small enough
//!   that subscribers can take a `task.created` each (then the importer remembers each task's id
//!   until commit); otherwise one `tasks.imported` per room. Either way memory is a batch, a few
//!   counters per project and assignee, and the first lines of any rejection.

use super::log::lock_room;
use super::rows::TASK_COLUMNS;
use super::tasks::{log_created, project_edges};
use super::tx::{publish, SinkSlot, WriteTx};
use super::{now_ms, Backend, DependencyError, Result, Store, StoreError};
use crate::domain::{tasks_on_cycles, NewTask, ProjectId};
use futures::TryStreamExt;
use serde_json::json;
use sqlx::{Any, Transaction};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::OnceLock;
use taskflow_protocol::EventKind;
use uuid::Uuid;

/// Rows per `INSERT`: 9 parameters each keeps a statement well under both databases' parameter
/// limits (SQLite 32,766, PostgreSQL 65,535), and large enough that the per-statement cost
/// vanishes.
const BATCH: usize = 500;

/// SQLite's page cache for the writer during an import, KiB (the default is 2,000 KiB).
const IMPORT_CACHE_KIB: u32 = 32 * 1024;

/// Dependency edges per `INSERT` into the temporary table (3 parameters each).
const EDGE_BATCH: usize = 1000;

/// How many lines of each kind of bad dependency an answer lists.
const MAX_REPORTED: i64 = 100;

/// One validated line of an import.
#[derive(Debug, Clone)]
pub struct ImportSpec {
    /// Keep this id (as exported) instead of generating one.
    pub id: Option<Uuid>,
    /// The task.
    pub task: NewTask,
    /// Tasks it depends on: existing ones or others of the same import, in the same project.
    pub dependencies: Vec<Uuid>,
}

/// A line that cannot be imported: its number and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

/// What an import logs for subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportEvents {
    /// A `task.created` per task (and `task.assigned` per assignment), as if each had been
    /// created through `POST /tasks`.
    Tasks,
    /// One `tasks.imported` per project room (`{project_id, count}`) and per assignee's user
    /// room (`{user, count}`): subscribers reload what it names. A million `task.created`
    /// frames would be a broadcast storm of their own.
    Summary,
}

/// An import in progress: an open write transaction of its own (with SQLite, the writer
/// connection, taken from the group commit's turn). Dropping it without [`Importer::commit`]
/// rolls everything back.
pub struct Importer {
    /// The transaction every line goes into.
    tx: Transaction<'static, Any>,
    /// Where the import's events go once it has committed.
    sink: SinkSlot,
    /// The projects the import writes to, in lock order; lines refer to them by index.
    projects: Vec<ProjectId>,
    /// What the import logs.
    events: ImportEvents,
    /// Lines waiting for the next `INSERT`.
    batch: Vec<Row>,
    /// Edges waiting for the next `INSERT` into the temporary table.
    edges: Vec<(Uuid, Uuid, u64)>,
    /// Whether the temporary edge table exists in this transaction.
    edge_table: bool,
    /// Tasks imported per project (by index into `projects`).
    per_project: Vec<u64>,
    /// Tasks assigned per assignee.
    per_assignee: BTreeMap<String, u64>,
    /// With [`ImportEvents::Tasks`] only: every imported task in line order, with its project.
    created: Vec<(Uuid, u32)>,
    /// The time every imported task is created at.
    now: i64,
    /// Which database: the statements' placeholders differ.
    backend: Backend,
    /// The writer pool, to give the SQLite writer its usual cache back afterwards.
    write: sqlx::AnyPool,
}

/// One line, ready to insert.
struct Row {
    line: u64,
    id: Uuid,
    /// Whether the id came from the line (and so may already exist).
    explicit: bool,
    project: u32,
    task: NewTask,
}

impl Store {
    /// Starts an import that will write to `projects` and log assignments to `assignees`' user
    /// rooms; locks all those rooms now, in sorted order. For SQLite this holds the single writer
    /// until the import ends, which is why the body is validated before.
    pub async fn begin_import(
        &self,
        projects: BTreeSet<ProjectId>,
        assignees: BTreeSet<String>,
        events: ImportEvents,
    ) -> Result<Importer> {
        let mut tx = self.write.begin().await?;
        if self.backend == Backend::Sqlite {
            // The transaction's pages stay in the writer's cache instead of being spilled to
            // the WAL a few at a time (most of the import's time in system calls at the
            // default 2 MB); restored at the end (`Importer::restore_cache`).
            sqlx::query(&format!("PRAGMA cache_size = -{IMPORT_CACHE_KIB}"))
                .execute(&mut *tx)
                .await?;
        }
        for project in &projects {
            lock_room(&mut tx, &project.room()).await?;
        }
        for user in &assignees {
            lock_room(&mut tx, &format!("user:{user}")).await?;
        }
        Ok(Importer {
            tx,
            sink: self.sink.clone(),
            per_project: vec![0; projects.len()],
            projects: projects.into_iter().collect(),
            events,
            batch: Vec::with_capacity(BATCH),
            edges: Vec::new(),
            edge_table: false,
            per_assignee: BTreeMap::new(),
            created: Vec::new(),
            now: now_ms(),
            backend: self.backend,
            write: self.write.clone(),
        })
    }
}

/// Once an import has ended, rolled back or committed, and its connection is the pool's again:
/// shrinks the SQLite writer's cache back to the default and hands the freed pages back.
async fn restore_cache(backend: Backend, write: &sqlx::AnyPool) -> Result<()> {
    if backend == Backend::Sqlite {
        let mut conn = write.acquire().await?;
        sqlx::query("PRAGMA cache_size = -2000")
            .execute(&mut *conn)
            .await?;
        sqlx::query("PRAGMA shrink_memory")
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// `rows` rows of `columns` placeholders each: `($1, $2), ($3, $4)` for PostgreSQL, `(?, ?), (?, ?)`
/// for SQLite. SQLite resolves a numbered parameter by scanning the statement's list of names, once
/// per parameter per execution, which is quadratic in a statement of thousands of them (it was
/// most of an import's time); anonymous `?` parameters are bound by position.
fn values(backend: Backend, rows: usize, columns: usize, constants: &str) -> String {
    let mut sql = String::with_capacity(rows * columns * 6);
    let mut n = 0;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    n += 1;
                    sql.push_str(&format!("${n}"));
                }
            }
        }
        sql.push_str(constants);
        sql.push(')');
    }
    sql
}

/// `INSERT INTO tasks … VALUES (…), (…) ON CONFLICT (id) DO NOTHING RETURNING id` for `rows`
/// rows (`created_at` and `updated_at` are both bound: the same value).
fn insert_sql(backend: Backend, rows: usize) -> String {
    format!(
        "INSERT INTO tasks ({TASK_COLUMNS}) VALUES {} ON CONFLICT (id) DO NOTHING RETURNING id",
        values(backend, rows, 9, ", 1")
    )
}

/// The statement of a full batch, the one almost every line goes through.
fn full_batch_sql(backend: Backend) -> &'static str {
    static SQL: [OnceLock<String>; 2] = [OnceLock::new(), OnceLock::new()];
    SQL[backend as usize].get_or_init(|| insert_sql(backend, BATCH))
}

/// The same for the temporary edge table.
fn edge_sql(backend: Backend, rows: usize) -> String {
    format!(
        "INSERT INTO import_edges (task_id, depends_on, line) VALUES {}",
        values(backend, rows, 3, "")
    )
}

impl Importer {
    /// Adds one line's task; it is inserted with the next batch, its dependencies and events
    /// follow at [`Importer::commit`]. Returns the lines a batch written now could not take (an
    /// explicit id that exists, or that an earlier line of the import already used).
    pub async fn add(&mut self, line: u64, spec: &ImportSpec) -> Result<Vec<LineError>> {
        let project = self
            .projects
            .binary_search(&spec.task.project_id)
            .map_err(|_| {
                StoreError::Corrupt(format!(
                    "project {} was not announced",
                    spec.task.project_id
                ))
            })? as u32;
        let id = spec.id.unwrap_or_else(Uuid::now_v7);
        self.batch.push(Row {
            line,
            id,
            explicit: spec.id.is_some(),
            project,
            task: spec.task.clone(),
        });
        self.edges
            .extend(spec.dependencies.iter().map(|&dep| (id, dep, line)));
        if self.edges.len() >= EDGE_BATCH {
            self.flush_edges().await?;
        }
        if self.batch.len() >= BATCH {
            return self.flush().await;
        }
        Ok(Vec::new())
    }

    /// Inserts the waiting lines in one statement.
    async fn flush(&mut self) -> Result<Vec<LineError>> {
        if self.batch.is_empty() {
            return Ok(Vec::new());
        }
        let rows = std::mem::take(&mut self.batch);
        let partial;
        let sql = if rows.len() == BATCH {
            full_batch_sql(self.backend)
        } else {
            partial = insert_sql(self.backend, rows.len());
            &partial
        };
        let mut query = sqlx::query_scalar::<_, String>(sql);
        for row in &rows {
            query = query
                .bind(row.id.to_string())
                .bind(row.task.project_id.as_str().to_owned())
                .bind(row.task.title.as_str().to_owned())
                .bind(row.task.description.as_ref().map(|d| d.as_str().to_owned()))
                .bind(row.task.status.as_str())
                .bind(i64::from(row.task.priority.get()))
                .bind(row.task.assignee.as_ref().map(|a| a.as_str().to_owned()))
                .bind(self.now)
                .bind(self.now);
        }
        let inserted = query.fetch_all(&mut *self.tx).await?;
        let mut rejected = Vec::new();
        if inserted.len() < rows.len() {
            // Some explicit id was taken: by a task that exists, or by an earlier line of this
            // batch (the first line with an id wins, as it would have one statement per line).
            let mut unclaimed: HashSet<String> = inserted.into_iter().collect();
            for row in rows.iter().filter(|r| r.explicit) {
                if !unclaimed.remove(&row.id.to_string()) {
                    rejected.push(LineError {
                        line: row.line,
                        reason: StoreError::TaskExists(row.id).to_string(),
                    });
                }
            }
        }
        for row in &rows {
            self.per_project[row.project as usize] += 1;
            if let Some(assignee) = &row.task.assignee {
                *self
                    .per_assignee
                    .entry(assignee.as_str().to_owned())
                    .or_default() += 1;
            }
            if self.events == ImportEvents::Tasks {
                self.created.push((row.id, row.project));
            }
        }
        self.batch = rows;
        self.batch.clear();
        Ok(rejected)
    }

    /// Moves the waiting edges into the transaction's temporary table.
    async fn flush_edges(&mut self) -> Result<()> {
        if self.edges.is_empty() {
            return Ok(());
        }
        if !self.edge_table {
            // Created inside the transaction, so a rollback removes it too; dropped before
            // commit. `IF NOT EXISTS` and the `DELETE` cover a connection on which an earlier
            // import's table survived (SQLite keeps temporary tables per connection).
            sqlx::query(
                "CREATE TEMPORARY TABLE IF NOT EXISTS import_edges \
                 (task_id TEXT NOT NULL, depends_on TEXT NOT NULL, line BIGINT NOT NULL)",
            )
            .execute(&mut *self.tx)
            .await?;
            sqlx::query("DELETE FROM import_edges")
                .execute(&mut *self.tx)
                .await?;
            self.edge_table = true;
        }
        let edges = std::mem::take(&mut self.edges);
        for chunk in edges.chunks(EDGE_BATCH) {
            let sql = edge_sql(self.backend, chunk.len());
            let mut query = sqlx::query(&sql);
            for &(task, dep, line) in chunk {
                query = query
                    .bind(task.to_string())
                    .bind(dep.to_string())
                    .bind(line as i64);
            }
            query.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Checks and inserts the dependencies, logs the events, and commits. Bad edges (missing
    /// task, other project, on itself, cycle) reject the whole import with their lines.
    pub async fn commit(self) -> Result<Result<u64, Vec<LineError>>> {
        let (backend, write) = (self.backend, self.write.clone());
        let outcome = self.finish().await;
        restore_cache(backend, &write).await?;
        outcome
    }

    /// Ends the import without committing anything (a line was refused): rolls back, and gives
    /// the SQLite writer its usual cache back.
    pub async fn abandon(self) -> Result<()> {
        let (backend, write) = (self.backend, self.write.clone());
        drop(self);
        restore_cache(backend, &write).await
    }

    async fn finish(mut self) -> Result<Result<u64, Vec<LineError>>> {
        let rejected = self.flush().await?;
        if !rejected.is_empty() {
            return Ok(Err(rejected));
        }
        self.flush_edges().await?;
        if self.edge_table {
            let bad = self.check_edges().await?;
            if !bad.is_empty() {
                return Ok(Err(bad));
            }
        }
        let mut logged = WriteTx::new(&mut self.tx);
        match self.events {
            ImportEvents::Tasks => {
                for &(id, project) in &self.created {
                    log_created(&mut logged, id, &self.projects[project as usize]).await?;
                }
            }
            ImportEvents::Summary => {
                let at = now_ms();
                for (project, &count) in self.projects.iter().zip(&self.per_project) {
                    if count > 0 {
                        let data = json!({ "project_id": project.as_str(), "count": count });
                        logged
                            .append(&project.room(), EventKind::TasksImported, &data, at)
                            .await?;
                    }
                }
                for (user, &count) in &self.per_assignee {
                    let data = json!({ "user": user, "count": count });
                    logged
                        .append(&format!("user:{user}"), EventKind::TasksImported, &data, at)
                        .await?;
                }
            }
        }
        let events = logged.into_events();
        if self.edge_table {
            sqlx::query("DROP TABLE import_edges")
                .execute(&mut *self.tx)
                .await?;
        }
        let count = self.per_project.iter().sum();
        self.tx.commit().await?;
        publish(&self.sink, events);
        Ok(Ok(count))
    }

    /// The dependency checks, as joins over the temporary table; inserts the edges that pass.
    async fn check_edges(&mut self) -> Result<Vec<LineError>> {
        let mut bad = Vec::new();
        let on_itself: Vec<(i64,)> = sqlx::query_as(
            "SELECT line FROM import_edges WHERE task_id = depends_on ORDER BY line LIMIT $1",
        )
        .bind(MAX_REPORTED)
        .fetch_all(&mut *self.tx)
        .await?;
        for (line,) in on_itself {
            bad.push(LineError {
                line: line as u64,
                reason: format!("dependencies: {}", DependencyError::OnItself),
            });
        }
        let missing: Vec<(i64, String)> = sqlx::query_as(
            "SELECT e.line, e.depends_on FROM import_edges e \
             WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = e.depends_on) \
             ORDER BY e.line LIMIT $1",
        )
        .bind(MAX_REPORTED)
        .fetch_all(&mut *self.tx)
        .await?;
        for (line, dep) in missing {
            let dep = super::rows::parse_uuid(&dep)?;
            bad.push(LineError {
                line: line as u64,
                reason: format!("dependencies: {}", DependencyError::Missing(dep)),
            });
        }
        let elsewhere: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT e.line, e.depends_on, a.project_id FROM import_edges e \
             JOIN tasks a ON a.id = e.task_id JOIN tasks b ON b.id = e.depends_on \
             WHERE a.project_id <> b.project_id ORDER BY e.line LIMIT $1",
        )
        .bind(MAX_REPORTED)
        .fetch_all(&mut *self.tx)
        .await?;
        for (line, dep, project) in elsewhere {
            let dep = super::rows::parse_uuid(&dep)?;
            bad.push(LineError {
                line: line as u64,
                reason: format!(
                    "dependencies: {}",
                    DependencyError::OtherProject {
                        dependency: dep,
                        task_project: project,
                    }
                ),
            });
        }
        // The edges whose dependency exists go in (the others are already reported), so the
        // cycle check sees the graph as it would be.
        sqlx::query(
            "INSERT INTO task_dependencies (task_id, depends_on) \
             SELECT DISTINCT e.task_id, e.depends_on FROM import_edges e \
             WHERE EXISTS (SELECT 1 FROM tasks t WHERE t.id = e.depends_on) \
             ON CONFLICT DO NOTHING",
        )
        .execute(&mut *self.tx)
        .await?;
        let mut stuck: HashSet<String> = HashSet::new();
        for project in &self.projects {
            let edges = project_edges(&mut self.tx, project).await?;
            stuck.extend(tasks_on_cycles(&edges).iter().map(Uuid::to_string));
        }
        if !stuck.is_empty() {
            // The first lines, in line order, whose task lies on a cycle or waits on one.
            let mut lines = sqlx::query_as::<_, (String, i64)>(
                "SELECT task_id, MIN(line) FROM import_edges GROUP BY task_id ORDER BY MIN(line)",
            )
            .fetch(&mut *self.tx);
            let mut reported = 0;
            while let Some((task, line)) = lines.try_next().await? {
                if stuck.contains(&task) {
                    bad.push(LineError {
                        line: line as u64,
                        reason: "dependencies: the dependencies form a cycle".into(),
                    });
                    reported += 1;
                    if reported == MAX_REPORTED {
                        break;
                    }
                }
            }
        }
        bad.sort_by_key(|e| e.line);
        Ok(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_statement_has_a_placeholder_per_value() {
        let pg = insert_sql(Backend::Postgres, 2);
        assert!(
            pg.contains("VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1), ($10,"),
            "{pg}"
        );
        assert!(
            pg.ends_with("$18, 1) ON CONFLICT (id) DO NOTHING RETURNING id"),
            "{pg}"
        );
        let lite = insert_sql(Backend::Sqlite, 2);
        assert!(
            lite.contains("VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1), (?, "),
            "{lite}"
        );
        assert_eq!(lite.matches('?').count(), 18);
        assert_eq!(
            edge_sql(Backend::Postgres, 2),
            "INSERT INTO import_edges (task_id, depends_on, line) VALUES ($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(
            edge_sql(Backend::Sqlite, 1),
            "INSERT INTO import_edges (task_id, depends_on, line) VALUES (?, ?, ?)"
        );
    }
}
