//! Validated task values and the shape of a change to a task.

use super::{rules, Invalid, ProjectId, UserId};
use taskflow_protocol::TaskStatus;

/// A title of one line, 1 to 200 characters as sent ([`rules::TITLE`]), stored trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskTitle(String);

impl TaskTitle {
    /// Validates and trims.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        rules::TITLE.check(raw, "title")?;
        Ok(Self(raw.trim().to_owned()))
    }

    /// The title.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A description of at most 10,000 characters ([`rules::DESCRIPTION`]); bounded so one task
/// cannot bloat every event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    /// Validates; an empty description is kept as given (the client cleared it with `null`).
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        rules::DESCRIPTION.check(raw, "description")?;
        Ok(Self(raw.to_owned()))
    }

    /// The description.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A priority from 0 to 100; higher is served first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Priority(u8);

impl Priority {
    /// Validates a number from a request ([`rules::PRIORITY`]).
    pub fn parse(raw: i64) -> Result<Self, Invalid> {
        rules::PRIORITY.check(raw, "priority")?;
        Ok(Self(raw as u8))
    }

    /// The number.
    pub fn get(self) -> u8 {
        self.0
    }
}

/// Everything needed to create a task, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    /// The title.
    pub title: TaskTitle,
    /// The optional description.
    pub description: Option<Description>,
    /// The initial status (`todo` unless given).
    pub status: TaskStatus,
    /// The priority (0 unless given).
    pub priority: Priority,
    /// The project (`default` unless given).
    pub project_id: ProjectId,
    /// Who the task is assigned to.
    pub assignee: Option<UserId>,
}

/// A partial update: `None` leaves a field alone; `Some(None)` clears an optional field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskChange {
    /// New title.
    pub title: Option<TaskTitle>,
    /// New description, or `Some(None)` to clear it.
    pub description: Option<Option<Description>>,
    /// New status.
    pub status: Option<TaskStatus>,
    /// New priority.
    pub priority: Option<Priority>,
    /// New assignee, or `Some(None)` to unassign.
    pub assignee: Option<Option<UserId>>,
}

impl TaskChange {
    /// True when the change names no field; such a PATCH is refused rather than bumping the
    /// version for nothing.
    pub fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.description.is_none()
            && self.status.is_none()
            && self.priority.is_none()
            && self.assignee.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(TaskTitle::parse("  hi  ").unwrap().as_str(), "hi");
        assert_eq!(TaskTitle::parse("   ").unwrap_err().field, "title");
        assert!(
            TaskTitle::parse(&"é".repeat(200)).is_ok(),
            "counts characters, not bytes"
        );
        assert!(TaskTitle::parse(&"x".repeat(201)).is_err());
        assert!(TaskTitle::parse("two\nlines").is_err());
    }

    #[test]
    fn priorities_are_0_to_100() {
        assert_eq!(Priority::parse(0).unwrap().get(), 0);
        assert_eq!(Priority::parse(100).unwrap().get(), 100);
        assert!(Priority::parse(-1).is_err());
        assert!(Priority::parse(101).is_err());
    }

    #[test]
    fn descriptions_are_bounded() {
        assert!(Description::parse(&"x".repeat(10_000)).is_ok());
        assert_eq!(
            Description::parse(&"x".repeat(10_001)).unwrap_err().field,
            "description"
        );
    }

    #[test]
    fn an_empty_change_is_detected() {
        assert!(TaskChange::default().is_empty());
        let change = TaskChange {
            assignee: Some(None),
            ..TaskChange::default()
        };
        assert!(!change.is_empty());
    }
}
