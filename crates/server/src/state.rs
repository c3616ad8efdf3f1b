//! The state every handler shares: a cheap `Clone` handle over one `Arc`.

use crate::auth::Keys;
use crate::broker::redis::Cluster;
use crate::config::Config;
use crate::domain::UserId;
use crate::error::ApiError;
use crate::hub::dispatch::Dispatcher;
use crate::hub::Hub;
use crate::store::Store;
use crate::transport::Gate;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;

/// Shared server state.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    /// Tasks, projects and the event log.
    store: Store,
    /// Verifies and mints tokens.
    keys: Keys,
    /// The configuration the server started with.
    config: Config,
    /// Per-caller request budget. governor's keyed limiter is a sharded concurrent map, so
    /// checking it takes no global lock; stale keys are pruned periodically (see `crate::run`).
    limiter: DefaultKeyedRateLimiter<UserId>,
    /// Orders committed events and fans them out through the hub.
    dispatcher: Dispatcher,
    /// The cluster broker, when this node is one of several.
    cluster: Option<Cluster>,
    /// Admission of real-time handshakes under a storm.
    gate: Gate,
    /// The collaborative documents open on this node.
    collab: crate::collab::Collab,
}

impl AppState {
    /// Builds the state.
    pub fn new(store: Store, keys: Keys, config: Config, dispatcher: Dispatcher) -> Self {
        Self::build(store, keys, config, dispatcher, None)
    }

    /// Builds the state of one node of a cluster.
    pub fn clustered(
        store: Store,
        keys: Keys,
        config: Config,
        dispatcher: Dispatcher,
        cluster: Cluster,
    ) -> Self {
        Self::build(store, keys, config, dispatcher, Some(cluster))
    }

    fn build(
        store: Store,
        keys: Keys,
        config: Config,
        dispatcher: Dispatcher,
        cluster: Option<Cluster>,
    ) -> Self {
        let per_sec = NonZeroU32::new(config.rate_limit_per_sec.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(config.rate_limit_burst.max(1)).expect("at least 1");
        let limiter = RateLimiter::keyed(Quota::per_second(per_sec).allow_burst(burst));
        let collab = crate::collab::Collab::new(store.clone(), config.doc_limits());
        dispatcher.hub().set_doc_signals(Arc::new(collab.clone()));
        if let Some(cluster) = &cluster {
            cluster.set_docs(collab.clone());
            collab.join_cluster(
                Arc::new(cluster.clone()),
                cluster.node().to_owned(),
                std::time::Duration::from_millis(config.broker_check_interval_ms),
            );
        }
        Self {
            inner: Arc::new(Inner {
                collab,
                store,
                keys,
                limiter,
                gate: Gate::new(&config),
                config,
                dispatcher,
                cluster,
            }),
        }
    }

    /// The collaborative documents.
    pub fn collab(&self) -> &crate::collab::Collab {
        &self.inner.collab
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The token keys.
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// The hub: local sessions and rooms.
    pub fn hub(&self) -> &Hub {
        self.inner.dispatcher.hub()
    }

    /// The dispatcher: ordered delivery of committed events.
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.inner.dispatcher
    }

    /// The cluster broker, if this node is one of several.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.inner.cluster.as_ref()
    }

    /// Who is in `room`: on this node, or across the cluster.
    pub async fn presence(&self, room: &str) -> Vec<taskflow_protocol::Present> {
        let local = self.hub().presence(room);
        match self.cluster() {
            Some(cluster) => cluster.presence(room, local).await,
            None => local,
        }
    }

    /// The caller's projects, for a real-time connection: from this node's cache, one query for
    /// a user it does not hold (`hub::memberships`). Empty for the admin, who sees every project.
    pub async fn memberships_of(
        &self,
        caller: &crate::auth::Caller,
    ) -> Result<std::collections::HashSet<crate::domain::ProjectId>, crate::store::StoreError> {
        if caller.is_admin() {
            return Ok(Default::default());
        }
        let store = self.store();
        self.hub()
            .memberships()
            .get(caller.user(), || async {
                crate::hub::metrics::db_query("memberships");
                store.memberships(caller.user()).await
            })
            .await
    }

    /// The handshake gate (`transport::gate`).
    pub fn gate(&self) -> &Gate {
        &self.inner.gate
    }

    /// Why this node would refuse a real-time connection arriving now, if it would: what the
    /// gate and the hub's limits say, without taking a place.
    pub fn refusing_now(&self) -> Option<crate::error::BusyReason> {
        if let Err(err) = self.hub().would_admit() {
            return Some(err.into());
        }
        self.gate()
            .is_full()
            .then_some(crate::error::BusyReason::Overloaded)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Spends one request of `user`'s budget, or answers 429 with when to retry.
    pub fn check_rate(&self, user: &UserId) -> Result<(), ApiError> {
        self.inner.limiter.check_key(user).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            }
        })
    }

    /// Callers the rate limiter keeps a budget for now (back to zero once every caller's budget
    /// has refilled and [`AppState::prune_rate_limits`] ran).
    pub fn rate_limited_callers(&self) -> usize {
        self.inner.limiter.len()
    }

    /// Forgets callers that have not been seen for a while, keeping the limiter's memory bounded.
    pub fn prune_rate_limits(&self) {
        self.inner.limiter.retain_recent();
        self.inner.limiter.shrink_to_fit();
    }
}
