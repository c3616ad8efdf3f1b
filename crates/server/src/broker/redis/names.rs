//! Every Redis key and channel a cluster uses, under its `broker_prefix`.

use crate::domain::Room;

/// Key and channel names of one cluster.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    /// `broker_prefix`.
    prefix: String,
}

impl Names {
    /// Names under `prefix` (plain text: no glob characters, it is part of a pattern).
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The pub/sub channel of a room's events and ephemeral frames.
    pub(crate) fn channel(&self, room: &str) -> String {
        format!("{}:room:{room}", self.prefix)
    }

    /// The channel every node always listens to for membership changes: a user's sessions on a
    /// node that does not watch the project's room must still learn what `tasks` may show them.
    pub(crate) fn members(&self) -> String {
        format!("{}:members", self.prefix)
    }

    /// The channel every node always listens to for `stats` frames: a node learns from them that
    /// a dashboard follows `system` somewhere, and starts reporting its own numbers. (Not the
    /// room's channel: that one is subscribed and unsubscribed as local members come and go.)
    pub(crate) fn docs(&self) -> String {
        format!("{}:docs", self.prefix)
    }

    /// The channel of the `system` room's `stats` frames.
    pub(crate) fn system(&self) -> String {
        format!("{}:system", self.prefix)
    }

    /// What a node subscribes to for a watched room: a channel, or for `tasks` (which spans every
    /// project) the pattern of every project room's channel.
    pub(crate) fn subscription(&self, room: &str) -> Subscription {
        if room == Room::TASKS {
            Subscription::Pattern(format!("{}:room:project:*", self.prefix))
        } else {
            Subscription::Channel(self.channel(room))
        }
    }

    /// The hash of a room's presence: field `node \x1f user`, value the node's connections.
    pub(crate) fn presence(&self, room: &str) -> String {
        format!("{}:presence:{room}", self.prefix)
    }

    /// A node's liveness key, refreshed by its heartbeat, expiring after `presence_ttl_secs`.
    pub(crate) fn node(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }
}

/// A Redis subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Subscription {
    /// `SUBSCRIBE` to one channel.
    Channel(String),
    /// `PSUBSCRIBE` to a pattern.
    Pattern(String),
}

/// The field of a presence hash.
pub(crate) fn presence_field(node: &str, user: &str) -> String {
    format!("{node}\u{1f}{user}")
}

/// Splits a presence hash field into node and user.
pub(crate) fn split_presence_field(field: &str) -> Option<(&str, &str)> {
    field.split_once('\u{1f}')
}
