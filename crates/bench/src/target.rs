//! The server under test: where it listens, how to authenticate, and (given its pid) how much
//! memory and CPU it uses, read from `/proc`.

use crate::BenchError;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

/// A server to load.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port` of the server; must be loopback.
    pub addr: SocketAddr,
    /// Bearer token (the admin token: setup creates projects).
    pub token: String,
    /// The server's process, to sample RSS and CPU.
    pub pid: Option<u32>,
}

impl Target {
    /// Checks that the target is on this machine.
    pub fn new(addr: SocketAddr, token: String, pid: Option<u32>) -> Result<Self, BenchError> {
        if !addr.ip().is_loopback() {
            return Err(BenchError::NotLoopback(addr.to_string()));
        }
        Ok(Self { addr, token, pid })
    }

    /// `http://addr` + `path`.
    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The WebSocket endpoint, without automatic subscriptions.
    pub fn ws(&self) -> String {
        format!("ws://{}{}", self.addr, self.ws_path())
    }

    /// The path and query of [`Target::ws`].
    pub fn ws_path(&self) -> &'static str {
        "/ws/tasks?auto=false"
    }

    /// The server's resources now, if its pid is known.
    pub fn sample(&self) -> Option<Usage> {
        Usage::of(self.pid?)
    }

    /// Whether the target listens on an IPv4 loopback address (source spreading needs it).
    pub fn is_v4(&self) -> bool {
        matches!(self.addr.ip(), IpAddr::V4(_))
    }
}

/// A process's resident memory and CPU time so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// The process.
    pub pid: u32,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// User plus system CPU time, seconds.
    pub cpu_secs: f64,
}

impl Usage {
    /// Reads `/proc/<pid>/status` and `/proc/<pid>/stat`.
    pub fn of(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may contain spaces) start after the last ')'.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(Self {
            pid,
            rss_bytes: rss_kib * 1024,
            cpu_secs: ticks / 100.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(Target::new("127.0.0.1:3000".parse().unwrap(), "t".into(), None).is_ok());
        assert!(Target::new("[::1]:3000".parse().unwrap(), "t".into(), None).is_ok());
        assert!(Target::new("10.0.0.1:3000".parse().unwrap(), "t".into(), None).is_err());
    }

    #[test]
    fn reads_its_own_usage() {
        let usage = Usage::of(std::process::id()).expect("/proc is readable");
        assert!(usage.rss_bytes > 0);
    }
}
