//! The real-time hub, driven by real WebSocket clients against a server on an ephemeral port.

#[path = "../common/mod.rs"]
mod common;
mod proxy;
mod sse_client;
mod ws;

mod board_rest;
mod conformance;
mod dashboard;
mod delivery;
mod direct;
mod handshake;
mod import;
mod lifecycle;
mod limits;
mod memory;
mod people;
mod resume;
