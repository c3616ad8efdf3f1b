//! The pub/sub connection. It holds Redis subscriptions for exactly the rooms the hub watches,
//! hands incoming envelopes to the dispatcher (events) or the hub (ephemeral frames), and
//! reconnects with backoff when the connection drops. Because pub/sub loses whatever is published
//! while a node is not connected, every (re)connect and every `check_interval` catches the
//! watched rooms up from the store's log: that bounds the delay of a lost message that no later
//! message of its room reveals ("tail loss") by `check_interval` plus one log read.

use super::envelope::{decode, Envelope};
use super::names::Subscription;
use super::{metrics, Cluster, Command};
use crate::domain::Room;
use crate::hub::dispatch::Dispatcher;
use crate::store::Store;
use futures::StreamExt;
use redis::aio::PubSubSink;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// What the subscriber task owns.
pub(super) struct Subscriber {
    /// The handle (node id, names, connection state).
    pub(super) cluster: Cluster,
    /// To open pub/sub connections.
    pub(super) client: redis::Client,
    /// From the hub, through [`Cluster`]'s `RoomFeed`.
    pub(super) commands: mpsc::UnboundedReceiver<Command>,
    /// Where events go.
    pub(super) dispatcher: Dispatcher,
    /// Where missed events are read from.
    pub(super) store: Store,
    /// Period of the tail-loss check.
    pub(super) check_interval: Duration,
}

/// Backoff between connection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Why the connected loop ended.
enum Ended {
    /// The hub is gone (shutdown).
    Stopped,
    /// The connection failed: reconnect.
    Lost,
}

pub(super) async fn run(mut sub: Subscriber) {
    let mut watched: HashSet<String> = HashSet::new();
    let checking = Arc::new(AtomicBool::new(false));
    let mut check = tokio::time::interval(sub.check_interval.max(Duration::from_millis(50)));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut delay = BACKOFF_MIN;
    let mut connected_before = false;
    loop {
        // Connect; meanwhile commands still count (Ready answers at once: the catch-up after
        // the connection covers what happens until then) and the log is still polled.
        let connecting =
            tokio::time::timeout(Duration::from_secs(2), sub.client.get_async_pubsub());
        let pubsub = match connecting.await {
            Ok(Ok(pubsub)) => Some(pubsub),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "Redis pub/sub unreachable; retrying");
                None
            }
            Err(_) => {
                tracing::warn!("Redis pub/sub connection timed out; retrying");
                None
            }
        };
        let Some(pubsub) = pubsub else {
            let wait = tokio::time::sleep(delay);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    command = sub.commands.recv() => match command {
                        None => return,
                        Some(command) => apply_offline(&mut watched, command),
                    },
                    _ = check.tick() => spawn_catch_up(&sub, &watched, &checking),
                }
            }
            delay = (delay * 2).min(BACKOFF_MAX);
            continue;
        };
        let (mut sink, mut stream) = pubsub.split();
        let members = sub.cluster.inner.names.members();
        let mut resubscribed = timed(sink.subscribe(&members)).await;
        if resubscribed.is_ok() {
            resubscribed = timed(sink.subscribe(sub.cluster.inner.names.system())).await;
        }
        let docs = sub.cluster.inner.names.docs();
        if resubscribed.is_ok() {
            resubscribed = timed(sink.subscribe(&docs)).await;
        }
        for room in &watched {
            if resubscribed.is_err() {
                break;
            }
            resubscribed = subscribe(&mut sink, &sub.cluster, room).await;
        }
        if let Err(err) = resubscribed {
            tracing::warn!(error = %err, "could not subscribe in Redis; reconnecting");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(BACKOFF_MAX);
            continue;
        }
        delay = BACKOFF_MIN;
        sub.cluster.set_connected(true);
        if connected_before {
            metrics::reconnected();
            tracing::info!("Redis pub/sub connected again; catching up from the log");
            // Membership changes published meanwhile were lost to this node: read them again.
            sub.dispatcher.hub().memberships().clear();
        }
        connected_before = true;
        // Whatever was published while this node was not subscribed is in the log.
        spawn_catch_up(&sub, &watched, &checking);
        let ended = loop {
            tokio::select! {
                command = sub.commands.recv() => match command {
                    None => break Ended::Stopped,
                    Some(Command::Watch(room)) => {
                        let result = subscribe(&mut sink, &sub.cluster, &room).await;
                        watched.insert(room);
                        if result.is_err() { break Ended::Lost; }
                    }
                    Some(Command::Unwatch(room)) => {
                        watched.remove(&room);
                        if unsubscribe(&mut sink, &sub.cluster, &room).await.is_err() {
                            break Ended::Lost;
                        }
                    }
                    // Commands run in order: every Watch before this one is confirmed.
                    Some(Command::Ready(tx)) => { let _ = tx.send(()); }
                },
                message = stream.next() => match message {
                    Some(message) if message.get_channel_name() == members => membership(&sub, message),
                    Some(message) if message.get_channel_name() == docs => {
                        if let Some(collab) = sub.cluster.inner.docs.get() {
                            collab.receive(bytes::Bytes::copy_from_slice(message.get_payload_bytes()));
                        }
                    }
                    Some(message) => receive(&sub, message),
                    None => break Ended::Lost,
                },
                _ = check.tick() => spawn_catch_up(&sub, &watched, &checking),
            }
        };
        sub.cluster.set_connected(false);
        match ended {
            Ended::Stopped => return,
            Ended::Lost => tracing::warn!("Redis pub/sub connection lost; reconnecting"),
        }
    }
}

/// A command while disconnected: only the set of watched rooms changes.
fn apply_offline(watched: &mut HashSet<String>, command: Command) {
    match command {
        Command::Watch(room) => {
            watched.insert(room);
        }
        Command::Unwatch(room) => {
            watched.remove(&room);
        }
        Command::Ready(tx) => {
            let _ = tx.send(());
        }
    }
}

async fn subscribe(sink: &mut PubSubSink, cluster: &Cluster, room: &str) -> redis::RedisResult<()> {
    let call = async {
        match cluster.inner.names.subscription(room) {
            Subscription::Channel(channel) => sink.subscribe(channel).await,
            Subscription::Pattern(pattern) => sink.psubscribe(pattern).await,
        }
    };
    timed(call).await
}

async fn unsubscribe(
    sink: &mut PubSubSink,
    cluster: &Cluster,
    room: &str,
) -> redis::RedisResult<()> {
    let call = async {
        match cluster.inner.names.subscription(room) {
            Subscription::Channel(channel) => sink.unsubscribe(channel).await,
            Subscription::Pattern(pattern) => sink.punsubscribe(pattern).await,
        }
    };
    timed(call).await
}

/// A (un)subscription that takes longer than this counts as a lost connection.
async fn timed(
    call: impl std::future::Future<Output = redis::RedisResult<()>>,
) -> redis::RedisResult<()> {
    match tokio::time::timeout(Duration::from_secs(2), call).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from((
            redis::ErrorKind::IoError,
            "subscription timed out",
        ))),
    }
}

/// Hands one message to the dispatcher or the hub; a node's own messages are skipped (it
/// delivered them itself), and so are unreadable ones (the log covers a lost event).
fn receive(sub: &Subscriber, message: redis::Msg) {
    let payload = bytes::Bytes::copy_from_slice(message.get_payload_bytes());
    match decode(payload) {
        Ok(Envelope::Event { node, room, event }) => {
            if node == sub.cluster.inner.node {
                return;
            }
            // `at_ms` comes from another node: saturating, so a malformed one cannot overflow.
            let lag = (chrono::Utc::now()
                .timestamp_millis()
                .saturating_sub(event.at_ms))
            .max(0) as f64
                / 1000.0;
            metrics::received(lag);
            sub.dispatcher.publish_prepared(&room, event);
        }
        Ok(Envelope::Ephemeral {
            node,
            room,
            kind,
            user,
            frame,
        }) => {
            if node != sub.cluster.inner.node {
                sub.dispatcher.hub().relay(&room, kind, &user, &frame);
            }
        }
        Err(err) => {
            metrics::unreadable();
            tracing::warn!(channel = message.get_channel_name(), error = %err, "unreadable broker message dropped");
        }
    }
}

/// A membership change from the members channel. Where the project's room has receivers here,
/// its event arrives (or arrived) through the room, in order, and is applied there; elsewhere the
/// user's sessions are updated now, so a later `tasks` subscription shows them the right projects.
fn membership(sub: &Subscriber, message: redis::Msg) {
    let payload = bytes::Bytes::copy_from_slice(message.get_payload_bytes());
    if let Ok(Envelope::Event { node, room, event }) = decode(payload) {
        let hub = sub.dispatcher.hub();
        if node == sub.cluster.inner.node || hub.has_receivers(&room) {
            return;
        }
        if let Some((project, user, added)) = &event.membership {
            hub.membership_changed(project, user, *added);
        }
    }
}

/// Catches every watched room up from the log in the background (one at a time: a check that is
/// still running when the next tick comes lets that tick pass).
fn spawn_catch_up(sub: &Subscriber, watched: &HashSet<String>, running: &Arc<AtomicBool>) {
    if watched.is_empty() || running.swap(true, Ordering::AcqRel) {
        return;
    }
    let watched = watched.clone();
    let dispatcher = sub.dispatcher.clone();
    let store = sub.store.clone();
    let running = running.clone();
    tokio::spawn(async move {
        match store.room_offsets().await {
            Ok(rooms) => {
                let tasks = watched.contains(Room::TASKS);
                for (room, last) in rooms {
                    if watched.contains(&room) || (tasks && room.starts_with("project:")) {
                        dispatcher.catch_up(&room, last).await;
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "could not read the rooms' last offsets"),
        }
        running.store(false, Ordering::Release);
    });
}
