//! The Taskflow server.
//!
//! - [`config`]: typed, layered configuration (defaults, file, `TASKFLOW_*`, flags).
//! - [`domain`]: the rules of tasks (validated values, dependency graph), free of I/O.
//! - [`store`]: tasks, projects and the event log on SQLite or PostgreSQL. Every change and its
//!   event are written in one transaction; the event log is what the real-time hub delivers.
//! - [`auth`]: the admin token and user JWTs, and the [`auth::Caller`] handlers receive.
//! - `api`: the REST handlers, one module per resource, and the router with its layers.
//! - [`error`]: every failure, and the one place they become JSON error answers.
//!
//! [`Server::open`] connects the store and loads the keys; [`Server::serve`] answers requests on
//! an already-bound listener until the shutdown future resolves. [`run`] does both, which is all
//! a test needs: bind `127.0.0.1:0`, spawn `run`, talk to it.

mod api;
pub mod auth;
pub mod config;
pub mod domain;
pub mod error;
mod extract;
pub mod state;
pub mod store;
pub mod telemetry;

use crate::auth::{Keys, Secrets};
use crate::config::{Config, Secret};
use crate::state::AppState;
use crate::store::Store;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// A server whose store is open and keys loaded, ready to serve.
pub struct Server {
    /// Shared with every handler.
    state: AppState,
    /// The admin token, when this start generated it; shown once by the caller of
    /// [`Server::open`], never logged.
    generated_admin_token: Option<Secret>,
}

impl Server {
    /// Connects the store (running migrations) and loads or generates the token keys.
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        let store = Store::connect(&config.database).await?;
        let Secrets {
            keys,
            generated_admin_token,
        } = Keys::load(&config, &store).await?;
        telemetry::prometheus();
        Ok(Self {
            state: AppState::new(store, keys, config),
            generated_admin_token,
        })
    }

    /// The admin token if this start generated it (the first start on a new database with no
    /// configured token).
    pub fn generated_admin_token(&self) -> Option<&Secret> {
        self.generated_admin_token.as_ref()
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
                let mut every = tokio::time::interval(Duration::from_secs(60));
                loop {
                    every.tick().await;
                    state.prune_rate_limits();
                }
            }
        });
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let deadline = Duration::from_secs(state.config().shutdown_timeout_secs);
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections, finishing requests in flight");
            let _ = stop_tx.send(true);
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
        state.store().close().await;
        result
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
