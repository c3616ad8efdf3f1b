//! What can go wrong in the store. The API maps these to HTTP answers in one place
//! (`crate::error`).

use std::sync::Arc;
use uuid::Uuid;

/// A store operation that did not happen, and why.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The task does not exist (or was deleted meanwhile).
    #[error("task {0} not found")]
    TaskNotFound(Uuid),
    /// The project does not exist.
    #[error("project {0} not found")]
    ProjectNotFound(String),
    /// A project with this id already exists.
    #[error("project {0} already exists")]
    ProjectExists(String),
    /// The collaborative document does not exist (its task was deleted meanwhile).
    #[error("document {0} not found")]
    DocNotFound(String),
    /// A task with this id already exists (imports may carry ids).
    #[error("task {0} already exists")]
    TaskExists(Uuid),
    /// `If-Match` named a version that is no longer current.
    #[error("the task is at version {current}, not {expected}")]
    StaleVersion {
        /// The version the client had.
        expected: i64,
        /// The version in the store.
        current: i64,
    },
    /// A dependency rule was broken.
    #[error(transparent)]
    Dependency(#[from] DependencyError),
    /// Other tasks depend on the task being deleted.
    #[error("other tasks depend on this task")]
    HasDependents(Vec<Uuid>),
    /// The database URL names no supported backend.
    #[error("unsupported database URL: use sqlite://PATH or postgres://...")]
    UnsupportedUrl,
    /// The database failed or was unreachable.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// The write was not stored: it shared its transaction with other writes (SQLite's group
    /// commit) and that transaction could not be started or committed (the shared database
    /// error), or the writer stopped (none).
    #[error("database error: the write was not committed")]
    NotCommitted(#[source] Option<Arc<sqlx::Error>>),
    /// The embedded migrations could not be applied.
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored data could not be read back (a bug or a hand-edited database).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// Why a dependency cannot be added or removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DependencyError {
    /// A task cannot depend on itself.
    #[error("a task cannot depend on itself")]
    OnItself,
    /// The dependency is in another project (which is not named: the caller may not see it).
    #[error(
        "task {dependency} is not in project {task_project}; dependencies stay within a project"
    )]
    OtherProject {
        /// The dependency that was named.
        dependency: Uuid,
        /// The dependent task's project.
        task_project: String,
    },
    /// The dependency does not exist.
    #[error("dependency {0} not found")]
    Missing(Uuid),
    /// The edge to remove does not exist.
    #[error("task does not depend on {0}")]
    NoSuchEdge(Uuid),
    /// The edge would close a cycle; the cycle's task ids in order, first and last equal.
    #[error("the dependency would close a cycle")]
    Cycle(Vec<Uuid>),
}
