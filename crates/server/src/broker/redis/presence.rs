//! Cluster-wide presence. Each node writes its own connections per room and user into the room's
//! hash (`node \x1f user` → connections) and keeps its liveness key alive with a heartbeat. A
//! reader sums the entries of live nodes only: when a node dies its key expires after the TTL and
//! its entries stop counting (and are deleted by the next reader). Redis 7.0 has no per-field
//! expiry, hence the one key per node.

use super::link::Link;
use super::names::{presence_field, split_presence_field, Names};
use redis::AsyncCommands;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use taskflow_protocol::Present;
use tokio::sync::mpsc;

/// This node's connections of `user` in `room` are now `connections`.
#[derive(Debug)]
pub(super) struct Update {
    pub(super) room: String,
    pub(super) user: String,
    pub(super) connections: u32,
}

/// What the presence task owns.
pub(super) struct Heartbeat {
    pub(super) link: Link,
    pub(super) names: Names,
    pub(super) node: String,
    pub(super) ttl: Duration,
    pub(super) updates: mpsc::UnboundedReceiver<Update>,
}

/// Writes this node's presence changes and refreshes its liveness key every third of the TTL.
/// When the key turns out to be missing (Redis restarted empty, or this node was cut off longer
/// than the TTL), every entry is written again.
pub(super) async fn run(mut hb: Heartbeat) {
    let mut mine: HashMap<(String, String), u32> = HashMap::new();
    let mut beat = tokio::time::interval((hb.ttl / 3).max(Duration::from_millis(100)));
    let mut batch = Vec::new();
    let mut rewrite = false;
    loop {
        tokio::select! {
            n = hb.updates.recv_many(&mut batch, 256) => {
                if n == 0 {
                    return;
                }
                let mut pipe = redis::pipe();
                for update in batch.drain(..) {
                    let key = hb.names.presence(&update.room);
                    let field = presence_field(&hb.node, &update.user);
                    if update.connections == 0 {
                        mine.remove(&(update.room, update.user));
                        pipe.hdel(key, field).ignore();
                    } else {
                        mine.insert((update.room, update.user), update.connections);
                        pipe.hset(key, field, update.connections).ignore();
                    }
                }
                if apply(&hb.link, &pipe).await.is_err() {
                    rewrite = true;
                }
            }
            _ = beat.tick() => {
                let Some(mut conn) = hb.link.get() else { continue };
                let key = hb.names.node(&hb.node);
                let refreshed: redis::RedisResult<Option<String>> = redis::cmd("SET")
                    .arg(&key)
                    .arg("1")
                    .arg("PX")
                    .arg(hb.ttl.as_millis() as u64)
                    .arg("GET")
                    .query_async(&mut conn)
                    .await;
                match refreshed {
                    Ok(previous) => {
                        if previous.is_none() || rewrite {
                            let mut pipe = redis::pipe();
                            for ((room, user), n) in &mine {
                                pipe.hset(hb.names.presence(room), presence_field(&hb.node, user), *n)
                                    .ignore();
                            }
                            rewrite = apply(&hb.link, &pipe).await.is_err();
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "presence heartbeat failed");
                        rewrite = true;
                    }
                }
            }
        }
    }
}

async fn apply(link: &Link, pipe: &redis::Pipeline) -> redis::RedisResult<()> {
    let Some(mut conn) = link.get() else {
        return Err(redis::RedisError::from((
            redis::ErrorKind::IoError,
            "not connected yet",
        )));
    };
    pipe.query_async::<()>(&mut conn).await
}

/// Sums `local` (this node's own members, always current) with the entries of the other live
/// nodes, sorted by user; deletes the entries of nodes found dead.
pub(super) async fn query(
    link: &Link,
    names: &Names,
    node: &str,
    room: &str,
    local: Vec<Present>,
) -> redis::RedisResult<Vec<Present>> {
    let Some(mut conn) = link.get() else {
        return Err(redis::RedisError::from((
            redis::ErrorKind::IoError,
            "not connected yet",
        )));
    };
    let key = names.presence(room);
    let entries: HashMap<String, u32> = conn.hgetall(&key).await?;
    let others: Vec<String> = entries
        .keys()
        .filter_map(|f| split_presence_field(f).map(|(n, _)| n))
        .filter(|n| *n != node)
        .collect::<HashSet<_>>()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut pipe = redis::pipe();
    for other in &others {
        pipe.exists(names.node(other));
    }
    let alive: Vec<bool> = if others.is_empty() {
        Vec::new()
    } else {
        pipe.query_async(&mut conn).await?
    };
    let alive: HashSet<&str> = others
        .iter()
        .zip(alive)
        .filter(|(_, up)| *up)
        .map(|(n, _)| n.as_str())
        .collect();
    let mut users: BTreeMap<String, u32> =
        local.into_iter().map(|p| (p.user, p.connections)).collect();
    let mut dead = Vec::new();
    for (field, n) in &entries {
        match split_presence_field(field) {
            Some((n_node, _)) if n_node == node => {}
            Some((n_node, user)) if alive.contains(n_node) => {
                *users.entry(user.to_owned()).or_insert(0) += n;
            }
            _ => dead.push(field.clone()),
        }
    }
    if !dead.is_empty() {
        let _: redis::RedisResult<()> = conn.hdel(&key, dead).await;
    }
    Ok(users
        .into_iter()
        .map(|(user, connections)| Present { user, connections })
        .collect())
}

/// Deletes this node's liveness key (a clean shutdown): its entries stop counting at once.
pub(super) async fn forget_node(link: &Link, names: &Names, node: &str) {
    if let Some(mut conn) = link.get() {
        let _: redis::RedisResult<()> = conn.del(names.node(node)).await;
    }
}
