//! Projects and their members.

use super::dedup;
use super::log::lock_room;
use super::rows::from_ms;
use super::{now_ms, Result, Store, StoreError};
use crate::domain::{ProjectId, UserId};
use serde::Serialize;
use std::collections::BTreeMap;
use taskflow_protocol::{EventKind, LoggedEvent, Project};

/// Payload of `member.added` / `member.removed`.
#[derive(Serialize)]
struct MemberChange<'a> {
    project_id: &'a str,
    user: &'a str,
}

/// Payload of `message.created`.
#[derive(Serialize)]
struct ChatMessage<'a> {
    user: &'a str,
    text: &'a str,
}

/// `id, name, created_at` of a project.
type ProjectRow = (String, String, i64);

impl Store {
    /// Creates a project (and its event-log room) with its first members.
    pub async fn create_project(
        &self,
        id: &ProjectId,
        name: &str,
        members: &[UserId],
    ) -> Result<Project> {
        let now = now_ms();
        let (project, name, members) = (id.clone(), name.to_owned(), members.to_vec());
        self.write(move |tx| {
            Box::pin(async move {
                let done = sqlx::query("INSERT INTO projects (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
                    .bind(project.as_str().to_owned())
                    .bind(name)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::ProjectExists(project.to_string()));
                }
                sqlx::query(
                    "INSERT INTO rooms (room, last_offset) VALUES ($1, 0) ON CONFLICT (room) DO NOTHING",
                )
                .bind(project.room())
                .execute(&mut **tx)
                .await?;
                for member in members {
                    sqlx::query("INSERT INTO project_members (project_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                        .bind(project.as_str().to_owned())
                        .bind(member.as_str().to_owned())
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(())
            })
        })
        .await?;
        self.get_project(id).await
    }

    /// One project with its members.
    pub async fn get_project(&self, id: &ProjectId) -> Result<Project> {
        let row: Option<(String, String, i64)> =
            sqlx::query_as("SELECT id, name, created_at FROM projects WHERE id = $1")
                .bind(id.as_str().to_owned())
                .fetch_optional(&self.read)
                .await?;
        let (id, name, created_at) =
            row.ok_or_else(|| StoreError::ProjectNotFound(id.to_string()))?;
        let members: Vec<String> = sqlx::query_scalar(
            "SELECT user_id FROM project_members WHERE project_id = $1 ORDER BY user_id",
        )
        .bind(id.clone())
        .fetch_all(&self.read)
        .await?;
        Ok(Project {
            id,
            name,
            members,
            created_at: from_ms(created_at),
        })
    }

    /// Every project `user` is a member of, or every project when `user` is `None` (the admin).
    pub async fn list_projects(&self, user: Option<&UserId>) -> Result<Vec<Project>> {
        let (projects, members): (Vec<ProjectRow>, Vec<(String, String)>) = match user {
            None => (
                sqlx::query_as("SELECT id, name, created_at FROM projects ORDER BY id")
                    .fetch_all(&self.read)
                    .await?,
                sqlx::query_as("SELECT project_id, user_id FROM project_members ORDER BY project_id, user_id")
                    .fetch_all(&self.read)
                    .await?,
            ),
            Some(user) => (
                sqlx::query_as(
                    "SELECT p.id, p.name, p.created_at FROM projects p JOIN project_members m \
                     ON m.project_id = p.id WHERE m.user_id = $1 ORDER BY p.id",
                )
                .bind(user.as_str().to_owned())
                .fetch_all(&self.read)
                .await?,
                sqlx::query_as(
                    "SELECT m.project_id, m.user_id FROM project_members m WHERE m.project_id IN \
                     (SELECT project_id FROM project_members WHERE user_id = $1) ORDER BY m.project_id, m.user_id",
                )
                .bind(user.as_str().to_owned())
                .fetch_all(&self.read)
                .await?,
            ),
        };
        let mut by_project: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (project, user) in members {
            by_project.entry(project).or_default().push(user);
        }
        Ok(projects
            .into_iter()
            .map(|(id, name, created_at)| Project {
                members: by_project.remove(&id).unwrap_or_default(),
                id,
                name,
                created_at: from_ms(created_at),
            })
            .collect())
    }

    /// Adds a member and logs `member.added` in the project's room; adding one twice is
    /// harmless and logs nothing.
    pub async fn add_member(&self, project: &ProjectId, user: &UserId) -> Result<Project> {
        self.change_membership(project, user, EventKind::MemberAdded)
            .await
    }

    /// Removes a member and logs `member.removed`; removing a non-member is harmless.
    pub async fn remove_member(&self, project: &ProjectId, user: &UserId) -> Result<Project> {
        self.change_membership(project, user, EventKind::MemberRemoved)
            .await
    }

    /// Adds or removes a member, logging the change only if it changed something.
    async fn change_membership(
        &self,
        project: &ProjectId,
        user: &UserId,
        change: EventKind,
    ) -> Result<Project> {
        let sql = if change == EventKind::MemberAdded {
            "INSERT INTO project_members (project_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM project_members WHERE project_id = $1 AND user_id = $2"
        };
        let (room, project_id, user_id) = (project.room(), project.clone(), user.clone());
        self.write(move |tx| {
            Box::pin(async move {
                lock_room(tx, &room).await?;
                let done = sqlx::query(sql)
                    .bind(project_id.as_str().to_owned())
                    .bind(user_id.as_str().to_owned())
                    .execute(&mut **tx)
                    .await?;
                if done.rows_affected() == 1 {
                    let data = MemberChange {
                        project_id: project_id.as_str(),
                        user: user_id.as_str(),
                    };
                    tx.append(&room, change, &data, now_ms()).await?;
                }
                Ok(())
            })
        })
        .await?;
        self.get_project(project).await
    }

    /// Posts a chat message in a project room: logged as `message.created`, durable before this
    /// returns. With a `command_id`, a second post with the same id by the same user (a client
    /// resending after a reconnect) logs nothing and returns the first post's event. The
    /// sender's access is the caller's to check.
    pub async fn post_message(
        &self,
        project: &ProjectId,
        user: &UserId,
        text: &str,
        command_id: Option<&str>,
    ) -> Result<LoggedEvent> {
        let (room, user, text) = (project.room(), user.clone(), text.to_owned());
        let command_id = command_id.map(str::to_owned);
        self.write(move |tx| {
            Box::pin(async move {
                lock_room(tx, &room).await?;
                if let Some(id) = &command_id {
                    if let Some(earlier) = dedup::earlier(tx, &user, id).await? {
                        return Ok(earlier);
                    }
                }
                let message = ChatMessage {
                    user: user.as_str(),
                    text: &text,
                };
                tx.append(&room, EventKind::MessageCreated, &message, now_ms())
                    .await?;
                let event = tx.last_event().expect("just appended");
                if let Some(id) = command_id {
                    dedup::remember(tx, &user, &id, &event).await?;
                }
                Ok(event)
            })
        })
        .await
    }

    /// The projects `user` is a member of.
    pub async fn memberships(&self, user: &UserId) -> Result<Vec<ProjectId>> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT project_id FROM project_members WHERE user_id = $1")
                .bind(user.as_str().to_owned())
                .fetch_all(&self.read)
                .await?;
        ids.iter()
            .map(|id| ProjectId::parse(id).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }

    /// Whether `user` may see and change the project's tasks.
    pub async fn is_member(&self, project: &ProjectId, user: &UserId) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM project_members WHERE project_id = $1 AND user_id = $2",
        )
        .bind(project.as_str().to_owned())
        .bind(user.as_str().to_owned())
        .fetch_optional(&self.read)
        .await?;
        Ok(found.is_some())
    }
}
