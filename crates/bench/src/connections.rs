//! `taskflow bench connections`: open N connections at a given rate, hold them, and report how
//! long connecting took and what each connection costs the server.

use crate::dial::Dialer;
use crate::setup::{self, Setup};
use crate::stats::Percentiles;
use crate::target::{Target, Usage};
use crate::{progress, BenchError};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
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
    /// This process's part of a multi-process run (keeps user names apart).
    pub part: u32,
}

/// What happened.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectionsReport {
    /// Connections open at the end of the ramp.
    pub opened: usize,
    /// Connections that failed to open.
    pub failed: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Time to connect (TCP + handshake + hello).
    pub connect: Percentiles,
    /// Connections still open at the end of the hold (the server closed none).
    pub held: usize,
    /// The server before the run.
    pub server_before: Option<Usage>,
    /// The server with every connection open, at the end of the hold.
    pub server_after: Option<Usage>,
    /// Server RSS per open connection, bytes.
    pub rss_per_connection: Option<f64>,
}

/// Runs the plan.
pub async fn run(target: &Target, plan: &ConnectionsPlan) -> Result<ConnectionsReport, BenchError> {
    let setup = Setup::new(target);
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        % 1_000_000_000;
    let users = Arc::new(
        setup::users_for(
            &setup,
            &format!("conn-{run}-{}", plan.part),
            plan.count,
            None,
        )
        .await?,
    );
    let dialer = Arc::new(Dialer::new(target, plan.sources));
    let before = target.sample();
    let gap = Duration::from_secs_f64(1.0 / f64::from(plan.rate.max(1)));
    let bar = progress::counter("connecting", plan.count as u64);
    let started = Instant::now();
    let results: Vec<Result<(crate::dial::Socket, Duration), String>> =
        futures::stream::iter(0..plan.count)
            .map(|i| {
                let (dialer, target, users, bar) =
                    (dialer.clone(), target.clone(), users.clone(), bar.clone());
                async move {
                    // Pace the ramp: connection i starts no earlier than i / rate.
                    tokio::time::sleep_until((started + gap * i as u32).into()).await;
                    let t0 = Instant::now();
                    let token = &setup::user_of(&users, i).token;
                    let result = dialer
                        .connect(&target, token)
                        .await
                        .map(|s| (s, t0.elapsed()));
                    bar.inc(1);
                    result
                }
            })
            .buffer_unordered(plan.concurrency.max(1))
            .collect()
            .await;
    bar.finish_and_clear();
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
    let bar = progress::clock("holding", plan.hold);
    let hold_start = Instant::now();
    while hold_start.elapsed() < plan.hold {
        tokio::time::sleep(Duration::from_millis(500).min(plan.hold)).await;
        bar.set_position(hold_start.elapsed().as_secs());
    }
    bar.finish_and_clear();
    let after = target.sample();
    let opened = readers.len();
    let held = readers.iter().filter(|r| !r.is_finished()).count();
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
        first_error: errors.into_iter().next(),
        connect: Percentiles::of_samples(&times),
        held,
        server_before: before,
        server_after: after,
        rss_per_connection,
    })
}
