//! The terminal client behind `taskflow client`: connects to `/ws/tasks`, subscribes, prints
//! every frame, and when the connection is lost reconnects with exponential backoff and full
//! jitter, then subscribes again.
//!
//! - [`backoff`]: the retry schedule.
//! - [`display`]: how frames are printed for people.
//! - [`inflate`]: `permessage-deflate` under tungstenite, which has none.
//! - [`session`]: one connection, and the reconnecting loop around it.
//! - [`tls`]: which roots `wss://` and `https://` trust (a private CA with `--ca-cert`).

pub mod backoff;
pub mod display;
pub mod inflate;
pub mod session;
pub mod tls;

pub use session::{run, ClientOptions};
