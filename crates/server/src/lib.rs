//! The Taskflow server.
//!
//! - [`config`]: typed, layered configuration (defaults, file, `TASKFLOW_*`, flags).
//! - [`domain`]: the rules of tasks (validated values, dependency graph), free of I/O.
//! - [`store`]: tasks, projects and the event log on SQLite or PostgreSQL. Every change and its
//!   event are written in one transaction; the event log is what the real-time hub delivers.
//! - [`auth`]: the admin token and user JWTs, and the [`auth::Caller`] handlers receive.
//! - `api`: the REST handlers, one module per resource, the live task board's page (`/`), and
//!   the router with its layers.
//! - [`error`]: every failure, and the one place they become JSON error answers.
//! - [`hub`]: sessions, rooms and ordered fan-out of committed events; knows no HTTP or SQL.
//! - [`collab`]: collaborative documents (a task's description as a Yjs document): load,
//!   store before sharing, forward, awareness, the description written back, unload when idle.
//! - [`broker`]: carries committed events from the store to the hub: in-process for one node,
//!   through Redis pub/sub between the nodes of a cluster (`broker = "redis://…"`).
//! - `transport`: the WebSocket endpoint, a thin adapter between sockets and hub sessions.
//! - `fuzzing`: entry points into the network parsers for the fuzz targets (`fuzz/`) and the
//!   property tests; hidden, not a stable API.
//! - [`listener`]: the socket and our own accept loop over hyper: header, body-rate and
//!   keep-alive bounds for slow or idle peers, the per-address connection cap, TLS.
//!
//! [`Server::open`] connects the store and loads the keys; [`Server::serve`] answers requests on
//! an already-bound listener until the shutdown future resolves. [`run`] does both, which is all
//! a test needs: bind `127.0.0.1:0`, spawn `run`, talk to it.

mod api;
pub mod auth;
pub mod broker;
pub mod collab;
pub mod config;
pub mod dashboard;
pub mod direct;
pub mod domain;
pub mod error;
mod extract;
#[doc(hidden)]
pub mod fuzzing;
pub mod hub;
pub mod listener;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
mod transport;

use crate::auth::{Keys, Secrets};
use crate::broker::redis::{Cluster, ClusterOptions};
use crate::broker::{LocalBroker, StoreSource};
use crate::config::{Config, Secret};
use crate::hub::dispatch::Dispatcher;
use crate::hub::session::QueueLimits;
use crate::hub::{Hub, HubLimits};
use crate::state::AppState;
use crate::store::Store;
use anyhow::Context;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The AsyncAPI 3.0 document of the WebSocket protocol, as `/asyncapi.json` serves it: for
/// tools (and tests) that want the contract without starting a server.
pub fn asyncapi() -> serde_json::Value {
    transport::asyncapi::document()
}

/// A server whose store is open and keys loaded, ready to serve.
pub struct Server {
    /// Shared with every handler.
    state: AppState,
    /// The admin token, when this start generated it; shown once by the caller of
    /// [`Server::open`], never logged.
    generated_admin_token: Option<Secret>,
    /// The certificate, when the server speaks TLS (`tls_cert`, `tls_key`).
    tls: Option<Arc<tls::reload::Certificates>>,
}

impl Server {
    /// Connects the store (running migrations) and loads or generates the token keys.
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        telemetry::prometheus();
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                Some(tls::reload::Certificates::load(cert.clone(), key.clone())?)
            }
            (None, None) => None,
            _ => return Err(tls::TlsError::Incomplete.into()),
        };
        let store = Store::connect_with(&config.database, config.pool_sizes()).await?;
        let Secrets {
            keys,
            generated_admin_token,
        } = Keys::load(&config, &store).await?;
        let limits = HubLimits {
            queue: QueueLimits {
                messages: config.ws_queue_messages,
                bytes: config.ws_queue_bytes,
            },
            max_connections: config.ws_max_connections,
            max_connections_per_user: config.ws_max_connections_per_user,
            max_subscriptions: config.ws_max_subscriptions,
            connection_threads: config.ws_threads,
            compression: config.compression(),
            memberships: crate::hub::memberships::MembershipLimits {
                users: config.membership_cache_users,
                ttl: std::time::Duration::from_secs(config.membership_cache_ttl_secs),
            },
        };
        let cluster = cluster_options(&config)?
            .map(Cluster::new)
            .transpose()
            .context("cannot set up the cluster broker")?;
        let hub = match &cluster {
            Some((cluster, _)) => Hub::with_feed(limits, Arc::new(cluster.clone())),
            None => Hub::new(limits),
        };
        // Streams start where the log stands now; the sink is set before any request is served.
        let dispatcher = Dispatcher::with_replay(
            hub,
            Arc::new(StoreSource(store.clone())),
            Duration::from_millis(config.gap_fill_hold_ms),
            store.epoch().to_owned(),
            store.room_offsets().await?,
            config.replay_limits(),
        );
        let state = match cluster {
            Some((cluster, start)) => {
                tracing::info!(node = cluster.node(), "joining the cluster");
                store.set_event_sink(Arc::new(cluster.sink(dispatcher.clone())));
                cluster.start(start, dispatcher.clone(), store.clone());
                AppState::clustered(store, keys, config, dispatcher, cluster)
            }
            None => {
                store.set_event_sink(Arc::new(LocalBroker::new(dispatcher.clone())));
                AppState::new(store, keys, config, dispatcher)
            }
        };
        Ok(Self {
            state,
            generated_admin_token,
            tls,
        })
    }

    /// The admin token if this start generated it (the first start on a new database with no
    /// configured token).
    pub fn generated_admin_token(&self) -> Option<&Secret> {
        self.generated_admin_token.as_ref()
    }

    /// The certificate in use when the server speaks TLS (to reload it, or to know that
    /// links are `https://`).
    pub fn tls(&self) -> Option<&Arc<tls::reload::Certificates>> {
        self.tls.as_ref()
    }

    /// The shared state (the store and keys), e.g. to mint a token at start.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves on `listener` until `shutdown` resolves, then finishes in-flight requests (within
    /// the configured deadline) and closes the store.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state;
        let app = api::router(state.clone());
        let pruner = tokio::spawn({
            let state = state.clone();
            async move {
                let mut every = tokio::time::interval(Duration::from_secs(5));
                for tick in 0u64.. {
                    every.tick().await;
                    // The recorder keeps every histogram sample until its upkeep folds them into
                    // buckets: without it, a server nobody scrapes grows by every request it
                    // serves (found by `taskflow bench churn`).
                    telemetry::prometheus().run_upkeep();
                    if tick % 12 == 0 {
                        state.prune_rate_limits();
                    }
                }
            }
        });
        let compactor = tokio::spawn(compact_periodically(state.clone()));
        let pool_sampler = tokio::spawn(telemetry::sample_pools(state.store().clone()));
        let dashboard = tokio::spawn(dashboard::run(state.clone()));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let deadline = Duration::from_secs(state.config().shutdown_timeout_secs);
        let hub = state.hub().clone();
        let config = state.config().clone();
        let watcher = self.tls.clone().map(|certificates| {
            tokio::spawn(tls::reload::watch(
                certificates,
                Duration::from_millis(config.tls_watch_interval_ms),
            ))
        });
        let redirect = match (&self.tls, config.redirect_http_from) {
            (Some(_), Some(from)) => {
                let plain = listener::bind(from, false)
                    .with_context(|| format!("cannot listen on {from} (redirect_http_from)"))?;
                let https_port = listener.local_addr()?.port();
                let config = config.clone();
                let mut stop = stop_rx.clone();
                Some(tokio::spawn(async move {
                    let stopped = async move {
                        let _ = stop.wait_for(|stopped| *stopped).await;
                    };
                    let router = tls::redirect::router(https_port);
                    if let Err(err) = listener::serve(plain, router, &config, None, stopped).await {
                        tracing::error!(%err, "the HTTP redirect listener failed");
                    }
                }))
            }
            _ => None,
        };
        let acceptor = self.tls.clone().map(tls::acceptor);
        let server = listener::serve(listener, app, &config, acceptor, async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections, closing WebSockets with 1001, finishing requests");
            let _ = stop_tx.send(true);
            hub.begin_shutdown();
        });
        let mut stop_rx = stop_rx;
        let result = tokio::select! {
            result = server => result.map_err(anyhow::Error::from),
            _ = async {
                let _ = stop_rx.wait_for(|stopped| *stopped).await;
                tokio::time::sleep(deadline).await;
            } => {
                tracing::warn!("shutdown deadline passed; dropping requests still in flight");
                Ok(())
            }
        };
        pruner.abort();
        compactor.abort();
        pool_sampler.abort();
        dashboard.abort();
        for task in [watcher, redirect].into_iter().flatten() {
            task.abort();
        }
        state.hub().shutdown(deadline).await;
        if let Some(cluster) = state.cluster() {
            cluster.shutdown().await;
        }
        state.store().close().await;
        result
    }
}

/// The cluster broker's options, or `None` for the in-process broker (`broker = "local"`).
fn cluster_options(config: &Config) -> anyhow::Result<Option<ClusterOptions>> {
    let url = config.broker.trim();
    if url.is_empty() || url == "local" {
        return Ok(None);
    }
    if !url.starts_with("redis://") {
        anyhow::bail!("broker must be \"local\" or a redis:// URL, not {url:?}");
    }
    if config.database.starts_with("sqlite:") {
        anyhow::bail!(
            "a cluster needs a shared store: use a postgres:// database with broker {url:?}"
        );
    }
    Ok(Some(ClusterOptions {
        url: url.to_owned(),
        node: config
            .node_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        prefix: config.broker_prefix.clone(),
        check_interval: Duration::from_millis(config.broker_check_interval_ms),
        presence_ttl: Duration::from_secs(config.presence_ttl_secs.max(1)),
    }))
}

/// Enforces the log's retention every `retention_interval_secs`.
async fn compact_periodically(state: AppState) {
    let config = state.config().clone();
    let mut every =
        tokio::time::interval(Duration::from_secs(config.retention_interval_secs.max(1)));
    loop {
        every.tick().await;
        let result = state
            .store()
            .compact(
                config.retention_max_events,
                config.retention_max_age_secs.saturating_mul(1000),
                config.resume_window_secs.saturating_mul(1000),
            )
            .await;
        match result {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "compacted the event log"),
            Err(err) => tracing::warn!(error = %err, "compaction failed; will retry"),
        }
    }
}

/// Opens the store and serves on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Server::open(config).await?.serve(listener, shutdown).await
}
