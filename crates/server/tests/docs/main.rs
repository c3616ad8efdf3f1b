//! Collaborative documents (`/ws/docs/{doc}`), driven by yrs clients speaking the y-websocket
//! protocol against a server on an ephemeral port. The npm `yjs` / `y-websocket` clients are
//! tested too, from Node (`tests/browser/docs.test.mjs`).

#[path = "../common/mod.rs"]
mod common;
mod editor;

mod access;
mod editing;
mod limits;
