//! `taskflow demo`: the ten concepts Taskflow is built from, each shown doing real work through
//! the public HTTP and WebSocket API, with a summary table and an exit status that says whether
//! every one behaved as it claims.
//!
//! - [`cli`]: the command line, and the run: a server (given or started), the cast, the
//!   subscribers, the chapters, the summary.
//! - [`server`]: the server of its own the demo starts without `--target`, and its log lines.
//! - [`api`]: one HTTP call, timed, with what the answer says.
//! - [`cast`]: the run's projects (one per chapter) and users (workers, an assignee, ...).
//! - [`journal`]: what a real-time stream received, room by room, checked for gaps and
//!   duplicates as it arrives; chapters wait on it instead of sleeping.
//! - [`subscriber`] and [`sse`]: the demo's own WebSocket subscriber and SSE stream, both
//!   following every room of the run from before chapter 1 to the end.
//! - [`metrics`]: numbers read from the server's `/metrics`.
//! - [`chapters`]: one module per concept; each returns why it worked or why not.
//! - [`show`] and [`report`]: the readable lines of a chapter, and the table at the end.
//!
//! The demo never reaches into the server's process or database: everything it shows, a client
//! of the public API could see (the one exception, the server's log in chapter 6, is read from
//! the output of the server it started itself).

pub mod api;
pub mod cast;
pub mod chapters;
pub mod cli;
pub mod journal;
pub mod metrics;
pub mod report;
pub mod server;
pub mod show;
pub mod sse;
pub mod subscriber;

pub use cli::{run, DemoArgs};
pub use report::Summary;
