//! The server under test: where it listens, how to authenticate, whether it speaks TLS, and
//! (given its pid) how much memory and CPU it uses, read from `/proc`.

use crate::stream::Stream;
use crate::BenchError;
use rustls::pki_types::ServerName;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpStream;

/// A server to load.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port` of the server; must be loopback.
    pub addr: SocketAddr,
    /// Bearer token (the admin token: setup creates projects).
    pub token: String,
    /// The server's process, to sample RSS and CPU.
    pub pid: Option<u32>,
    /// How to speak TLS to it, if it does.
    tls: Option<Tls>,
    /// Offer permessage-deflate on WebSockets (`--no-compression` turns it off).
    pub compression: bool,
}

/// TLS towards the target: the roots its certificate is checked against, and the name it must
/// carry.
#[derive(Debug, Clone)]
struct Tls {
    /// rustls' client configuration (the terminal client's: `--ca-cert` or the Mozilla roots).
    config: Arc<rustls::ClientConfig>,
    /// The name checked against the certificate and sent as SNI: the target's IP address, or
    /// the `--tls-name` given (a certificate for a DNS name, served on loopback).
    name: ServerName<'static>,
}

impl Target {
    /// Checks that the target is on this machine.
    pub fn new(addr: SocketAddr, token: String, pid: Option<u32>) -> Result<Self, BenchError> {
        if !addr.ip().is_loopback() {
            return Err(BenchError::NotLoopback(addr.to_string()));
        }
        Ok(Self {
            addr,
            token,
            pid,
            tls: None,
            compression: true,
        })
    }

    /// The same target over TLS (`https://`, `wss://`), trusting the CA certificates in `ca`
    /// (PEM) or else the Mozilla roots, and expecting a certificate for `name` (else the
    /// target's IP address).
    pub fn with_tls(mut self, ca: Option<&Path>, name: Option<&str>) -> Result<Self, BenchError> {
        let config =
            taskflow_client::tls::client_config(ca).map_err(|e| BenchError::Tls(e.to_string()))?;
        let name = match name {
            Some(name) => ServerName::try_from(name.to_owned())
                .map_err(|_| BenchError::Tls(format!("{name:?} is not a DNS name")))?,
            None => ServerName::from(self.addr.ip()),
        };
        self.tls = Some(Tls { config, name });
        Ok(self)
    }

    /// The host part of the target's URLs: the TLS name when one is given (the certificate's),
    /// else the address. Requests still go to [`Target::addr`].
    fn authority(&self) -> String {
        match &self.tls {
            Some(Tls {
                name: ServerName::DnsName(name),
                ..
            }) => format!("{}:{}", name.as_ref(), self.addr.port()),
            _ => self.addr.to_string(),
        }
    }

    /// `http://addr` (or `https://`) + `path`.
    pub fn http(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.authority())
    }

    /// The WebSocket endpoint (`ws://` or `wss://`), without automatic subscriptions.
    pub fn ws(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.authority(), self.ws_path())
    }

    /// The `Host` header of requests to the target.
    pub fn host(&self) -> String {
        self.authority()
    }

    /// An HTTP client for the target's REST API, trusting what its WebSockets trust, and
    /// sending a `--tls-name` host to the target's address.
    pub fn http_client(&self) -> reqwest::Client {
        let mut builder = reqwest::Client::builder();
        if let Some(tls) = &self.tls {
            builder = builder.use_preconfigured_tls((*tls.config).clone());
            if let ServerName::DnsName(name) = &tls.name {
                builder = builder.resolve(name.as_ref(), self.addr);
            }
        }
        builder
            .build()
            .expect("a client with this TLS configuration")
    }

    /// The rustls configuration for the target's WebSockets, if it speaks TLS.
    pub fn tls_config(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.tls.as_ref().map(|tls| tls.config.clone())
    }

    /// Starts TLS over `tcp` when the target speaks it.
    pub async fn secure(&self, tcp: TcpStream) -> Result<Stream, String> {
        match &self.tls {
            None => Ok(Stream::Plain(tcp)),
            Some(tls) => tokio_rustls::TlsConnector::from(tls.config.clone())
                .connect(tls.name.clone(), tcp)
                .await
                .map(|tls| Stream::Tls(Box::new(tls)))
                .map_err(|e| format!("TLS handshake: {e}")),
        }
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
