//! The hub: local delivery of events to connected sessions.
//!
//! - [`session`]: one client, its bounded queue and what it may see.
//! - [`dispatch`]: puts each room's events in offset order (filling gaps from the log) and fans
//!   each one out: serialized once, the same bytes queued to every subscriber.
//! - this module: the rooms index (room → sessions, session → rooms), presence and limits.
//!
//! The hub knows neither HTTP nor storage: transports hand it sessions, the store hands it
//! committed events (through [`dispatch::Dispatcher`], an `EventSink`), and where it must read
//! the log it goes through the [`EventSource`] trait.

pub mod bench_api;
pub mod deflated;
pub mod dispatch;
pub mod feed;
pub mod lag;
pub mod memberships;
pub mod metrics;
mod runtime;
pub mod session;
pub mod tally;

use crate::domain::{ProjectId, UserId};
use bytes::Bytes;
use dashmap::DashMap;
use feed::{Ephemeral, RoomFeed};
use futures::future::BoxFuture;
use session::{ConnId, QueueLimits, Session, Transport};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use taskflow_protocol::{close, LoggedEvent, PresenceChange, Present, ServerFrame};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use session::{CloseReason, Empty, OfferError, Outbox, Ready};

/// Reads the event log; implemented over the store, used to fill gaps.
pub trait EventSource: Send + Sync + 'static {
    /// Up to `limit` events of `room` after offset `after`, in order.
    fn events_after<'a>(
        &'a self,
        room: &'a str,
        after: i64,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<LoggedEvent>, String>>;

    /// The oldest offset still retained in `room`, if any event is.
    fn events_oldest<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Option<i64>, String>>;

    /// The last offset handed out in `room` (0 before its first event): where a node that may
    /// have missed broker messages must catch up to.
    fn last_offset<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<i64, String>>;

    /// Every room's last offset, in one read (for the periodic tail-loss check).
    fn last_offsets(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>, String>>;
}

/// Limits the hub enforces.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Each session's queue.
    pub queue: QueueLimits,
    /// Connections in all.
    pub max_connections: usize,
    /// Connections per user.
    pub max_connections_per_user: usize,
    /// Subscriptions per connection.
    pub max_subscriptions: usize,
    /// Worker threads of a runtime of their own for connection tasks (the server's default: one
    /// per core); 0: they share the runtime that serves requests. See [`runtime`] for why; the
    /// runtime is process-wide, so the first hub's count is the one used.
    pub connection_threads: usize,
    /// The membership cache ([`memberships`]).
    pub memberships: memberships::MembershipLimits,
    /// Compressed broadcast ([`deflated`]); `None`: every frame goes plain, whatever a client
    /// offers.
    pub compression: Option<deflated::CompressionLimits>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// The server holds its maximum number of connections.
    #[error("the server is at its connection limit")]
    ServerFull,
    /// The user holds their maximum number of connections.
    #[error("too many connections for this user")]
    UserFull,
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The connection holds its maximum number of subscriptions.
    #[error("too many subscriptions on this connection")]
    TooMany,
    /// A resume was asked for a room the connection is already subscribed to.
    #[error("already subscribed; unsubscribe first to resume from a position")]
    AlreadySubscribed,
    /// The room's position could not be read from the event log (the store is unreachable).
    #[error("the event log could not be read; try again")]
    LogUnavailable,
}

/// Members of one room, and who they are (for presence).
#[derive(Default)]
struct RoomMembers {
    /// Subscribed sessions.
    sessions: HashMap<ConnId, Arc<Session>>,
    /// Connections per user, for presence.
    users: HashMap<UserId, u32>,
}

/// The hub; a cheap `Clone` handle.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    /// Room name → members. A sharded concurrent map: deliveries to different rooms never
    /// contend, and a delivery holds only its room's shard (read) while it queues.
    rooms: DashMap<String, RoomMembers>,
    /// Every live session, by id (for shutdown and membership changes).
    sessions: DashMap<ConnId, Arc<Session>>,
    /// Live connections per user, for the per-user limit.
    per_user: DashMap<UserId, usize>,
    /// Live connections in all.
    total: AtomicUsize,
    /// Source of connection ids.
    next_id: AtomicU64,
    /// The limits.
    limits: HubLimits,
    /// Cancelled when the server shuts down: every session closes with 1001.
    shutdown: CancellationToken,
    /// Transport tasks, so shutdown can wait for them to finish closing.
    tasks: TaskTracker,
    /// The cluster broker's view of this hub's rooms; `None` on a single node.
    feed: Option<Arc<dyn RoomFeed>>,
    /// Sessions behind although their clients read: writes wait for them ([`lag`]).
    lag: Arc<lag::FanoutLag>,
    /// Who is in which project, so handshakes need no query ([`memberships`]).
    memberships: memberships::Memberships,
    /// What the dashboard reports ([`tally`]).
    tally: tally::Tally,
    /// When a `stats` frame from another node last arrived (ms since the Unix epoch, 0: never):
    /// someone follows `system` there, so this node reports too (see [`Hub::stats_wanted`]).
    remote_stats_at_ms: AtomicU64,
    /// Who hears of deleted tasks and removed members besides the sessions: the collaborative
    /// documents (`crate::collab`), set once at start.
    doc_signals: std::sync::OnceLock<Arc<dyn DocSignals>>,
}

/// What the collaborative documents must hear from the event stream: a deleted task closes its
/// document, a removed member loses their documents of the project. The hub sees every such
/// event (the dispatcher delivers every committed event, the broker's members channel every
/// membership change), so it passes them on without knowing what a document is.
pub trait DocSignals: Send + Sync + 'static {
    /// A `task.deleted` event was delivered.
    fn task_deleted(&self, task: uuid::Uuid);
    /// A `member.removed` event was delivered.
    fn member_removed(&self, project: &ProjectId, user: &str);
}

/// A connection admitted against the limits; dropping it gives the slot back (also when the
/// upgrade never completes).
pub struct Admission {
    hub: Hub,
    user: UserId,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.hub.inner.total.fetch_sub(1, Ordering::Relaxed);
        if let Some(mut n) = self.hub.inner.per_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                drop(n);
                self.hub
                    .inner
                    .per_user
                    .remove_if(&self.user, |_, n| *n == 0);
            }
        }
    }
}

impl Hub {
    /// A hub with these limits, alone (no other node).
    pub fn new(limits: HubLimits) -> Self {
        Self::build(limits, None)
    }

    /// A hub that is one node of a cluster: it reports its rooms and ephemeral frames to `feed`.
    pub fn with_feed(limits: HubLimits, feed: Arc<dyn RoomFeed>) -> Self {
        Self::build(limits, Some(feed))
    }

    fn build(limits: HubLimits, feed: Option<Arc<dyn RoomFeed>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                rooms: DashMap::new(),
                sessions: DashMap::new(),
                per_user: DashMap::new(),
                total: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
                limits,
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                feed,
                lag: Arc::default(),
                memberships: memberships::Memberships::new(limits.memberships),
                tally: tally::Tally::default(),
                remote_stats_at_ms: AtomicU64::new(0),
                doc_signals: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Reserves a connection slot for `user`, or says why not (answered 503 at the handshake).
    pub fn admit(&self, user: &UserId) -> Result<Admission, AdmitError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(AdmitError::ShuttingDown);
        }
        if self.inner.total.fetch_add(1, Ordering::Relaxed) >= self.inner.limits.max_connections {
            self.inner.total.fetch_sub(1, Ordering::Relaxed);
            return Err(AdmitError::ServerFull);
        }
        let mut n = self.inner.per_user.entry(user.clone()).or_insert(0);
        if *n >= self.inner.limits.max_connections_per_user {
            drop(n);
            self.inner.total.fetch_sub(1, Ordering::Relaxed);
            return Err(AdmitError::UserFull);
        }
        *n += 1;
        Ok(Admission {
            hub: self.clone(),
            user: user.clone(),
        })
    }

    /// Whether a connection arriving now would be admitted, without reserving its slot (the
    /// per-user limit is not looked at: the caller is not known yet).
    pub fn would_admit(&self) -> Result<(), AdmitError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(AdmitError::ShuttingDown);
        }
        if self.inner.total.load(Ordering::Relaxed) >= self.inner.limits.max_connections {
            return Err(AdmitError::ServerFull);
        }
        Ok(())
    }

    /// Registers a session for an admitted connection.
    pub fn connect(
        &self,
        user: UserId,
        admin: bool,
        projects: HashSet<ProjectId>,
        transport: Transport,
    ) -> (Arc<Session>, Outbox) {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (session, outbox) = Session::new(
            id,
            user,
            admin,
            projects,
            self.inner.limits.queue,
            self.inner.lag.clone(),
            transport,
        );
        self.inner.tally.connected(transport);
        self.inner.sessions.insert(id, session.clone());
        // `projects` was read before the session could hear membership changes; the cache has
        // applied every change since (it is updated before the sessions are).
        if !admin {
            if let Some(now) = self.inner.memberships.peek(session.user()) {
                session.set_projects(now);
            }
        }
        metrics::connection_opened();
        // Shutdown closes the sessions it finds; one registered after it looked closes here.
        if self.inner.shutdown.is_cancelled() {
            session.close(close::GOING_AWAY, SHUTTING_DOWN);
        }
        (session, outbox)
    }

    /// Removes a session from every room (announcing `presence.left` where it was the user's
    /// last connection) and from the hub.
    pub fn disconnect(&self, session: &Arc<Session>) {
        let rooms = session.rooms();
        for room in &rooms {
            self.leave(session, room);
        }
        if self.inner.sessions.remove(&session.id()).is_some() {
            self.inner.tally.disconnected(session.transport());
            if session.close_code() == Some(close::SLOW_CONSUMER) {
                self.inner.tally.slow_close();
            }
        }
        metrics::connection_closed();
    }

    /// Adds the session to a room. Call through [`dispatch::Dispatcher::subscribe`], which holds
    /// the room's order so no event slips between the reported position and the first delivery.
    pub(crate) fn join(&self, session: &Arc<Session>, room: &str) -> Result<bool, SubscribeError> {
        if session.room_count() >= self.inner.limits.max_subscriptions {
            return Err(SubscribeError::TooMany);
        }
        if !session.add_room(room) {
            return Ok(false);
        }
        let connections = {
            let mut members = self.inner.rooms.entry(room.to_owned()).or_default();
            members.sessions.insert(session.id(), session.clone());
            if session.is_silent() {
                0
            } else {
                let count = members.users.entry(session.user().clone()).or_insert(0);
                *count += 1;
                *count
            }
        };
        metrics::subscribed();
        self.inner.tally.subscribed();
        if let Some(feed) = &self.inner.feed {
            let _ = feed.watch(room);
            if connections > 0 && announces_presence(room) {
                feed.presence(room, session.user().as_str(), connections);
            }
        }
        if connections == 1 && announces_presence(room) {
            let change = PresenceChange {
                room: room.to_owned(),
                user: session.user().to_string(),
            };
            self.announce(
                room,
                session,
                Ephemeral::Joined,
                &frame_bytes(&ServerFrame::PresenceJoined(change)),
            );
        }
        Ok(true)
    }

    /// Removes the session from a room; false if it was not in it.
    pub fn leave(&self, session: &Arc<Session>, room: &str) -> bool {
        if !session.remove_room(room) {
            return false;
        }
        session.cancel_divert(room);
        // The user's connections left in the room, if this one counted (silent ones do not).
        let remaining: Option<u32> = match self.inner.rooms.get_mut(room) {
            Some(mut members) => {
                members.sessions.remove(&session.id());
                let last = match members.users.get_mut(session.user()) {
                    _ if session.is_silent() => None,
                    Some(n) if *n > 1 => {
                        *n -= 1;
                        Some(*n)
                    }
                    Some(_) => {
                        members.users.remove(session.user());
                        Some(0)
                    }
                    None => None,
                };
                let empty = members.sessions.is_empty();
                drop(members);
                if empty {
                    self.inner
                        .rooms
                        .remove_if(room, |_, m| m.sessions.is_empty());
                }
                last
            }
            None => None,
        };
        metrics::unsubscribed(1);
        self.inner.tally.unsubscribed();
        if let Some(feed) = &self.inner.feed {
            feed.unwatch(room);
            if let Some(n) = remaining.filter(|_| announces_presence(room)) {
                feed.presence(room, session.user().as_str(), n);
            }
        }
        if remaining == Some(0) && announces_presence(room) {
            let change = PresenceChange {
                room: room.to_owned(),
                user: session.user().to_string(),
            };
            self.announce(
                room,
                session,
                Ephemeral::Left,
                &frame_bytes(&ServerFrame::PresenceLeft(change)),
            );
        }
        true
    }

    /// Who is in a room, with connection counts, sorted by user.
    pub fn presence(&self, room: &str) -> Vec<Present> {
        let mut present: Vec<Present> = self
            .inner
            .rooms
            .get(room)
            .map(|m| {
                m.users
                    .iter()
                    .map(|(u, &n)| Present {
                        user: u.to_string(),
                        connections: n,
                    })
                    .collect()
            })
            .unwrap_or_default();
        present.sort_by(|a, b| a.user.cmp(&b.user));
        present
    }

    /// Tells a room that `session`'s user is typing (not echoed to that connection).
    pub fn typing(&self, session: &Session, room: &str) {
        let change = PresenceChange {
            room: room.to_owned(),
            user: session.user().to_string(),
        };
        self.announce(
            room,
            session,
            Ephemeral::Typing,
            &frame_bytes(&ServerFrame::Typing(change)),
        );
    }

    /// Queues an ephemeral frame to the room's other members here and on the other nodes.
    fn announce(&self, room: &str, from: &Session, kind: Ephemeral, frame: &Bytes) {
        self.broadcast_except(room, from.id(), frame);
        if let Some(feed) = &self.inner.feed {
            feed.ephemeral(room, kind, from.user().as_str(), frame);
        }
    }

    /// Queues an ephemeral frame that another node sent to this node's members of `room`.
    /// Presence changes are per node: a user who still has connections here, or already had
    /// them, has not left or joined as far as these members can tell, so that frame is dropped.
    /// A `stats` frame also tells this node that someone follows `system` on another node, so
    /// it reports its own numbers too ([`Hub::stats_wanted`]).
    pub fn relay(&self, room: &str, kind: Ephemeral, user: &str, frame: &Bytes) {
        if kind == Ephemeral::Stats {
            let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
            self.inner.remote_stats_at_ms.store(now, Ordering::Relaxed);
        }
        let Some(members) = self.inner.rooms.get(room) else {
            return;
        };
        let here = members.users.keys().any(|u| u.as_str() == user);
        if here && matches!(kind, Ephemeral::Joined | Ephemeral::Left) {
            return;
        }
        for session in members.sessions.values() {
            let _ = session.offer(frame);
        }
    }

    /// Whether a committed event of `room` would reach anyone here: a member of the room or,
    /// for a project room, a `tasks` subscriber. A room nobody receives can skip ahead.
    pub fn has_receivers(&self, room: &str) -> bool {
        self.inner.rooms.contains_key(room)
            || (room.starts_with("project:")
                && self.inner.rooms.contains_key(crate::domain::Room::TASKS))
    }

    /// What the dashboard reports about this hub.
    pub fn tally(&self) -> &tally::Tally {
        &self.inner.tally
    }

    /// Whether anyone wants this node's `stats` frames: someone here follows `system`, or a
    /// `stats` frame came from another node within the last `window` (someone follows it
    /// there). With neither, the dashboard computes nothing.
    pub fn stats_wanted(&self, window: std::time::Duration) -> bool {
        if self.inner.rooms.contains_key(crate::domain::Room::SYSTEM) {
            return true;
        }
        let seen = self.inner.remote_stats_at_ms.load(Ordering::Relaxed);
        let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
        seen > 0 && now.saturating_sub(seen) <= window.as_millis() as u64
    }

    /// Queues a `stats` frame (serialized once) to this node's `system` members, and sends it
    /// to the other nodes' (which also learn from it that a dashboard is watching).
    pub fn push_stats(&self, frame: &Bytes) {
        if let Some(members) = self.inner.rooms.get(crate::domain::Room::SYSTEM) {
            for session in members.sessions.values() {
                let _ = session.offer(frame);
            }
        }
        if let Some(feed) = &self.inner.feed {
            feed.ephemeral(crate::domain::Room::SYSTEM, Ephemeral::Stats, "", frame);
        }
    }

    /// The cluster feed, if this hub is one node of several.
    pub fn feed(&self) -> Option<&Arc<dyn RoomFeed>> {
        self.inner.feed.as_ref()
    }

    /// Queues an ephemeral frame to every member of `room` but one.
    fn broadcast_except(&self, room: &str, except: ConnId, frame: &Bytes) {
        if let Some(members) = self.inner.rooms.get(room) {
            for (id, session) in &members.sessions {
                if *id != except {
                    let _ = session.offer(frame);
                }
            }
        }
    }

    /// Queues a logged event's bytes to the members of `room` and, for task events of a project,
    /// to the `tasks` subscribers allowed to see that project. Returns the number of sessions
    /// reached.
    pub(crate) fn deliver(&self, room: &str, project: Option<&ProjectId>, frame: &Bytes) -> usize {
        let mut reached = 0;
        // Compressed at most once, and only if a receiver negotiated compression.
        let mut deflated: Option<Option<Bytes>> = None;
        let mut offer = |session: &Session, via: &str| {
            let bytes =
                if self.inner.limits.compression.is_some() && session.takes_deflated(frame.len()) {
                    deflated
                        .get_or_insert_with(|| self.compress(frame))
                        .as_ref()
                        .unwrap_or(frame)
                } else {
                    frame
                };
            usize::from(session.offer_via(via, bytes).is_ok())
        };
        if let Some(members) = self.inner.rooms.get(room) {
            for session in members.sessions.values() {
                reached += offer(session, room);
            }
        }
        if let Some(project) = project {
            let tasks = crate::domain::Room::TASKS;
            if let Some(members) = self.inner.rooms.get(tasks) {
                for session in members.sessions.values() {
                    if session.sees(project) {
                        reached += offer(session, tasks);
                    }
                }
            }
        }
        if deflated.is_some() {
            metrics::compressed(frame.len(), deflated.flatten().map(|d| d.len() - 1));
        }
        reached
    }

    /// An event frame compressed for the connections that negotiated compression.
    fn compress(&self, frame: &Bytes) -> Option<Bytes> {
        let limits = self.inner.limits.compression?;
        deflated::compress(frame, limits)
    }

    /// Applies a membership change to the user's live sessions: what `tasks` shows them, and
    /// (on removal) their subscription to the project's room.
    pub(crate) fn membership_changed(&self, project: &ProjectId, user: &str, member: bool) {
        self.inner.memberships.changed(project, user, member);
        if !member {
            if let Some(signals) = self.inner.doc_signals.get() {
                signals.member_removed(project, user);
            }
        }
        let room = project.room();
        let affected: Vec<Arc<Session>> = self
            .inner
            .sessions
            .iter()
            .filter(|s| s.user().as_str() == user && !s.is_admin())
            .map(|s| s.value().clone())
            .collect();
        for session in affected {
            session.set_member(project, member);
            if !member {
                self.leave(&session, &room);
            }
        }
    }

    /// Sets who hears of deleted tasks and removed members ([`DocSignals`]); once.
    pub fn set_doc_signals(&self, signals: Arc<dyn DocSignals>) {
        let _ = self.inner.doc_signals.set(signals);
    }

    /// A task was deleted (its `task.deleted` event is being delivered).
    pub(crate) fn task_deleted(&self, task: uuid::Uuid) {
        if let Some(signals) = self.inner.doc_signals.get() {
            signals.task_deleted(task);
        }
    }

    /// How far the fan-out is behind: writers wait on it (see [`lag`]).
    pub fn fanout_lag(&self) -> &lag::FanoutLag {
        &self.inner.lag
    }

    /// The token cancelled at shutdown; transports close their sessions with 1001 on it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Runs a connection's task, on the connection runtime if there is one ([`runtime`]),
    /// tracked so that [`Hub::shutdown`] can wait for it.
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        match self.inner.limits.connection_threads {
            0 => drop(self.inner.tasks.spawn(task)),
            threads => drop(self.inner.tasks.spawn_on(task, runtime::handle(threads))),
        }
    }

    /// The membership cache.
    pub fn memberships(&self) -> &memberships::Memberships {
        &self.inner.memberships
    }

    /// Tells every session to close with 1001 and refuses new ones; returns at once.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.cancel();
        // Each session is told through its own close signal, which its transport waits on
        // anyway: no connection has to watch a process-wide token on every wake-up.
        for session in self.inner.sessions.iter() {
            session.close(close::GOING_AWAY, SHUTTING_DOWN);
        }
    }

    /// Closes every session with 1001 and waits (up to `deadline`) for the transports to finish.
    pub async fn shutdown(&self, deadline: std::time::Duration) {
        self.begin_shutdown();
        self.inner.tasks.close();
        if tokio::time::timeout(deadline, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.inner.tasks.len(),
                "connections still open at the shutdown deadline"
            );
        }
    }

    /// Live connections.
    pub fn connection_count(&self) -> usize {
        self.inner.sessions.len()
    }

    /// Whether `room` has members here (`tasks` included, unlike [`Hub::has_receivers`]).
    pub fn has_members(&self, room: &str) -> bool {
        self.inner.rooms.contains_key(room)
    }

    /// What the hub holds now: each count is back to zero once the last client left.
    pub fn counts(&self) -> HubCounts {
        HubCounts {
            sessions: self.inner.sessions.len(),
            admitted: self.inner.total.load(Ordering::Relaxed),
            users: self.inner.per_user.len(),
            rooms: self.inner.rooms.len(),
            memberships: self
                .inner
                .rooms
                .iter()
                .map(|members| members.sessions.len())
                .sum(),
        }
    }
}

/// The sizes of the hub's indexes ([`Hub::counts`]), for tests and gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HubCounts {
    /// Registered sessions.
    pub sessions: usize,
    /// Admitted connections (slots taken against the limits, upgrades in progress included).
    pub admitted: usize,
    /// Users with a per-user connection count.
    pub users: usize,
    /// Rooms with at least one member.
    pub rooms: usize,
    /// Room memberships (a session in a room), over all rooms.
    pub memberships: usize,
}

/// The close reason every session gets at shutdown.
const SHUTTING_DOWN: &str = "server shutting down";

/// Presence is announced in project rooms; `tasks` and `user:` rooms are private feeds.
fn announces_presence(room: &str) -> bool {
    room.starts_with("project:")
}

/// Serializes a frame once; the bytes are shared by every queue it goes to.
pub fn frame_bytes(frame: &ServerFrame) -> Bytes {
    Bytes::from(serde_json::to_vec(frame).expect("frames serialize"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(compression: Option<deflated::CompressionLimits>) -> Hub {
        Hub::new(HubLimits {
            queue: QueueLimits {
                messages: 100,
                bytes: 1 << 20,
            },
            max_connections: 10,
            max_connections_per_user: 10,
            max_subscriptions: 10,
            connection_threads: 0,
            memberships: Default::default(),
            compression,
        })
    }

    fn connect(hub: &Hub, deflate_up_to: Option<usize>) -> (Arc<Session>, Outbox) {
        let (session, outbox) = hub.connect(
            UserId::parse("admin", "u").unwrap(),
            true,
            HashSet::new(),
            Transport::WebSocket,
        );
        if let Some(max) = deflate_up_to {
            session.accept_deflated(max);
        }
        hub.join(&session, "project:p").unwrap();
        (session, outbox)
    }

    #[tokio::test]
    async fn an_event_is_compressed_once_and_the_bytes_shared() {
        let hub = hub(Some(deflated::CompressionLimits::default()));
        let (_a, mut a) = connect(&hub, Some(1 << 15));
        let (_b, mut b) = connect(&hub, Some(1 << 15));
        let (_small, mut small) = connect(&hub, Some(256));
        let (_plain, mut plain) = connect(&hub, None);
        let frame = Bytes::from(format!(
            r#"{{"type":"event","room":"project:p","offset":1,"data":"{}"}}"#,
            "again and again ".repeat(40)
        ));
        assert_eq!(hub.deliver("project:p", None, &frame), 4);
        let (got_a, got_b) = (a.recv().await.unwrap(), b.recv().await.unwrap());
        assert!(deflated::payload(&got_a).0);
        assert_eq!(got_a.as_ptr(), got_b.as_ptr(), "one compression, shared");
        assert!(got_a.len() < frame.len() / 4);
        // The client whose window is too small for the frame, and the one that negotiated
        // nothing, get the plain bytes themselves.
        assert_eq!(small.recv().await.unwrap().as_ptr(), frame.as_ptr());
        assert_eq!(plain.recv().await.unwrap().as_ptr(), frame.as_ptr());
    }

    #[tokio::test]
    async fn nothing_is_compressed_on_a_server_that_does_not_compress() {
        let hub = hub(None);
        let (_a, mut a) = connect(&hub, Some(1 << 15));
        let frame = Bytes::from("x".repeat(1000));
        hub.deliver("project:p", None, &frame);
        assert_eq!(a.recv().await.unwrap().as_ptr(), frame.as_ptr());
    }
}
