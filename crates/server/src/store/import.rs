//! Atomic imports: every line of an import goes into one transaction, committed only if every
//! line was valid.

use super::log::lock_room;
use super::rows::fetch_row;
use super::tasks::insert_task;
use super::{DependencyError, Result, Store, StoreError};
use crate::domain::{NewTask, ProjectId};
use sqlx::{Any, Transaction};
use std::collections::HashSet;
use uuid::Uuid;

/// One validated line of an import.
#[derive(Debug, Clone)]
pub struct ImportSpec {
    /// Keep this id (as exported) instead of generating one.
    pub id: Option<Uuid>,
    /// The task.
    pub task: NewTask,
    /// Tasks it depends on: existing ones, or ones earlier in the same import. That rule also
    /// makes a cycle impossible, so no graph check is needed per line.
    pub dependencies: Vec<Uuid>,
}

/// An import in progress: an open write transaction. Dropping it without [`Importer::commit`]
/// rolls everything back.
pub struct Importer {
    /// The transaction every line goes into.
    tx: Transaction<'static, Any>,
    /// Rooms already locked by this transaction, so each is locked once.
    locked: HashSet<String>,
    /// Tasks inserted so far.
    count: u64,
}

impl Store {
    /// Starts an import. For SQLite this holds the single writer until it ends.
    pub async fn begin_import(&self) -> Result<Importer> {
        Ok(Importer {
            tx: self.write.begin().await?,
            locked: HashSet::new(),
            count: 0,
        })
    }
}

impl Importer {
    /// Inserts one line's task and logs its `task.created`.
    pub async fn add(&mut self, spec: &ImportSpec) -> Result<()> {
        let project: &ProjectId = &spec.task.project_id;
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
        for &dep in &spec.dependencies {
            let row = fetch_row(&mut self.tx, dep)
                .await?
                .ok_or(DependencyError::Missing(dep))?;
            if row.project_id != project.as_str() {
                return Err(DependencyError::OtherProject {
                    dependency: dep,
                    task_project: project.to_string(),
                    dependency_project: row.project_id,
                }
                .into());
            }
        }
        insert_task(&mut self.tx, id, &spec.task, &spec.dependencies).await?;
        self.count += 1;
        Ok(())
    }

    /// Commits every line; returns how many tasks were imported.
    pub async fn commit(self) -> Result<u64> {
        self.tx.commit().await?;
        Ok(self.count)
    }
}
