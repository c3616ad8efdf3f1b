//! `taskflow bench connections`: open N connections at a given rate, hold them, and report how
//! long connecting took and what each connection costs the server.

use crate::dial::Dialer;
use crate::stats::Percentiles;
use crate::target::{Target, Usage};
use crate::BenchError;
use futures::StreamExt;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to do.
#[derive(Debug, Clone)]
pub struct ConnectionsPlan {
    /// Connections to open.
    pub count: usize,
    /// Connections opened per second at most.
    pub rate: u32,
    /// Handshakes in flight at most.
    pub concurrency: usize,
    /// How long to hold them all open.
    pub hold: Duration,
    /// Source addresses to spread over (127.0.0.1 ..= 127.0.0.N).
    pub sources: u8,
}

/// What happened.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionsReport {
    /// Connections open at the end of the ramp.
    pub opened: usize,
    /// Connections that failed to open.
    pub failed: usize,
    /// Time to connect (TCP + handshake + hello).
    pub connect: Percentiles,
    /// The server before the run.
    pub server_before: Option<Usage>,
    /// The server with every connection open.
    pub server_after: Option<Usage>,
    /// Server RSS per open connection, bytes.
    pub rss_per_connection: Option<f64>,
}

/// Runs the plan.
pub async fn run(target: &Target, plan: &ConnectionsPlan) -> Result<ConnectionsReport, BenchError> {
    let dialer = Arc::new(Dialer::new(target, plan.sources));
    let before = target.sample();
    let gap = Duration::from_secs_f64(1.0 / f64::from(plan.rate.max(1)));
    let started = Instant::now();
    let results: Vec<Result<(crate::dial::Socket, Duration), String>> =
        futures::stream::iter(0..plan.count)
            .map(|i| {
                let (dialer, target) = (dialer.clone(), target.clone());
                async move {
                    // Pace the ramp: connection i starts no earlier than i / rate.
                    tokio::time::sleep_until((started + gap * i as u32).into()).await;
                    let t0 = Instant::now();
                    dialer.connect(&target).await.map(|s| (s, t0.elapsed()))
                }
            })
            .buffer_unordered(plan.concurrency.max(1))
            .collect()
            .await;
    let mut sockets = Vec::new();
    let mut times = Vec::new();
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok((socket, took)) => {
                sockets.push(socket);
                times.push(took);
            }
            Err(err) => errors.push(err),
        }
    }
    // Keep reading, so the client library answers the server's pings while holding.
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            tokio::spawn(async move { while let Some(Ok(_)) = socket.next().await {} })
        })
        .collect();
    tokio::time::sleep(plan.hold).await;
    let after = target.sample();
    let opened = readers.len();
    for reader in readers {
        reader.abort();
    }
    let rss_per_connection = match (before, after) {
        (Some(b), Some(a)) if opened > 0 => {
            Some((a.rss_bytes as f64 - b.rss_bytes as f64) / opened as f64)
        }
        _ => None,
    };
    Ok(ConnectionsReport {
        opened,
        failed: errors.len(),
        connect: Percentiles::of(&mut times),
        server_before: before,
        server_after: after,
        rss_per_connection,
    })
}
