//! Starting the real `taskflow` binary for tests that kill and restart it.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

pub const TOKEN: &str = "crash-test-admin";

/// Starts the binary on an ephemeral port and returns it with its address, read from the line it
/// prints once it listens.
pub fn start(database: &str) -> (Child, String) {
    start_with(database, &[])
}

/// Like [`start`], with extra environment variables (settings).
pub fn start_with(database: &str, env: &[(&str, &str)]) -> (Child, String) {
    let (child, addr, _output) = start_capturing(database, env);
    (child, addr)
}

/// Everything the binary wrote to its standard output (a pipe), line by line.
pub struct Output {
    lines: Arc<Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Output {
    /// Every line, once the process has exited (its end of the pipe is closed).
    pub fn lines_after_exit(self) -> Vec<String> {
        self.reader
            .join()
            .expect("the reader thread ends at end of file");
        Arc::try_unwrap(self.lines)
            .expect("the reader is done")
            .into_inner()
            .unwrap()
    }
}

/// Like [`start_with`], keeping what the binary prints (logs included: they go to stdout).
pub fn start_capturing(database: &str, env: &[(&str, &str)]) -> (Child, String, Output) {
    start_serving(&["--listen", "127.0.0.1:0", "--database", database], env)
}

/// `taskflow serve ARGS` (which name the database and the address), with `env`; returns the
/// process, the address it prints once it listens, and its output.
pub fn start_serving(args: &[&str], env: &[(&str, &str)]) -> (Child, String, Output) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_taskflow"))
        .arg("serve")
        .args(args)
        .env("TASKFLOW_ADMIN_TOKEN", TOKEN)
        .env("TASKFLOW_LOG_LEVEL", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the taskflow binary starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let kept: Arc<Mutex<Vec<String>>> = Arc::default();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server prints its address")
            .expect("stdout is readable");
        kept.lock().unwrap().push(line.clone());
        let rest = line
            .strip_prefix("Taskflow listening on http://")
            .or_else(|| line.strip_prefix("Taskflow listening on https://"));
        if let Some(rest) = rest {
            break rest
                .split_whitespace()
                .next()
                .expect("an address")
                .to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    let reader = std::thread::spawn({
        let kept = kept.clone();
        move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        }
    });
    (
        child,
        addr,
        Output {
            lines: kept,
            reader,
        },
    )
}

/// A Redis key prefix no other test (or run) uses, for nodes on the shared Redis
/// (127.0.0.1:6379, as `scripts/test.sh` starts it); its keys are deleted when it is dropped.
pub struct Prefix(String);

impl Prefix {
    pub fn new() -> Prefix {
        Prefix(format!("tftest-{}", uuid::Uuid::now_v7()))
    }
}

impl std::ops::Deref for Prefix {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        // Presence hashes outlive their nodes; leave the shared Redis as it was.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "redis-cli -h 127.0.0.1 -p 6379 --scan --pattern '{}:*' | xargs -r redis-cli -h 127.0.0.1 -p 6379 del",
                self.0
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A server process that is killed when the test ends, failed assertions included (a panicking
/// test would otherwise leave it running, holding the test harness's output open).
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
