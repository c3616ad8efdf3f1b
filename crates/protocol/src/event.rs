//! Entries of the event log: every change to a task is recorded in its project's room with an
//! offset, and the real-time hub delivers from this log.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What happened. The wire names are dotted (`task.created`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventKind {
    /// A task was created; data is the task.
    #[serde(rename = "task.created")]
    TaskCreated,
    /// A task changed other than in priority; data is the task after the change.
    #[serde(rename = "task.updated")]
    TaskUpdated,
    /// A task's priority changed, so its place in the queue moved; data is the task after.
    #[serde(rename = "task.moved")]
    TaskMoved,
    /// A task was deleted; data is the task as it was.
    #[serde(rename = "task.deleted")]
    TaskDeleted,
    /// A dependency edge was added; data is `{task, dependency_id}`.
    #[serde(rename = "dependency.added")]
    DependencyAdded,
    /// A dependency edge was removed; data is `{task, dependency_id}`.
    #[serde(rename = "dependency.removed")]
    DependencyRemoved,
    /// Logged in `user:<assignee>` when a task is assigned to that user; data is the task.
    #[serde(rename = "task.assigned")]
    TaskAssigned,
    /// A chat message; data is `{user, text}`.
    #[serde(rename = "message.created")]
    MessageCreated,
    /// A user became a member of the project; data is `{project_id, user}`.
    #[serde(rename = "member.added")]
    MemberAdded,
    /// A user stopped being a member of the project; data is `{project_id, user}`.
    #[serde(rename = "member.removed")]
    MemberRemoved,
    /// An import created many tasks at once, logged instead of a `task.created` each: data is
    /// `{project_id, count}` in the project room, `{user, count}` in an assignee's user room.
    /// Subscribers reload what it names (`GET /tasks?project=…`).
    #[serde(rename = "tasks.imported")]
    TasksImported,
    /// A direct message from one user to another, logged in both users' rooms (`user:<from>`
    /// and `user:<to>`), so every tab of each sees it and a reconnect resumes it; data is
    /// `{from, to, text}`.
    #[serde(rename = "message.direct")]
    MessageDirect,
    /// Logged in `user:<assignee>` when the last unfinished dependency of a task assigned to
    /// that user became `done`: the task is ready to start. Data is `{task, dependency_id}`
    /// (the task after the change, and the dependency whose completion freed it).
    #[serde(rename = "task.unblocked")]
    TaskUnblocked,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 13] = [
        EventKind::TaskCreated,
        EventKind::TaskUpdated,
        EventKind::TaskMoved,
        EventKind::TaskDeleted,
        EventKind::DependencyAdded,
        EventKind::DependencyRemoved,
        EventKind::TaskAssigned,
        EventKind::MessageCreated,
        EventKind::MemberAdded,
        EventKind::MemberRemoved,
        EventKind::TasksImported,
        EventKind::MessageDirect,
        EventKind::TaskUnblocked,
    ];

    /// The wire name, also stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::TaskCreated => "task.created",
            EventKind::TaskUpdated => "task.updated",
            EventKind::TaskMoved => "task.moved",
            EventKind::TaskDeleted => "task.deleted",
            EventKind::DependencyAdded => "dependency.added",
            EventKind::DependencyRemoved => "dependency.removed",
            EventKind::TaskAssigned => "task.assigned",
            EventKind::MessageCreated => "message.created",
            EventKind::MemberAdded => "member.added",
            EventKind::MemberRemoved => "member.removed",
            EventKind::TasksImported => "tasks.imported",
            EventKind::MessageDirect => "message.direct",
            EventKind::TaskUnblocked => "task.unblocked",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == s)
    }

    /// Whether this is a change to a task (what the `tasks` room carries).
    pub fn is_task_event(self) -> bool {
        !matches!(
            self,
            EventKind::MessageCreated
                | EventKind::MemberAdded
                | EventKind::MemberRemoved
                | EventKind::TaskAssigned
                | EventKind::MessageDirect
                | EventKind::TaskUnblocked
        )
    }
}

/// A room name as it appears on the wire, e.g. `project:p1`.
pub type Room = String;

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoggedEvent {
    /// The room the event belongs to (`project:<id>`).
    pub room: Room,
    /// Position in the room: 1 for the first event, then exactly +1 each, with no holes.
    pub offset: i64,
    /// What happened.
    pub event: EventKind,
    /// The payload (for task events, the task).
    pub data: serde_json::Value,
    /// When the change was committed.
    pub at: DateTime<Utc>,
}
