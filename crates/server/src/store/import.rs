//! Atomic imports: every line of an import goes into one transaction, committed only if every
//! line was valid.
//!
//! Lines are inserted as they stream in. Dependencies may point at any task of the import,
//! earlier or later (an export lists tasks oldest first, and a task may depend on a newer one),
//! so edges are checked and inserted at the end, followed by the `task.created` events, which
//! then carry each task's dependencies. Until then the importer keeps, per line, the task id and
//! its dependency ids: bounded by the body limit, and far smaller than the tasks themselves.

use super::log::lock_room;
use super::rows::fetch_row;
use super::tasks::{insert_row, log_created, project_edges};
use super::{DependencyError, Result, Store, StoreError};
use crate::domain::{tasks_on_cycles, NewTask, ProjectId};
use sqlx::{Any, Transaction};
use std::collections::{HashMap, HashSet};
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

/// An import in progress: an open write transaction. Dropping it without [`Importer::commit`]
/// rolls everything back.
pub struct Importer {
    /// The transaction every line goes into.
    tx: Transaction<'static, Any>,
    /// Rooms already locked by this transaction, so each is locked once.
    locked: HashSet<String>,
    /// Every imported task in line order, with its project and line: events are logged in this
    /// order at commit.
    imported: Vec<(Uuid, ProjectId, u64)>,
    /// Edges `(task, dependency, line)` to check and insert at commit.
    edges: Vec<(Uuid, Uuid, u64)>,
}

impl Store {
    /// Starts an import. For SQLite this holds the single writer until it ends.
    pub async fn begin_import(&self) -> Result<Importer> {
        Ok(Importer {
            tx: self.write.begin().await?,
            locked: HashSet::new(),
            imported: Vec::new(),
            edges: Vec::new(),
        })
    }
}

impl Importer {
    /// Inserts one line's task; its dependencies and event follow at [`Importer::commit`].
    pub async fn add(&mut self, line: u64, spec: &ImportSpec) -> Result<()> {
        let project = &spec.task.project_id;
        let room = project.room();
        if !self.locked.contains(&room) {
            lock_room(&mut self.tx, &room).await?;
            self.locked.insert(room);
        }
        let id = match spec.id {
            Some(id) if fetch_row(&mut self.tx, id).await?.is_some() => {
                return Err(StoreError::TaskExists(id))
            }
            Some(id) => id,
            None => Uuid::now_v7(),
        };
        insert_row(&mut self.tx, id, &spec.task).await?;
        self.imported.push((id, project.clone(), line));
        self.edges
            .extend(spec.dependencies.iter().map(|&dep| (id, dep, line)));
        Ok(())
    }

    /// Checks and inserts the dependencies, logs every `task.created`, and commits. Bad edges
    /// (missing task, other project, cycle) reject the whole import with their lines.
    pub async fn commit(mut self) -> Result<Result<u64, Vec<LineError>>> {
        let mut bad = Vec::new();
        let projects: HashMap<Uuid, &ProjectId> =
            self.imported.iter().map(|(id, p, _)| (*id, p)).collect();
        for &(task, dep, line) in &self.edges {
            let dep_project = match projects.get(&dep) {
                Some(p) => Some(p.as_str().to_owned()),
                None => fetch_row(&mut self.tx, dep)
                    .await?
                    .map(|row| row.project_id),
            };
            let task_project = projects[&task];
            let problem = match dep_project {
                _ if dep == task => Some(DependencyError::OnItself),
                None => Some(DependencyError::Missing(dep)),
                Some(p) if p != task_project.as_str() => Some(DependencyError::OtherProject {
                    dependency: dep,
                    task_project: task_project.to_string(),
                    dependency_project: p,
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
                .map(|(id, _, line)| (*id, *line))
                .collect();
            let touched: HashSet<&ProjectId> = self.imported.iter().map(|(_, p, _)| p).collect();
            for project in touched {
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
        for (id, project, _) in &self.imported {
            log_created(&mut self.tx, *id, project).await?;
        }
        self.tx.commit().await?;
        Ok(Ok(self.imported.len() as u64))
    }
}
