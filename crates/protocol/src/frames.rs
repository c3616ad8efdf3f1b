//! WebSocket frames: the commands a client sends and everything the server pushes. All frames
//! are JSON text frames with a `type`. `docs/protocol.md` is the specification; these types are
//! its executable form.

use crate::error::ErrorDetail;
use crate::event::EventKind;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a client asks. Any command may carry an `id` (a string or a number); a command with an
/// id gets exactly one reply carrying the same id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Receive the room's events from now on or, with `since`, from that position: the missed
    /// events are replayed from the log first, then the live stream follows with no gap and no
    /// duplicate.
    Subscribe {
        /// `tasks`, `project:<id>` or `user:<id>`.
        room: String,
        /// Where the client stopped.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Since>,
    },
    /// Stop receiving the room's events.
    Unsubscribe {
        /// The room.
        room: String,
    },
    /// Post a chat message to a project room; acknowledged once it is in the log.
    Message {
        /// `project:<id>`.
        room: String,
        /// 1 to 4,000 characters.
        text: String,
    },
    /// Send a direct message to another user, who shares a project with you (anyone, for the
    /// admin); acknowledged once it is in the log of both users' rooms.
    Direct {
        /// The recipient's user id.
        to: String,
        /// 1 to 4,000 characters.
        text: String,
    },
    /// Tell the room you are typing (ephemeral, at most once).
    Typing {
        /// `project:<id>`.
        room: String,
    },
    /// Who is in the room, with their connection counts.
    Presence {
        /// The room.
        room: String,
    },
    /// Application-level ping for clients that cannot send WebSocket pings; answered by `pong`.
    Ping,
}

impl Command {
    /// The wire name of the command.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Subscribe { .. } => "subscribe",
            Command::Unsubscribe { .. } => "unsubscribe",
            Command::Message { .. } => "message",
            Command::Direct { .. } => "direct",
            Command::Typing { .. } => "typing",
            Command::Presence { .. } => "presence",
            Command::Ping => "ping",
        }
    }
}

/// Where a client stopped: the epoch of the history it followed and the last offset it has, for
/// a room; for `tasks`, the last offset of each project room it has seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Since {
    /// The store's epoch when the client last received events.
    pub epoch: String,
    /// The last offset received (single rooms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// The last offset received per project room (`tasks`); a room missing here is replayed
    /// from its start.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub offsets: std::collections::BTreeMap<String, i64>,
}

/// The answer to a subscription: where the stream starts and whether a resume recovered
/// everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Subscribed {
    /// The room.
    pub room: String,
    /// The store's epoch.
    pub epoch: String,
    /// The offset the live stream starts after (single rooms). After a successful resume the
    /// missed events up to it are replayed first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// The same per project room (`tasks`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub offsets: std::collections::BTreeMap<String, i64>,
    /// `false` when `since` could not be honoured (another epoch, or events no longer
    /// retained): the client must reload its state through REST; the stream continues live from
    /// `offset`. `true` otherwise.
    pub recovered: bool,
}

/// First frame of every connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Hello {
    /// This connection's id, for logs and support.
    pub connection_id: String,
    /// The authenticated user.
    pub user: String,
    /// How often the server pings, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// The server's clock, to estimate skew.
    pub server_time: DateTime<Utc>,
    /// The epoch of the store's event log.
    pub epoch: String,
}

/// A logged event as pushed to subscribers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EventFrame {
    /// The room the event was logged in (`project:<id>`, `user:<id>`).
    pub room: String,
    /// Its offset in that room.
    pub offset: i64,
    /// What happened.
    pub event: EventKind,
    /// The payload.
    pub data: Value,
    /// When it was committed.
    pub at: DateTime<Utc>,
}

/// A user entering or leaving a room, or typing in it (ephemeral: no offset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PresenceChange {
    /// The room.
    pub room: String,
    /// The user.
    pub user: String,
}

/// One user in a room, for `presence` replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Present {
    /// The user.
    pub user: String,
    /// How many of the user's connections are in the room.
    pub connections: u32,
}

/// The result of an `unsubscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Unsubscribed {
    /// The room the connection no longer follows.
    pub room: String,
}

/// The result of a chat `message`: where it was logged, so the client can match the event it
/// will receive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MessagePosted {
    /// The project room.
    pub room: String,
    /// The message's offset in the room.
    pub offset: i64,
}

/// The result of a `direct` command: where the message was logged in the sender's own room, so
/// the client can match the `message.direct` event it will receive there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DirectPosted {
    /// The recipient.
    pub to: String,
    /// The sender's user room, `user:<sender>`.
    pub room: String,
    /// The message's offset in that room.
    pub offset: i64,
}

/// The result of a `presence` command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PresenceList {
    /// The room.
    pub room: String,
    /// Everyone in it, with their connection counts, across the cluster.
    pub present: Vec<Present>,
}

/// One node's numbers over one dashboard interval (a `stats` frame). Rates and latencies
/// cover the interval that just ended; the counts are what the node holds at its end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NodeStats {
    /// Always `system`.
    pub room: String,
    /// The node that measured: its `node_id` in a cluster, `local` on a single node. A
    /// dashboard of a cluster gets one frame per node per interval.
    pub node: String,
    /// When the interval ended.
    pub at: DateTime<Utc>,
    /// The interval's length in milliseconds (as measured, not as configured).
    pub interval_ms: u64,
    /// Open real-time connections by transport (a long poll counts while it waits).
    pub connections: TransportCounts,
    /// Room subscriptions over all connections.
    pub subscriptions: u64,
    /// Events this node dispatched per second (each committed event once, whatever its
    /// audience).
    pub events_per_sec: f64,
    /// Frames of those events queued to subscribers per second.
    pub deliveries_per_sec: f64,
    /// Delivery latency (from the event's commit to its queueing for subscribers) over the
    /// interval's events, in milliseconds; `null` when no event was dispatched.
    pub latency_ms: Option<Latency>,
    /// The process's resident memory in bytes; `null` where the platform does not say.
    pub rss_bytes: Option<u64>,
    /// Connections closed during the interval because they could not keep up (close code 4008).
    pub slow_consumer_closes: u64,
    /// The cluster broker, as this node sees it.
    pub broker: BrokerState,
}

/// Open connections by transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TransportCounts {
    /// WebSocket connections.
    pub websocket: u64,
    /// Server-Sent Events streams.
    pub sse: u64,
    /// Long polls waiting for an event.
    pub long_polling: u64,
}

/// Percentiles of a latency distribution, in milliseconds. From a histogram whose buckets are
/// at most a quarter wide: each value is the largest its bucket holds (never below the true
/// value, at most 25% above it). Commit times have millisecond resolution, so 0 means "within
/// the millisecond".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// The median.
    pub p50: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The largest.
    pub max: f64,
}

/// The cluster broker's state on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum BrokerState {
    /// A single node: events go straight from the store to the hub.
    None,
    /// Connected to Redis.
    Connected,
    /// A cluster node that lost Redis: it serves its own writes, and the others' from the log.
    Disconnected,
}

/// Everything the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type")]
pub enum ServerFrame {
    /// Sent once, first.
    #[serde(rename = "hello")]
    Hello(Hello),
    /// The one answer to a command that carried an `id`.
    #[serde(rename = "reply")]
    Reply {
        /// The command's id.
        id: Value,
        /// `true` with `result`, `false` with `error`.
        ok: bool,
        /// What the command produced.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ErrorDetail>,
    },
    /// A command without an id failed, or a frame could not be read.
    #[serde(rename = "error")]
    Error {
        /// What went wrong.
        error: ErrorDetail,
    },
    /// A logged event.
    #[serde(rename = "event")]
    Event(EventFrame),
    /// A user's first connection joined the room.
    #[serde(rename = "presence.joined")]
    PresenceJoined(PresenceChange),
    /// A user's last connection left the room.
    #[serde(rename = "presence.left")]
    PresenceLeft(PresenceChange),
    /// A user is typing in the room.
    #[serde(rename = "typing")]
    Typing(PresenceChange),
    /// A subscription of a stream transport (SSE) took effect; WebSocket clients get the same
    /// in their `subscribe` reply.
    #[serde(rename = "subscribed")]
    Subscribed(Subscribed),
    /// One node's numbers over the last interval, pushed to the admin-only `system` room every
    /// `dashboard_interval_ms` while someone follows it (a dashboard's feed, instead of
    /// scraping `/metrics`). Ephemeral: not logged, never replayed.
    #[serde(rename = "stats")]
    Stats(NodeStats),
    /// Answer to `ping` (carries the ping's id, if any).
    #[serde(rename = "pong")]
    Pong {
        /// The ping's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
    },
}

/// WebSocket close codes the server uses, with what a client should do about each.
pub mod close {
    /// Normal closure (the client asked).
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down or draining: reconnect (to another node) and resume.
    pub const GOING_AWAY: u16 = 1001;
    /// The client broke the WebSocket protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A message of a kind the endpoint does not take (a text frame on `/ws/docs`).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A text frame was not valid UTF-8, or a document update that does not decode.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// The client kept exceeding its command rate.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message was larger than the limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The server failed.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The token expired while connected: get a new token, then reconnect.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// Collaborative documents: no longer a member of the task's project. Do not reconnect.
    /// The document codes are in 4400–4499, which the npm `y-websocket` provider treats as
    /// final (it stops reconnecting), mirroring HTTP's 403, 404 and 413.
    pub const DOC_FORBIDDEN: u16 = 4403;
    /// Collaborative documents: the task was deleted. Do not reconnect.
    pub const DOC_DELETED: u16 = 4404;
    /// Collaborative documents: the update would make the document larger than
    /// `docs_max_bytes`, or its text longer than a description may be. It was not stored, and
    /// the same update would be refused again: do not reconnect with it.
    pub const DOC_TOO_LARGE: u16 = 4413;
    /// The client did not read fast enough and its queue filled: reconnect and resume.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// The client stopped answering pings (sent for the record; the peer is usually gone).
    pub const HEARTBEAT_TIMEOUT: u16 = 4009;
}
