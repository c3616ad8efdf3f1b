//! `taskflow bench churn`: clients that connect, subscribe, and leave, at a steady rate. What a
//! server must survive when a deploy or a flaky network reconnects everybody: no errors, and
//! memory that comes back to where it was (no leak per connection).

use crate::dial::{Dialer, Socket};
use crate::setup::{self, Setup};
use crate::stats::Percentiles;
use crate::target::{Target, Usage};
use crate::{progress, BenchError};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// What to do.
#[derive(Debug, Clone)]
pub struct ChurnPlan {
    /// Connects (and disconnects) per second.
    pub rate: u32,
    /// How long to churn after the warm-up.
    pub duration: Duration,
    /// Churn before the baseline is taken, so allocator pools and caches are warm.
    pub warmup: Duration,
    /// Connections in flight at most.
    pub concurrency: usize,
    /// Source addresses.
    pub sources: u8,
}

/// What happened.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChurnReport {
    /// Connect-subscribe-close cycles completed after the warm-up.
    pub cycles: u64,
    /// Cycles that failed.
    pub errors: u64,
    /// The first error, if any.
    pub first_error: Option<String>,
    /// Cycles per second achieved.
    pub cycles_per_sec: f64,
    /// Time to connect (TCP + handshake + hello).
    pub connect: Percentiles,
    /// The server after the warm-up, idle.
    pub baseline: Option<Usage>,
    /// The server after the run, idle again.
    pub after: Option<Usage>,
    /// RSS after relative to the baseline, percent.
    pub rss_change_pct: Option<f64>,
}

/// Runs the plan.
pub async fn run(target: &Target, plan: &ChurnPlan) -> Result<ChurnReport, BenchError> {
    let setup = Setup::new(target);
    let run = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            % 1_000_000_000
    );
    let room = format!("churn-{run}");
    setup.project(&room).await?;
    // Enough users for the per-user limits: at most CONNECTIONS_PER_USER in flight each, and
    // at most half the server's default request rate (200/s per user) in handshakes.
    let slots = plan
        .concurrency
        .max(plan.rate as usize / 100 * setup::CONNECTIONS_PER_USER);
    let users =
        setup::users_for(&setup, &format!("churn-{run}"), slots.max(1), Some(&room)).await?;
    let users = Arc::new(users);
    let dialer = Arc::new(Dialer::new(target, plan.sources));
    let room = Arc::new(format!("project:{room}"));

    let churn = |span: Duration, label: &'static str| {
        let (users, dialer, room, target) =
            (users.clone(), dialer.clone(), room.clone(), target.clone());
        let cycles = (f64::from(plan.rate) * span.as_secs_f64()) as usize;
        let gap = Duration::from_secs_f64(1.0 / f64::from(plan.rate.max(1)));
        let concurrency = plan.concurrency.max(1);
        async move {
            let bar = progress::counter(label, cycles as u64);
            let started = Instant::now();
            let results: Vec<Result<Duration, String>> = futures::stream::iter(0..cycles)
                .map(|i| {
                    let (users, dialer, room, target, bar) = (
                        users.clone(),
                        dialer.clone(),
                        room.clone(),
                        target.clone(),
                        bar.clone(),
                    );
                    async move {
                        tokio::time::sleep_until((started + gap * i as u32).into()).await;
                        let user = &users[i % users.len()];
                        let result = cycle(&dialer, &target, &user.token, &room).await;
                        bar.inc(1);
                        result
                    }
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
            bar.finish_and_clear();
            (results, started.elapsed())
        }
    };

    let _ = churn(plan.warmup, "warming up").await;
    let baseline = settle(target).await;
    let (results, took) = churn(plan.duration, "churning").await;
    let after = settle(target).await;

    let mut times = Vec::new();
    let mut report = ChurnReport::default();
    for result in results {
        match result {
            Ok(t) => {
                report.cycles += 1;
                times.push(t);
            }
            Err(e) => {
                report.errors += 1;
                report.first_error.get_or_insert(e);
            }
        }
    }
    report.cycles_per_sec = report.cycles as f64 / took.as_secs_f64().max(1e-3);
    report.connect = Percentiles::of_samples(&times);
    report.rss_change_pct = baseline
        .zip(after)
        .map(|(b, a)| (a.rss_bytes as f64 - b.rss_bytes as f64) * 100.0 / b.rss_bytes as f64);
    report.baseline = baseline;
    report.after = after;
    Ok(report)
}

/// One client's visit: connect, subscribe, close, and wait for the server's close. Returns the
/// connect time.
async fn cycle(
    dialer: &Dialer,
    target: &Target,
    token: &str,
    room: &str,
) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut socket: Socket = dialer.connect(target, token).await?;
    let connected = t0.elapsed();
    let command = json!({ "type": "subscribe", "room": room, "id": "s" });
    socket
        .send(Message::text(command.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Text(t)) if t.contains(r#""id":"s""#) => {
                    return if t.contains(r#""ok":true"#) {
                        Ok(())
                    } else {
                        Err(format!("subscribe refused: {t}"))
                    };
                }
                Ok(_) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("closed before subscribing".to_owned())
    })
    .await
    .map_err(|_| "no answer to subscribe".to_owned())?;
    answered?;
    socket.close(None).await.map_err(|e| e.to_string())?;
    // The closing handshake completes when the server's close frame arrives.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
    Ok(connected)
}

/// Waits until the server reports no open WebSocket connection (bounded), then samples it.
async fn settle(target: &Target) -> Option<Usage> {
    let client = target.http_client();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let open = async {
            let text = client
                .get(target.http("/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.lines()
                .find(|l| {
                    l.starts_with("ws_connections ") || l.starts_with("taskflow_ws_connections ")
                })
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        }
        .await;
        if open == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    target.sample()
}
