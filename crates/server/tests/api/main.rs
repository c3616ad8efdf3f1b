//! Integration tests: a real server on an ephemeral port, driven over HTTP as a client would,
//! on SQLite and on PostgreSQL.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod bad_input;
mod board;
mod concurrency;
mod dependencies;
mod history;
mod io;
mod ops;
mod projects;
mod tasks;
