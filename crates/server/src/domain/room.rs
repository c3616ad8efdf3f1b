//! Room names: where events are logged and what connections subscribe to.

use super::{Invalid, ProjectId, UserId};
use std::fmt;

/// A room a connection can subscribe to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Room {
    /// Every task event the connection's token may see, across its projects.
    Tasks,
    /// One project's events: tasks, chat, members. Members only.
    Project(ProjectId),
    /// One user's direct notifications (`task.assigned`). That user only.
    User(UserId),
    /// The server's own numbers: `stats` frames for dashboards. The admin only.
    System,
}

impl Room {
    /// The name of the virtual all-tasks room.
    pub const TASKS: &'static str = "tasks";
    /// The name of the admin's dashboard room.
    pub const SYSTEM: &'static str = "system";

    /// Parses `tasks`, `system`, `project:<id>` or `user:<id>`.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw == Self::TASKS {
            return Ok(Room::Tasks);
        }
        if raw == Self::SYSTEM {
            return Ok(Room::System);
        }
        match raw.split_once(':') {
            Some(("project", id)) => ProjectId::parse(id)
                .map(Room::Project)
                .map_err(|e| Invalid::new("room", e.message)),
            Some(("user", id)) => UserId::parse(id, "room").map(Room::User),
            _ => Err(Invalid::new(
                "room",
                "must be tasks, system, project:<id> or user:<id>",
            )),
        }
    }
}

impl fmt::Display for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Room::Tasks => f.write_str(Self::TASKS),
            Room::System => f.write_str(Self::SYSTEM),
            Room::Project(id) => write!(f, "project:{id}"),
            Room::User(id) => write!(f, "user:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_round_trip() {
        for raw in ["tasks", "system", "project:p1", "user:alice@example.com"] {
            assert_eq!(Room::parse(raw).unwrap().to_string(), raw);
        }
        for bad in [
            "",
            "task",
            "project:",
            "project:Bad",
            "user:",
            "team:x",
            "project:a:b",
        ] {
            assert!(Room::parse(bad).is_err(), "{bad}");
        }
    }

    /// The rule the AsyncAPI document publishes for rooms admits exactly what `parse` accepts.
    #[test]
    fn the_published_rule_is_the_parser() {
        let long = format!("project:{}", "a".repeat(64));
        let too_long = format!("project:{}", "a".repeat(65));
        for raw in [
            "tasks",
            "system",
            "systems",
            "project:p1",
            "user:alice@example.com",
            "",
            "task",
            "tasks ",
            "project:",
            "project:Bad",
            "project:-a",
            "user:",
            "user:a b",
            "team:x",
            "project:a:b",
            "user:\u{e9}",
            "project:p1\n",
            long.as_str(),
            too_long.as_str(),
        ] {
            assert_eq!(
                crate::domain::rules::ROOM.admits(raw),
                Room::parse(raw).is_ok(),
                "{raw:?}"
            );
            assert_eq!(
                crate::domain::rules::PROJECT_ROOM.admits(raw),
                matches!(Room::parse(raw), Ok(Room::Project(_))),
                "{raw:?}"
            );
        }
    }
}
