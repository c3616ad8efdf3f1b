//! The crate-private steps of delivery, exposed unchanged for the `hot_path` criterion
//! benchmarks (`crates/server/benches/hot_path.rs`), so they time the code the dispatcher runs
//! rather than a copy of it. Not an API: hidden from the docs, no stability promised.
#![doc(hidden)]

use super::dispatch::{self, Prepared};
use super::Hub;
use bytes::Bytes;
use taskflow_protocol::LoggedEvent;

/// Serializes a committed event into its `event` frame, as the dispatcher does once per event.
pub fn prepare(event: LoggedEvent) -> Prepared {
    dispatch::prepare(event)
}

/// The frame bytes of a prepared event (what every subscriber's queue receives).
pub fn frame(event: &Prepared) -> &Bytes {
    &event.bytes
}

/// Queues a prepared event of `room` to its subscribers (and, for a task event, to the `tasks`
/// subscribers who see its project), as the dispatcher does once the event is next in order.
/// Returns the number of sessions reached.
pub fn deliver(hub: &Hub, room: &str, event: &Prepared) -> usize {
    hub.deliver(room, event.tasks_of.as_ref(), &event.bytes)
}

/// The room-index lookup every delivery starts with: the number of sessions subscribed to
/// `room` here (`None` when nobody is).
pub fn room_members(hub: &Hub, room: &str) -> Option<usize> {
    hub.inner
        .rooms
        .get(room)
        .map(|members| members.sessions.len())
}
