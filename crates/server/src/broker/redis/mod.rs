//! The cluster broker: several nodes share one PostgreSQL store and fan events out to each other
//! through Redis pub/sub.
//!
//! - [`Cluster`]: the handle. As the store's `EventSink` it delivers each committed event to this
//!   node's dispatcher (the same path as a single node) and publishes the same serialized bytes
//!   to the room's channel; as the hub's `RoomFeed` it learns which rooms have local subscribers.
//! - `subscriber`: the pub/sub connection. It subscribes only to the channels of rooms with local
//!   subscribers (and, while a `tasks` subscriber is here, to the pattern of every project room),
//!   reconnects with backoff, and after each (re)connect and every `broker_check_interval_ms`
//!   catches the watched rooms up from the store's log: pub/sub is at most once, the log makes
//!   delivery exactly once.
//! - `publisher`: one connection that pipelines `PUBLISH`es in commit order.
//! - `presence`: per-node presence entries in Redis, kept alive by a heartbeat, so a node that
//!   dies leaves no ghosts once its entries' node key expires.
//! - `envelope` (in the parent module): the wire format.

mod link;
pub(crate) mod metrics;
mod names;
mod presence;
mod publisher;
mod subscriber;

use super::envelope;
use crate::hub::dispatch::{prepare, Dispatcher};
use crate::hub::feed::{Ephemeral, RoomFeed};
use crate::store::{EventSink, Store};
use bytes::Bytes;
use futures::future::BoxFuture;
use link::Link;
use names::Names;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use taskflow_protocol::{LoggedEvent, Present};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How a cluster node is set up (from the configuration).
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `redis://…`.
    pub url: String,
    /// This node's id.
    pub node: String,
    /// Prefix of every key and channel.
    pub prefix: String,
    /// Period of the tail-loss check.
    pub check_interval: Duration,
    /// How long presence entries outlive their node's last heartbeat.
    pub presence_ttl: Duration,
}

/// Why the cluster broker could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The URL is not a Redis URL.
    #[error("broker: {0}")]
    BadUrl(#[from] redis::RedisError),
    /// A node id the wire format cannot carry.
    #[error("node_id must be 1 to 255 bytes, without the byte 0x1f")]
    BadNodeId,
}

/// Commands for the subscriber task, in the order the hub issued them.
#[derive(Debug)]
enum Command {
    /// A room gained its first local subscription.
    Watch(String),
    /// A room lost its last one.
    Unwatch(String),
    /// Answer once everything before this command is in effect in Redis.
    Ready(oneshot::Sender<()>),
}

/// Frames waiting to be published; beyond this they are dropped (the log covers them).
const PUBLISH_QUEUE: usize = 65_536;

/// The cluster broker; a cheap `Clone` handle.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Shared>,
}

struct Shared {
    /// This node's id: messages it published itself are skipped when they come back.
    node: String,
    /// Key and channel names.
    names: Names,
    /// Local subscriptions per room. A std mutex: held only to count and queue a command (no
    /// await), and it keeps commands in the order of the counts they reflect.
    watches: Mutex<HashMap<String, usize>>,
    /// To the subscriber task.
    commands: mpsc::UnboundedSender<Command>,
    /// To the publisher task: channel and message.
    outgoing: mpsc::Sender<(String, Bytes)>,
    /// To the presence task.
    presence: mpsc::UnboundedSender<presence::Update>,
    /// Whether the pub/sub connection is up (for `/readyz` and the `ready` shortcut).
    connected: AtomicBool,
    /// The command connection, for presence queries.
    link: Link,
    /// Presence entries outlive a silent node by this much.
    presence_ttl: Duration,
    /// Background tasks, aborted at shutdown.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Where the other nodes' document messages go (`crate::collab`).
    docs: std::sync::OnceLock<crate::collab::Collab>,
}

/// The receiving ends, consumed by [`Cluster::start`] once the dispatcher exists (it needs the
/// hub, which needs the cluster as its feed).
pub struct ClusterStart {
    commands: mpsc::UnboundedReceiver<Command>,
    outgoing: mpsc::Receiver<(String, Bytes)>,
    presence: mpsc::UnboundedReceiver<presence::Update>,
    client: redis::Client,
    check_interval: Duration,
}

impl Cluster {
    /// The handle and what [`Cluster::start`] needs; connects nothing yet.
    pub fn new(options: ClusterOptions) -> Result<(Self, ClusterStart), ClusterError> {
        if options.node.is_empty() || options.node.len() > 255 || options.node.contains('\u{1f}') {
            return Err(ClusterError::BadNodeId);
        }
        let client = redis::Client::open(options.url.as_str())?;
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (outgoing_tx, outgoing) = mpsc::channel(PUBLISH_QUEUE);
        let (presence_tx, presence) = mpsc::unbounded_channel();
        let (link, link_task) = Link::start(client.clone());
        let cluster = Self {
            inner: Arc::new(Shared {
                node: options.node,
                names: Names::new(&options.prefix),
                watches: Mutex::new(HashMap::new()),
                commands: commands_tx,
                outgoing: outgoing_tx,
                presence: presence_tx,
                connected: AtomicBool::new(false),
                link,
                presence_ttl: options.presence_ttl,
                tasks: Mutex::new(vec![link_task]),
                docs: std::sync::OnceLock::new(),
            }),
        };
        metrics::connected(false);
        Ok((
            cluster,
            ClusterStart {
                commands,
                outgoing,
                presence,
                client,
                check_interval: options.check_interval,
            },
        ))
    }

    /// Starts the subscriber, publisher and presence tasks.
    pub fn start(&self, start: ClusterStart, dispatcher: Dispatcher, store: Store) {
        let shared = &self.inner;
        let subscriber = tokio::spawn(subscriber::run(subscriber::Subscriber {
            cluster: self.clone(),
            client: start.client,
            commands: start.commands,
            dispatcher,
            store,
            check_interval: start.check_interval,
        }));
        let publisher = tokio::spawn(publisher::run(shared.link.clone(), start.outgoing));
        let presence = tokio::spawn(presence::run(presence::Heartbeat {
            link: shared.link.clone(),
            names: shared.names.clone(),
            node: shared.node.clone(),
            ttl: shared.presence_ttl,
            updates: start.presence,
        }));
        shared
            .tasks
            .lock()
            .expect("never poisoned")
            .extend([subscriber, publisher, presence]);
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Whether the node is connected to Redis: its pub/sub connection is up and its command
    /// connection (publishes, presence) exists. While it is not, the node still serves its clients
    /// (its own writes, and the others' through the periodic catch-up from the log).
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Relaxed) && self.inner.link.get().is_some()
    }

    fn set_connected(&self, up: bool) {
        self.inner.connected.store(up, Ordering::Relaxed);
        metrics::connected(up);
    }

    /// Who is in `room` across the cluster: this node's `local` members plus the entries of the
    /// other live nodes. Falls back to `local` alone if Redis does not answer.
    pub async fn presence(&self, room: &str, local: Vec<Present>) -> Vec<Present> {
        let query = presence::query(
            &self.inner.link,
            &self.inner.names,
            &self.inner.node,
            room,
            local.clone(),
        );
        match tokio::time::timeout(Duration::from_secs(2), query).await {
            Ok(Ok(present)) => present,
            Ok(Err(err)) => {
                tracing::warn!(room, error = %err, "cluster presence unavailable; answering with this node's");
                local
            }
            Err(_) => {
                tracing::warn!(
                    room,
                    "cluster presence timed out; answering with this node's"
                );
                local
            }
        }
    }

    /// Stops the background tasks and removes this node's liveness key, so its presence entries
    /// disappear at once rather than after the TTL.
    pub async fn shutdown(&self) {
        for task in self.inner.tasks.lock().expect("never poisoned").drain(..) {
            task.abort();
        }
        let forget = presence::forget_node(&self.inner.link, &self.inner.names, &self.inner.node);
        let _ = tokio::time::timeout(Duration::from_secs(1), forget).await;
    }

    fn publish(&self, room: &str, message: Bytes) {
        self.publish_to(self.inner.names.channel(room), message);
    }

    /// Sets who receives the other nodes' document messages (the `docs` channel); once.
    pub fn set_docs(&self, docs: crate::collab::Collab) {
        let _ = self.inner.docs.set(docs);
    }

    fn publish_to(&self, channel: String, message: Bytes) {
        if self.inner.outgoing.try_send((channel, message)).is_err() {
            metrics::publish_failed(1);
        }
    }
}

/// Collaborative documents cross nodes on one channel, `<prefix>:docs`, which every node
/// follows (`collab::feed`).
impl crate::collab::DocFeed for Cluster {
    fn publish(&self, message: Bytes) {
        self.publish_to(self.inner.names.docs(), message);
    }
}

/// The store's sink on a cluster node: each committed event is serialized once, and the same
/// bytes go to this node's sessions (the path a single node takes) and, in an envelope, to the
/// room's channel for the other nodes.
pub struct ClusterSink {
    /// Publishes to the other nodes.
    cluster: Cluster,
    /// Delivers here.
    dispatcher: Dispatcher,
}

impl Cluster {
    /// The sink to give the store.
    pub fn sink(&self, dispatcher: Dispatcher) -> ClusterSink {
        ClusterSink {
            cluster: self.clone(),
            dispatcher,
        }
    }
}

impl EventSink for ClusterSink {
    fn committed(&self, events: Vec<LoggedEvent>) {
        for event in events {
            let room = event.room.clone();
            let prepared = prepare(event);
            let envelope = envelope::encode_event(&self.cluster.inner.node, &room, &prepared);
            if prepared.membership.is_some() {
                self.cluster
                    .publish_to(self.cluster.inner.names.members(), envelope.clone());
            }
            self.cluster.publish(&room, envelope);
            self.dispatcher.publish_prepared(&room, prepared);
        }
    }
}

impl RoomFeed for Cluster {
    fn watch(&self, room: &str) -> bool {
        if room == crate::domain::Room::SYSTEM {
            // No events, and its frames come on the system channel every node listens to.
            return true;
        }
        let mut watches = self.inner.watches.lock().expect("never poisoned");
        let count = watches.entry(room.to_owned()).or_insert(0);
        *count += 1;
        if *count == 1 {
            let _ = self.inner.commands.send(Command::Watch(room.to_owned()));
            metrics::watched(watches.len());
            return false;
        }
        self.is_connected()
    }

    fn unwatch(&self, room: &str) {
        if room == crate::domain::Room::SYSTEM {
            return;
        }
        let mut watches = self.inner.watches.lock().expect("never poisoned");
        if let Some(count) = watches.get_mut(room) {
            *count -= 1;
            if *count == 0 {
                watches.remove(room);
                let _ = self.inner.commands.send(Command::Unwatch(room.to_owned()));
                metrics::watched(watches.len());
            }
        }
    }

    fn ready(&self, _room: &str) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if !self.is_connected() {
                return; // the catch-up after the reconnect covers the room
            }
            let (tx, rx) = oneshot::channel();
            if self.inner.commands.send(Command::Ready(tx)).is_ok() {
                // Bounded: a connection that hangs must not hang subscriptions with it.
                let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
            }
        })
    }

    fn ephemeral(&self, room: &str, kind: Ephemeral, user: &str, frame: &Bytes) {
        let message = envelope::encode_ephemeral(&self.inner.node, room, kind, user, frame);
        if kind == Ephemeral::Stats {
            self.publish_to(self.inner.names.system(), message);
        } else {
            self.publish(room, message);
        }
    }

    fn presence(&self, room: &str, user: &str, connections: u32) {
        let _ = self.inner.presence.send(presence::Update {
            room: room.to_owned(),
            user: user.to_owned(),
            connections,
        });
    }
}
