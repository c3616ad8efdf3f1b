//! The rules of tasks, independent of storage and HTTP: validated values (a [`TaskTitle`] that
//! exists is a valid one), the shape of a change, and the dependency graph algorithms.

mod doc;
mod graph;
mod ids;
mod room;
pub mod rules;
mod task;

pub use doc::DocName;
pub use graph::{find_path, plan_order, tasks_on_cycles, PlanItem};
pub use ids::{ProjectId, UserId};
pub use room::Room;
pub use task::{Description, NewTask, Priority, TaskChange, TaskTitle};

/// A value that failed validation, naming the field so the client knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    /// The request field at fault, as the client spelled it.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl Invalid {
    pub(crate) fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}
