//! The real-time hub, driven by real WebSocket clients against a server on an ephemeral port.

#[path = "../common/mod.rs"]
mod common;
mod ws;

mod delivery;
mod handshake;
mod lifecycle;
mod limits;
mod people;
