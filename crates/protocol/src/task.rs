//! Task and project read models: what the REST API answers and what task events carry.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a task stands in its life. The board's columns are these three values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Not started; the only status the priority queue hands out.
    Todo,
    /// Claimed or started by someone.
    InProgress,
    /// Finished; a dependency that is done no longer blocks its dependents.
    Done,
}

impl TaskStatus {
    /// Every status, in board order.
    pub const ALL: [TaskStatus; 3] = [TaskStatus::Todo, TaskStatus::InProgress, TaskStatus::Done];

    /// The name used on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Todo => "todo",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::Done => "done",
        }
    }

    /// Parses the wire name; `None` for anything else, so callers choose their own error.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

/// A task as the server returns it: every stored field plus the derived `blocked` flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Task {
    /// Server-generated UUIDv7: sorts by creation time.
    pub id: Uuid,
    /// Trimmed, 1 to 200 characters.
    pub title: String,
    /// Free text, at most 10,000 characters.
    pub description: Option<String>,
    /// Where the task stands.
    pub status: TaskStatus,
    /// 0 to 100; higher is served first by the priority queue.
    pub priority: u8,
    /// The project the task belongs to (`default` unless given).
    pub project_id: String,
    /// The user the task is assigned to, if any.
    pub assignee: Option<String>,
    /// Tasks of the same project that must be done before this one is ready.
    pub dependencies: Vec<Uuid>,
    /// True while any dependency is not `done`.
    pub blocked: bool,
    /// When the task was created.
    pub created_at: DateTime<Utc>,
    /// When the task last changed.
    pub updated_at: DateTime<Utc>,
    /// Starts at 1 and grows by 1 on every change: the value `If-Match` compares against.
    pub version: i64,
}

/// One page of a task listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskPage {
    /// Tasks ordered by priority (highest first), then creation (oldest first).
    pub items: Vec<Task>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A project: a set of tasks and the users allowed to see them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Project {
    /// A short slug (`[a-z0-9][a-z0-9_-]{0,63}`); rooms are named `project:<id>`.
    pub id: String,
    /// A human name.
    pub name: String,
    /// User ids allowed to see and change the project's tasks (the admin always may).
    pub members: Vec<String>,
    /// When the project was created.
    pub created_at: DateTime<Utc>,
}
