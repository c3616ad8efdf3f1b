//! What happens on a connection before the router: timeouts for slow and idle peers, the
//! per-address connection cap, TLS. Driven by raw TCP bytes against a server on an ephemeral
//! port, so what is tested is what a peer sees on the wire.

#[path = "../common/mod.rs"]
mod common;
mod raw;

mod per_ip;
mod slow_peers;
mod tls;
