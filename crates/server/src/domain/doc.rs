//! The name of a collaborative document. Today every document is a task's description,
//! `task:<id>`: the name y-websocket clients put after `/ws/docs/`, and the key it is stored
//! under. A name that parses is one this server serves, so nothing else reaches the store.

use std::fmt;
use uuid::Uuid;

/// A document's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocName {
    /// The description of this task.
    Task(Uuid),
}

impl DocName {
    /// Parses `task:<uuid>`; anything else is not a document.
    pub fn parse(raw: &str) -> Option<Self> {
        let id = raw.strip_prefix("task:")?;
        // Only the hyphenated lower-case form, so one document has one name.
        let id = Uuid::try_parse(id).ok()?;
        (id.hyphenated().to_string() == raw["task:".len()..]).then_some(Self::Task(id))
    }

    /// The task the document belongs to.
    pub fn task(self) -> Uuid {
        match self {
            Self::Task(id) => id,
        }
    }
}

impl fmt::Display for DocName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Task(id) => write!(f, "task:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_task_names_parse() {
        let id = Uuid::now_v7();
        let name = format!("task:{id}");
        assert_eq!(DocName::parse(&name), Some(DocName::Task(id)));
        assert_eq!(DocName::parse(&name).unwrap().to_string(), name);
        assert_eq!(DocName::parse(&name.to_uppercase()), None);
        assert_eq!(DocName::parse(&format!("task:{}", id.simple())), None);
        assert_eq!(DocName::parse(&format!("project:{id}")), None);
        assert_eq!(DocName::parse("task:"), None);
    }
}
