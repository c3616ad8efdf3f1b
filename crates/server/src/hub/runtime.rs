//! The runtime connection tasks run on, apart from the one that serves requests.
//!
//! A broadcast to 10,000 subscribers wakes 10,000 connection tasks at once. On a single runtime,
//! the next publish request, its commit and its fan-out would each wait behind all of them in the
//! run queue, and every event would pay that wait two or three times over. With connection tasks
//! on their own runtime, the operating system shares the core between the two: a request runs as
//! soon as it arrives, and the writers carry whatever was published meanwhile in their next write.
//! Measured at 10,000 subscribers × 20 events/s on one core: p99 216 ms on one runtime, 103 ms on
//! two (docs/performance.md).
//!
//! It is process-wide and lives until the process exits. Sockets, timers and database
//! connections opened from its tasks are registered with its drivers, and must stay usable for
//! as long as anything holds them: a server in a test, for one, may be dropped while its
//! connection tasks are still ending.

use std::sync::OnceLock;
use tokio::runtime::{Builder, Handle, Runtime};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The connection runtime, started on first use with `threads` workers (0: one per core). Only
/// the first call's count counts: one process has one such runtime.
pub(crate) fn handle(threads: usize) -> &'static Handle {
    RUNTIME
        .get_or_init(|| {
            let threads = if threads == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                threads
            };
            Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("taskflow-conn")
                .enable_all()
                .build()
                .expect("the connection runtime starts")
        })
        .handle()
}
