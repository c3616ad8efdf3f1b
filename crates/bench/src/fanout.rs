//! `taskflow bench fanout`: subscribers spread over rooms, publishers creating tasks through the
//! REST API at a fixed rate; every subscriber measures each event's end-to-end latency from the
//! send time the publisher put in the task's title, and checks order and completeness.

use crate::dial::{Dialer, Socket};
use crate::stats::Percentiles;
use crate::target::{Target, Usage};
use crate::BenchError;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

/// What to do.
#[derive(Debug, Clone)]
pub struct FanoutPlan {
    /// Subscribing connections.
    pub subscribers: usize,
    /// Rooms they are spread over (1 is the worst case: every event to every subscriber).
    pub rooms: usize,
    /// Events per second, over all rooms.
    pub rate: u32,
    /// How long to publish.
    pub duration: Duration,
    /// Concurrent publishers.
    pub publishers: usize,
    /// Source addresses for the subscribers.
    pub sources: u8,
}

/// What happened.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    /// Events published (answered 201).
    pub published: u64,
    /// Deliveries expected: each event times the subscribers of its room.
    pub expected: u64,
    /// Deliveries received (first copies).
    pub delivered: u64,
    /// Expected deliveries that never came.
    pub lost: u64,
    /// Deliveries received twice.
    pub duplicates: u64,
    /// Deliveries that came after a later offset.
    pub out_of_order: u64,
    /// Publish-to-receive latency.
    pub latency: Percentiles,
    /// Deliveries per second over the publishing window.
    pub delivered_per_sec: f64,
    /// Server CPU seconds used during the run.
    pub server_cpu_secs: Option<f64>,
    /// Server CPU per delivered message, microseconds.
    pub server_cpu_us_per_delivery: Option<f64>,
    /// The server's resources at the end.
    pub server_after: Option<Usage>,
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// One subscriber's tally.
#[derive(Default)]
struct Tally {
    last: i64,
    delivered: u64,
    duplicates: u64,
    out_of_order: u64,
    latencies: Vec<Duration>,
}

/// Runs the plan.
pub async fn run(target: &Target, plan: &FanoutPlan) -> Result<FanoutReport, BenchError> {
    let client = reqwest::Client::new();
    let run_id = now_nanos() % 1_000_000_000;
    let rooms: Vec<String> = (0..plan.rooms.max(1))
        .map(|r| format!("bench-{run_id}-{r}"))
        .collect();
    for room in &rooms {
        let res = client
            .post(target.http("/projects"))
            .bearer_auth(&target.token)
            .json(&json!({ "id": room, "name": room }))
            .send()
            .await
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        if !res.status().is_success() {
            return Err(BenchError::Setup(format!(
                "creating project {room}: {}",
                res.status()
            )));
        }
    }
    // Subscribers, each in room i % rooms.
    let dialer = Arc::new(Dialer::new(target, plan.sources));
    let mut sockets: Vec<(usize, Socket)> = Vec::with_capacity(plan.subscribers);
    let mut opened = futures::stream::iter(0..plan.subscribers)
        .map(|i| {
            let (dialer, target) = (dialer.clone(), target.clone());
            async move { (i, dialer.connect(&target).await) }
        })
        .buffer_unordered(64);
    let mut failures = Vec::new();
    while let Some((i, result)) = opened.next().await {
        match result {
            Ok(socket) => sockets.push((i % rooms.len(), socket)),
            Err(err) => failures.push(err),
        }
    }
    if !failures.is_empty() {
        return Err(BenchError::Connect {
            failed: failures.len(),
            wanted: plan.subscribers,
            first: failures[0].clone(),
        });
    }
    let mut per_room = vec![0u64; rooms.len()];
    for (room, socket) in &mut sockets {
        per_room[*room] += 1;
        let command =
            json!({ "type": "subscribe", "room": format!("project:{}", rooms[*room]), "id": "s" });
        socket
            .send(Message::text(command.to_string()))
            .await
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) if text.contains(r#""id":"s""#) => break,
                Some(Ok(_)) => continue,
                _ => return Err(BenchError::Setup("a subscription failed".into())),
            }
        }
    }
    let delivered_total = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|(_, mut socket)| {
            let (delivered_total, mut stop) = (delivered_total.clone(), stop_rx.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                loop {
                    let message = tokio::select! {
                        message = socket.next() => message,
                        _ = stop.changed() => break,
                    };
                    let Some(Ok(Message::Text(text))) = message else {
                        if matches!(message, None | Some(Err(_))) {
                            break;
                        }
                        continue;
                    };
                    let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    if frame["type"] != "event" {
                        continue;
                    }
                    let offset = frame["offset"].as_i64().unwrap_or_default();
                    if offset == tally.last {
                        tally.duplicates += 1;
                        continue;
                    }
                    if offset < tally.last {
                        tally.out_of_order += 1;
                        continue;
                    }
                    tally.last = offset;
                    tally.delivered += 1;
                    delivered_total.fetch_add(1, Ordering::Relaxed);
                    let sent: u128 = frame["data"]["title"]
                        .as_str()
                        .and_then(|t| t.strip_prefix("bench "))
                        .and_then(|t| t.parse().ok())
                        .unwrap_or_default();
                    let latency = now_nanos().saturating_sub(sent).min(u64::MAX as u128) as u64;
                    tally.latencies.push(Duration::from_nanos(latency));
                }
                tally
            })
        })
        .collect();

    // Publish at the planned rate.
    let before = target.sample();
    let published: Arc<Vec<AtomicU64>> =
        Arc::new(rooms.iter().map(|_| AtomicU64::new(0)).collect());
    let start = Instant::now();
    let publishers = plan.publishers.max(1);
    let interval = Duration::from_secs_f64(publishers as f64 / f64::from(plan.rate.max(1)));
    let tasks: Vec<_> = (0..publishers)
        .map(|p| {
            let (client, target, rooms, published, duration) =
                (client.clone(), target.clone(), rooms.clone(), published.clone(), plan.duration);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval_at((start + interval * p as u32 / publishers as u32).into(), interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let mut n = p;
                while start.elapsed() < duration {
                    tick.tick().await;
                    let room = n % rooms.len();
                    n += publishers;
                    let body = json!({ "title": format!("bench {}", now_nanos()), "project_id": rooms[room] });
                    let res = client.post(target.http("/tasks")).bearer_auth(&target.token).json(&body).send().await;
                    if matches!(res, Ok(ref r) if r.status().as_u16() == 201) {
                        published[room].fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    let window = start.elapsed();
    let expected: u64 = published
        .iter()
        .zip(&per_room)
        .map(|(p, s)| p.load(Ordering::Relaxed) * s)
        .sum();
    // Let the last events arrive: until every expected delivery is in, or nothing has arrived
    // for two seconds (bounded either way).
    let mut last_seen = (delivered_total.load(Ordering::Relaxed), Instant::now());
    loop {
        let now = delivered_total.load(Ordering::Relaxed);
        if now >= expected {
            break;
        }
        if now != last_seen.0 {
            last_seen = (now, Instant::now());
        } else if last_seen.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = target.sample();
    let _ = stop_tx.send(true);
    let mut tally = Tally::default();
    for reader in readers {
        if let Ok(t) = reader.await {
            tally.delivered += t.delivered;
            tally.duplicates += t.duplicates;
            tally.out_of_order += t.out_of_order;
            tally.latencies.extend(t.latencies);
        }
    }
    let cpu = before.zip(after).map(|(b, a)| a.cpu_secs - b.cpu_secs);
    Ok(FanoutReport {
        published: published.iter().map(|p| p.load(Ordering::Relaxed)).sum(),
        expected,
        delivered: tally.delivered,
        lost: expected.saturating_sub(tally.delivered),
        duplicates: tally.duplicates,
        out_of_order: tally.out_of_order,
        latency: Percentiles::of(&mut tally.latencies),
        delivered_per_sec: tally.delivered as f64 / window.as_secs_f64().max(1e-9),
        server_cpu_secs: cpu,
        server_cpu_us_per_delivery: cpu
            .filter(|_| tally.delivered > 0)
            .map(|c| c * 1e6 / tally.delivered as f64),
        server_after: after,
    })
}
