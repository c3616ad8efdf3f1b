//! The load generator behind `taskflow bench`. It measures what users choose a real-time server
//! on: how many connections it holds, what one delivered message costs, and how long the last
//! subscriber waits.
//!
//! - [`target`]: the server under test (its URLs, token, and process for RSS and CPU).
//! - [`dial`]: opening WebSocket connections from many loopback source addresses.
//! - [`stats`]: latency percentiles.
//! - [`connections`] and [`fanout`]: the scenarios.
//!
//! Every run is bounded in count and time and talks to loopback addresses only.

pub mod connections;
pub mod dial;
pub mod fanout;
pub mod stats;
pub mod target;

/// Why a run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The target is not on a loopback address: the bench only loads this machine.
    #[error("the target must be a loopback address (127.0.0.0/8 or ::1), not {0}")]
    NotLoopback(String),
    /// The server refused or failed a setup request.
    #[error("setup failed: {0}")]
    Setup(String),
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
