//! Starting the real `taskflow` binary for tests that kill and restart it.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub const TOKEN: &str = "crash-test-admin";

/// Starts the binary on an ephemeral port and returns it with its address, read from the line it
/// prints once it listens.
pub fn start(database: &str) -> (Child, String) {
    start_with(database, &[])
}

/// Like [`start`], with extra environment variables (settings).
pub fn start_with(database: &str, env: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_taskflow"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database", database])
        .env("TASKFLOW_ADMIN_TOKEN", TOKEN)
        .env("TASKFLOW_LOG_LEVEL", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the taskflow binary starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server prints its address")
            .expect("stdout is readable");
        if let Some(rest) = line.strip_prefix("Taskflow listening on http://") {
            break rest
                .split_whitespace()
                .next()
                .expect("an address")
                .to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}
