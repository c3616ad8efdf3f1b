//! The load generator behind `taskflow bench`. It measures what users choose a real-time server
//! on: how many connections it holds, what one delivered message costs, and how long the last
//! subscriber waits.
//!
//! - [`cli`]: the command line and what each subcommand runs.
//! - [`target`]: the server under test (its URLs, token, TLS, and process for RSS and CPU).
//! - [`stream`]: one connection's bytes, over TCP or TLS.
//! - [`setup`]: the projects and users a run needs.
//! - [`dial`]: opening WebSocket connections from many loopback source addresses.
//! - [`join`]: getting a subscriber in, following the server's 503 + `Retry-After`.
//! - [`frame`]: reading offsets and send times from event frames without parsing them.
//! - [`payload`]: what the published tasks carry (the bare send time, or a realistic task).
//! - [`stats`] and [`timeline`]: latency histograms and delivered rates.
//! - [`metrics`]: the server's own counters (database queries per connection), node by node.
//! - [`connections`], [`fanout`], [`churn`] and [`storm`]: the scenarios of the hub;
//!   [`import`]: a large import and export.
//! - [`report`]: their reports, as a table or JSON, and merging those of several processes.
//! - [`progress`] and [`plot`]: a progress bar while running, an SVG afterwards.
//!
//! Every run is bounded in count and time and talks to loopback addresses only.

pub mod churn;
pub mod cli;
pub mod connections;
pub mod dial;
pub mod fanout;
pub mod frame;
pub mod import;
pub mod join;
pub mod metrics;
pub mod payload;
pub mod plot;
pub mod progress;
pub mod report;
pub mod setup;
pub mod stats;
pub mod storm;
pub mod stream;
pub mod target;
pub mod timeline;
pub mod wire;

/// Why a run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The target is not on a loopback address: the bench only loads this machine.
    #[error("the target must be a loopback address (127.0.0.0/8 or ::1), not {0}")]
    NotLoopback(String),
    /// The server refused or failed a setup request.
    #[error("setup failed: {0}")]
    Setup(String),
    /// The `--ca-cert` file cannot be used, or `--tls-name` is not a DNS name.
    #[error("TLS: {0}")]
    Tls(String),
    /// Too many connections failed to open.
    #[error("{failed} of {wanted} connections failed; first error: {first}")]
    Connect {
        /// How many failed.
        failed: usize,
        /// How many were wanted.
        wanted: usize,
        /// The first error.
        first: String,
    },
}
