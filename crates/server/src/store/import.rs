//! Atomic imports: every line of an import goes into one transaction, committed only if every
//! line was valid.
//!
//! The caller validates the whole body first, without any transaction open (see
//! `api::import`), and only then starts an [`Importer`], naming every room the import will write
//! to: they are locked up front in one sorted order, which cannot deadlock with other writers
//! (each of which locks one project room, then at most one user room, in that same order).
//! Dependencies may point at any task of the import, earlier or later (an export lists tasks
//! oldest first, and a task may depend on a newer one), so edges are checked and inserted at the
//! end, followed by the `task.created` events, which then carry each task's dependencies.

use super::log::lock_room;
use super::rows::fetch_row;
use super::tasks::{insert_row, log_created, project_edges};
use super::tx::{publish, SinkSlot, WriteTx};
use super::{DependencyError, Result, Store, StoreError};
use crate::domain::{tasks_on_cycles, NewTask, ProjectId};
use sqlx::{Any, Transaction};
use std::collections::{BTreeSet, HashMap};
use uuid::Uuid;

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
    /// Every imported task in line order: id, index into `projects`, line. Events are logged in
    /// this order at commit.
    imported: Vec<(Uuid, u32, u64)>,
    /// Edges `(task, dependency, line)` to check and insert at commit.
    edges: Vec<(Uuid, Uuid, u64)>,
}

impl Store {
    /// Starts an import that will write to `projects` and log assignments to `assignees`' user
    /// rooms; locks all those rooms now, in sorted order. For SQLite this holds the single writer
    /// until the import ends, which is why the body is validated before.
    pub async fn begin_import(
        &self,
        projects: BTreeSet<ProjectId>,
        assignees: BTreeSet<String>,
    ) -> Result<Importer> {
        let mut tx = self.write.begin().await?;
        for project in &projects {
            lock_room(&mut tx, &project.room()).await?;
        }
        for user in &assignees {
            lock_room(&mut tx, &format!("user:{user}")).await?;
        }
        Ok(Importer {
            tx,
            sink: self.sink.clone(),
            projects: projects.into_iter().collect(),
            imported: Vec::new(),
            edges: Vec::new(),
        })
    }
}

impl Importer {
    /// Inserts one line's task; its dependencies and event follow at [`Importer::commit`].
    pub async fn add(&mut self, line: u64, spec: &ImportSpec) -> Result<()> {
        let project = self
            .projects
            .binary_search(&spec.task.project_id)
            .map_err(|_| {
                StoreError::Corrupt(format!(
                    "project {} was not announced",
                    spec.task.project_id
                ))
            })?;
        let id = match spec.id {
            Some(id) if fetch_row(&mut self.tx, id).await?.is_some() => {
                return Err(StoreError::TaskExists(id))
            }
            Some(id) => id,
            None => Uuid::now_v7(),
        };
        insert_row(&mut self.tx, id, &spec.task).await?;
        self.imported.push((id, project as u32, line));
        self.edges
            .extend(spec.dependencies.iter().map(|&dep| (id, dep, line)));
        Ok(())
    }

    /// Checks and inserts the dependencies, logs every `task.created`, and commits. Bad edges
    /// (missing task, other project, cycle) reject the whole import with their lines.
    pub async fn commit(mut self) -> Result<Result<u64, Vec<LineError>>> {
        let mut bad = Vec::new();
        let of: HashMap<Uuid, u32> = self.imported.iter().map(|&(id, p, _)| (id, p)).collect();
        for &(task, dep, line) in &self.edges {
            let task_project = &self.projects[of[&task] as usize];
            let dep_project = match of.get(&dep) {
                Some(&p) => Some(self.projects[p as usize].as_str().to_owned()),
                None => fetch_row(&mut self.tx, dep)
                    .await?
                    .map(|row| row.project_id),
            };
            let problem = match dep_project {
                _ if dep == task => Some(DependencyError::OnItself),
                None => Some(DependencyError::Missing(dep)),
                Some(p) if p != task_project.as_str() => Some(DependencyError::OtherProject {
                    dependency: dep,
                    task_project: task_project.to_string(),
                }),
                Some(_) => None,
            };
            match problem {
                Some(problem) => bad.push(LineError {
                    line,
                    reason: format!("dependencies: {problem}"),
                }),
                None => {
                    sqlx::query("INSERT INTO task_dependencies (task_id, depends_on) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                        .bind(task.to_string())
                        .bind(dep.to_string())
                        .execute(&mut *self.tx)
                        .await?;
                }
            }
        }
        if !self.edges.is_empty() {
            let lines: HashMap<Uuid, u64> = self
                .imported
                .iter()
                .map(|&(id, _, line)| (id, line))
                .collect();
            for project in &self.projects {
                let edges = project_edges(&mut self.tx, project).await?;
                for task in tasks_on_cycles(&edges) {
                    if let Some(&line) = lines.get(&task) {
                        bad.push(LineError {
                            line,
                            reason: "dependencies: the dependencies form a cycle".into(),
                        });
                    }
                }
            }
        }
        if !bad.is_empty() {
            bad.sort_by_key(|e| e.line);
            return Ok(Err(bad));
        }
        let mut logged = WriteTx::new(&mut self.tx);
        for &(id, project, _) in &self.imported {
            log_created(&mut logged, id, &self.projects[project as usize]).await?;
        }
        let events = logged.into_events();
        let count = self.imported.len() as u64;
        self.tx.commit().await?;
        publish(&self.sink, events);
        Ok(Ok(count))
    }
}
