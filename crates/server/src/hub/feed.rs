//! The hub's one window onto other nodes. In a cluster, a node receives a room's events from the
//! broker only while it has local subscribers to that room, and its ephemeral frames (presence,
//! typing) must reach the room's subscribers on the other nodes. The hub reports exactly those
//! facts through [`RoomFeed`]; it never learns what carries them. One node has no feed at all.

use bytes::Bytes;
use futures::future::BoxFuture;

/// An ephemeral frame of a room, for the other nodes' members of that room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ephemeral {
    /// `presence.joined`: the user's first connection on the sending node joined the room.
    Joined,
    /// `presence.left`: the user's last connection on the sending node left the room.
    Left,
    /// `typing`.
    Typing,
    /// `stats`: one node's dashboard numbers, for every node's `system` members.
    Stats,
}

/// What the hub tells the cluster broker. Calls are cheap and never block: implementations
/// queue them for a task that owns the network connection.
pub trait RoomFeed: Send + Sync + 'static {
    /// One more local subscription of `room`: the node needs the room's events from now on.
    /// Balanced by [`RoomFeed::unwatch`]; the room is watched while the count is above zero.
    /// `tasks` stands for every project room (it spans them). Returns whether the room was
    /// already watched with the broker connected: this node then follows the room already (a
    /// subscription that does not resume from a position need not catch up first).
    fn watch(&self, room: &str) -> bool;

    /// One local subscription of `room` ended.
    fn unwatch(&self, room: &str);

    /// Resolves once every event of `room` published from now on will reach this node (the
    /// broker confirmed the subscription), or at once if the broker is unreachable: then the
    /// catch-up after it reconnects covers the room. Call between [`RoomFeed::watch`] and
    /// reading the room's last offset from the store, so that nothing falls between the two.
    fn ready(&self, room: &str) -> BoxFuture<'_, ()>;

    /// Sends an ephemeral frame of `room` (already serialized) to the other nodes.
    fn ephemeral(&self, room: &str, kind: Ephemeral, user: &str, frame: &Bytes);

    /// The number of this node's connections of `user` in `room` changed to `connections`
    /// (0: none left), for cluster-wide presence.
    fn presence(&self, room: &str, user: &str, connections: u32);
}
