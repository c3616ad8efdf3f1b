//! A runtime for connection tasks apart from the one that serves requests (`ws_threads` > 0).
//!
//! A broadcast to 10,000 subscribers wakes 10,000 connection tasks at once. On a single runtime,
//! the next publish request, its commit and its fan-out each wait behind all of them in the run
//! queue, and every event pays that wait two or three times over. With connection tasks on their
//! own runtime, the operating system shares the core between the two: a request runs as soon as
//! it arrives, and the writers carry whatever was published meanwhile in their next write.
//! Measured at 10,000 subscribers × 20 events/s on one core: p99 about 250 ms on one runtime,
//! about 135 ms on two (docs/performance.md).
//!
//! It is the default (`ws_threads`: one thread per core). What the shared run queue used to give
//! for free, publishers slowed down when deliveries lag, comes from `super::lag` instead.
//!
//! It is process-wide and lives until the process exits. Sockets, timers and database
//! connections opened from its tasks are registered with its drivers, and must stay usable for
//! as long as anything holds them: a server in a test, for one, may be dropped while its
//! connection tasks are still ending.

use std::sync::OnceLock;
use tokio::runtime::{Builder, Handle, Runtime};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The connection runtime, started on first use with `threads` workers. Only the first call's
/// count counts: one process has one such runtime.
pub(crate) fn handle(threads: usize) -> &'static Handle {
    RUNTIME
        .get_or_init(|| {
            Builder::new_multi_thread()
                .worker_threads(threads.max(1))
                .thread_name("taskflow-conn")
                .enable_all()
                .build()
                .expect("the connection runtime starts")
        })
        .handle()
}
