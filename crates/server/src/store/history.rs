//! One task's events, read from its project's room: what `GET /tasks/{id}/history` pages
//! through. Every event about a task names it in the log's `task_id` column (filled here, as the
//! event is appended), which `events_by_task` indexes, so a task's history is a range of an index
//! whatever the size of its room.

use super::log::logged;
use super::{Result, Store};
use crate::domain::ProjectId;
use serde_json::Value;
use taskflow_protocol::{EventKind, LoggedEvent};
use uuid::Uuid;

/// The task an event is about, as its payload names it (store/tasks.rs writes the payloads):
/// the task itself for the `task.*` kinds, `task` for a dependency change and `task.unblocked`.
/// `None` for events about no single task (chat, members, an import's summary).
pub(super) fn subject(kind: EventKind, data: &Value) -> Option<String> {
    let task = match kind {
        EventKind::TaskCreated
        | EventKind::TaskUpdated
        | EventKind::TaskMoved
        | EventKind::TaskDeleted
        | EventKind::TaskAssigned => data,
        EventKind::DependencyAdded | EventKind::DependencyRemoved | EventKind::TaskUnblocked => {
            data.get("task")?
        }
        EventKind::MessageCreated
        | EventKind::MemberAdded
        | EventKind::MemberRemoved
        | EventKind::TasksImported
        | EventKind::MessageDirect => return None,
    };
    task.get("id")?.as_str().map(str::to_owned)
}

impl Store {
    /// Up to `limit` events about `task` in `project`'s room with an offset below `before` (all
    /// if `None`), newest first. Only what retention has left: compaction deletes old events.
    pub async fn task_events(
        &self,
        project: &ProjectId,
        task: Uuid,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<LoggedEvent>> {
        let room = project.room();
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT seq, kind, payload, created_at FROM events \
             WHERE room = $1 AND task_id = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4",
        )
        .bind(room.clone())
        .bind(task.to_string())
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter().map(|row| logged(&room, row)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_subject_is_where_each_kind_names_its_task() {
        let id = "01a2010b-1212-766e-a733-4a79e792a55e";
        let task = json!({ "id": id, "title": "t" });
        for kind in [
            EventKind::TaskCreated,
            EventKind::TaskUpdated,
            EventKind::TaskMoved,
            EventKind::TaskDeleted,
            EventKind::TaskAssigned,
        ] {
            assert_eq!(subject(kind, &task).as_deref(), Some(id), "{kind:?}");
        }
        let edge = json!({ "task": task, "dependency_id": "01a2010b-1212-766e-a733-000000000000" });
        for kind in [
            EventKind::DependencyAdded,
            EventKind::DependencyRemoved,
            EventKind::TaskUnblocked,
        ] {
            assert_eq!(subject(kind, &edge).as_deref(), Some(id), "{kind:?}");
        }
        let chat = json!({ "user": "alice", "text": "hi", "id": "not a task" });
        for kind in [
            EventKind::MessageCreated,
            EventKind::MemberAdded,
            EventKind::MemberRemoved,
            EventKind::TasksImported,
            EventKind::MessageDirect,
        ] {
            assert_eq!(subject(kind, &chat), None, "{kind:?}");
        }
    }

    /// The migration backfills `task_id` of older events by position in the payload; that holds
    /// only while a task serializes `id` first and a dependency change `task` first.
    #[test]
    fn payloads_start_where_the_backfill_reads_the_id() {
        let id = Uuid::now_v7();
        let task = taskflow_protocol::Task {
            id,
            title: "t".into(),
            description: None,
            status: taskflow_protocol::TaskStatus::Todo,
            priority: 0,
            project_id: "default".into(),
            assignee: None,
            dependencies: vec![],
            blocked: false,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            version: 1,
        };
        // As the log stores it: through a `Value`, then text.
        let text = serde_json::to_value(&task).unwrap().to_string();
        assert!(text.starts_with(r#"{"id":""#), "{text}");
        assert_eq!(&text[7..43], id.to_string());
        assert_eq!(&text[43..44], "\"");
        let edge = json!({ "task": task, "dependency_id": Uuid::now_v7() }).to_string();
        assert!(edge.starts_with(r#"{"task":{"id":""#), "{edge}");
        assert_eq!(&edge[15..51], id.to_string());
        assert_eq!(&edge[51..52], "\"");
    }
}
