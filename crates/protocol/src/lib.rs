//! Wire types shared by everything that speaks to a Taskflow server.
//!
//! The server, the terminal client and the load generator all agree on these shapes, so they
//! live here, in a crate that depends on nothing async and nothing server-side: a client can link
//! it without pulling in a database driver or a web framework.
//!
//! - [`task`]: the task and project read models returned by the REST API and carried by events.
//! - [`event`]: entries of the event log (room, offset, kind, payload).
//! - [`error`]: the one JSON error body every failing request answers with.
//! - [`frames`]: the WebSocket protocol: client commands, server frames, close codes.

pub mod error;
pub mod event;
pub mod frames;
pub mod task;

pub use error::{ErrorBody, ErrorDetail};
pub use event::{EventKind, LoggedEvent, Room};
pub use frames::{
    close, BrokerState, Command, DirectPosted, EventFrame, Hello, Latency, MessagePosted,
    NodeStats, PresenceChange, PresenceList, Present, ServerFrame, Since, Subscribed,
    TransportCounts, Unsubscribed,
};
pub use task::{Project, Task, TaskPage, TaskStatus};
