//! `taskflow bench fanout`: subscribers spread over rooms, publishers creating tasks through the
//! REST API at a fixed rate (or as fast as the server accepts them); every subscriber measures
//! each event's end-to-end latency from the send time the publisher put in the task's title,
//! and checks order and completeness against the offsets.
//!
//! Completeness does not depend on timing: when publishing ends, the publisher logs one more
//! task titled `bench-end` in every room. A subscriber that sees it knows the last offset of its
//! room, so what it should have received is exactly the offsets between its subscription and
//! that marker. Several bench processes can share a run (`--run`): the ones with
//! `--publishers 0` only subscribe and wait for the markers.

use crate::dial::Dialer;
use crate::frame::{self, Mark};
use crate::setup::{self, BenchUser, Setup};
use crate::stats::{Percentiles, Recorder, Spans};
use crate::target::{Target, Usage};
use crate::timeline::{Rates, Timeline};
use crate::wire::Wire;
use crate::{progress, BenchError};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What to do.
#[derive(Debug, Clone)]
pub struct FanoutPlan {
    /// Subscribing connections (0: this process only publishes).
    pub subscribers: usize,
    /// Rooms they are spread over (1 is the worst case: every event to every subscriber).
    pub rooms: usize,
    /// Events per second over all rooms; 0 publishes as fast as the server accepts.
    pub rate: u32,
    /// How long to publish.
    pub duration: Duration,
    /// Concurrent publishers (0: this process only subscribes).
    pub publishers: usize,
    /// Source addresses for the subscribers.
    pub sources: u8,
    /// The run's name, shared by the processes of one run; generated if absent.
    pub run: Option<String>,
    /// This process's part of the run (keeps user names apart).
    pub part: u32,
    /// How long to wait for the last deliveries after publishing.
    pub grace: Duration,
    /// Handshakes in flight at most.
    pub concurrency: usize,
    /// More subscribers than this failing to connect or subscribe ends the run with an error;
    /// `None`: failures are only counted (`failed_connections`, `failures`).
    pub max_failed: Option<usize>,
}

/// What happened.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FanoutReport {
    /// The run's name (pass it as `--run` to other processes of the same run).
    pub run: String,
    /// Subscribers that took part.
    pub subscribers: usize,
    /// Subscribers that could not connect or subscribe (and took no part).
    #[serde(default)]
    pub failed_connections: u64,
    /// Those failures by reason (see [`failure_reason`]).
    #[serde(default)]
    pub failures: std::collections::BTreeMap<String, u64>,
    /// Events published by this process (answered 201), end markers included.
    pub published: u64,
    /// Publish requests refused or failed.
    pub publish_errors: u64,
    /// Deliveries expected: for each subscriber, the offsets between its subscription and its
    /// room's end marker.
    pub expected: u64,
    /// Deliveries received (first copies).
    pub delivered: u64,
    /// Expected deliveries that never came.
    pub lost: u64,
    /// Deliveries received twice.
    pub duplicates: u64,
    /// Deliveries that came after a later offset.
    pub out_of_order: u64,
    /// Subscribers whose connection the server closed (slow consumer, ...) during the run.
    pub disconnected: u64,
    /// Subscribers that never saw their room's end marker (their `expected` is unknown and
    /// counted as what they received).
    pub incomplete: u64,
    /// Publish-to-receive latency.
    pub latency: Percentiles,
    /// Per event, the latency of its first copy: the way through REST, commit and dispatch.
    /// Paced runs (`--rate` > 0) only; in a merged report, over each process's own copies.
    #[serde(default)]
    pub first_copy: Percentiles,
    /// Per event, the time from its first copy to its last: how long the server takes to get one
    /// event to every subscriber. Paced runs only, like `first_copy`.
    #[serde(default)]
    pub spread: Percentiles,
    /// Deliveries per second, from the first delivery to the last.
    pub delivered_per_sec: f64,
    /// Events per second each subscriber received, on average.
    pub events_per_sec_per_subscriber: f64,
    /// Deliveries per second over time.
    pub rates: Rates,
    /// Server CPU seconds used while publishing and draining.
    pub server_cpu_secs: Option<f64>,
    /// Server CPU per delivered message, microseconds.
    pub server_cpu_us_per_delivery: Option<f64>,
    /// The server before publishing.
    pub server_before: Option<Usage>,
    /// The server at the end.
    pub server_after: Option<Usage>,
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// The subscribers' reading tasks, with their room index.
type Readers = Vec<(usize, tokio::task::JoinHandle<Tally>)>;

/// One subscriber's tally.
#[derive(Debug, Default)]
struct Tally {
    /// The room's offset when the subscription started.
    start: i64,
    /// The last offset received.
    last: i64,
    delivered: u64,
    duplicates: u64,
    out_of_order: u64,
    /// The end marker's offset, once seen.
    end: Option<i64>,
    disconnected: bool,
}

/// Shared by every subscriber task.
struct Counters {
    delivered: AtomicU64,
    ended: AtomicUsize,
    first_nanos: AtomicU64,
    last_nanos: AtomicU64,
    base: Instant,
    latencies: Recorder,
    /// First and last copy of each event; `None` at saturation, where the table would grow by
    /// every event and cost the bench more than it tells.
    spans: Option<Spans>,
    timeline: Timeline,
}

impl Counters {
    fn delivery(&self, now: Instant) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let t = now.duration_since(self.base).as_nanos() as u64;
        let _ = self
            .first_nanos
            .compare_exchange(0, t, Ordering::Relaxed, Ordering::Relaxed);
        self.last_nanos.fetch_max(t, Ordering::Relaxed);
        self.timeline.record(now);
    }
}

/// Runs the plan.
pub async fn run(target: &Target, plan: &FanoutPlan) -> Result<FanoutReport, BenchError> {
    let setup = Setup::new(target);
    let run = plan
        .run
        .clone()
        .unwrap_or_else(|| format!("{}", now_nanos() % 1_000_000_000));
    let rooms: Vec<String> = (0..plan.rooms.max(1))
        .map(|r| format!("bench-{run}-{r}"))
        .collect();
    for room in &rooms {
        setup.project(room).await?;
    }
    // Subscriber i is in room i % rooms; each room has its own users, members of that room only.
    let mut users: Vec<Vec<BenchUser>> = Vec::new();
    for (r, room) in rooms.iter().enumerate() {
        let in_room = (plan.subscribers + rooms.len() - 1 - r) / rooms.len();
        let prefix = format!("bench-{run}-{}-r{r}", plan.part);
        users.push(setup::users_for(&setup, &prefix, in_room, Some(room)).await?);
    }
    let mut publishers = Vec::new();
    for p in 0..plan.publishers {
        let user = setup
            .user(&format!("bench-{run}-{}-pub{p}", plan.part))
            .await?;
        for room in &rooms {
            setup.member(room, &user.id).await?;
        }
        publishers.push(user);
    }

    // Subscribing, publishing and the longest drain: a few thousand small buckets at most.
    let span = plan.duration * 2 + plan.grace * 10 + Duration::from_secs(300);
    let counters = Arc::new(Counters {
        delivered: AtomicU64::new(0),
        ended: AtomicUsize::new(0),
        first_nanos: AtomicU64::new(0),
        last_nanos: AtomicU64::new(0),
        base: Instant::now(),
        latencies: Recorder::new(16),
        spans: (plan.rate > 0).then(|| Spans::new(16)),
        timeline: Timeline::new(Instant::now(), span),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (readers, failed) =
        subscribe_all(target, plan, &rooms, &users, &counters, &stop_rx).await?;

    let before = target.sample();
    let (published, publish_errors) = if publishers.is_empty() {
        (0, 0)
    } else {
        publish_apart(target, plan, &rooms, &publishers).await
    };
    wait_for_ends(plan, &counters, readers.len()).await;
    let after = target.sample();
    let _ = stop_tx.send(true);

    let mut tallies = Vec::with_capacity(readers.len());
    for (room, reader) in readers {
        if let Ok(tally) = reader.await {
            tallies.push((room, tally));
        }
    }
    // A subscriber that missed its marker still has a known end if another one of its room saw
    // it: the marker's offset is the room's.
    let mut room_end = vec![None; rooms.len()];
    for (room, tally) in &tallies {
        if tally.end.is_some() {
            room_end[*room] = tally.end;
        }
    }
    let mut report = FanoutReport {
        run,
        subscribers: tallies.len(),
        failed_connections: failed.len() as u64,
        published,
        publish_errors,
        ..FanoutReport::default()
    };
    for (room, tally) in &tallies {
        report.delivered += tally.delivered;
        report.duplicates += tally.duplicates;
        report.out_of_order += tally.out_of_order;
        report.disconnected += u64::from(tally.disconnected);
        match tally.end.or(room_end[*room]) {
            Some(end) => report.expected += (end - tally.start).max(0) as u64,
            None => {
                report.incomplete += 1;
                report.expected += tally.delivered;
            }
        }
    }
    for err in &failed {
        *report
            .failures
            .entry(failure_reason(err).to_owned())
            .or_default() += 1;
    }
    report.lost = report.expected.saturating_sub(report.delivered);
    report.latency = Percentiles::of(&counters.latencies.merged());
    if let Some(spans) = &counters.spans {
        let (first_copy, spread) = spans.summarize();
        (report.first_copy, report.spread) =
            (Percentiles::of(&first_copy), Percentiles::of(&spread));
    }
    let window = Duration::from_nanos(
        counters
            .last_nanos
            .load(Ordering::Relaxed)
            .saturating_sub(counters.first_nanos.load(Ordering::Relaxed)),
    )
    .as_secs_f64()
    .max(1e-3);
    report.delivered_per_sec = report.delivered as f64 / window;
    report.events_per_sec_per_subscriber =
        report.delivered_per_sec / report.subscribers.max(1) as f64;
    report.rates = counters.timeline.rates();
    let cpu = before.zip(after).map(|(b, a)| a.cpu_secs - b.cpu_secs);
    report.server_cpu_secs = cpu;
    report.server_cpu_us_per_delivery = cpu
        .filter(|_| report.delivered > 0)
        .map(|c| c * 1e6 / report.delivered as f64);
    report.server_before = before;
    report.server_after = after;
    Ok(report)
}

/// Connects and subscribes every subscriber, and starts reading each one as soon as it is
/// subscribed (a socket left unread would not answer the server's pings): the readers, and the
/// errors of those that could not connect or subscribe (fatal past `max_failed`).
async fn subscribe_all(
    target: &Target,
    plan: &FanoutPlan,
    rooms: &[String],
    users: &[Vec<BenchUser>],
    counters: &Arc<Counters>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<(Readers, Vec<String>), BenchError> {
    let dialer = Arc::new(Dialer::new(target, plan.sources));
    let bar = progress::counter("subscribing", plan.subscribers as u64);
    let mut opened = futures::stream::iter(0..plan.subscribers)
        .map(|i| {
            let room = i % rooms.len();
            let user = setup::user_of(&users[room], i / rooms.len()).clone();
            let (dialer, target, name) = (dialer.clone(), target.clone(), rooms[room].clone());
            let (counters, stop) = (counters.clone(), stop.clone());
            async move {
                let tcp = dialer.dial(&target).await?;
                let mut socket = Wire::open(tcp, &target, &user.token).await?;
                let start = subscribe(&mut socket, &format!("project:{name}")).await?;
                let reader = tokio::spawn(read((i, room), start, socket, counters, stop));
                Ok::<_, String>((room, reader))
            }
        })
        .buffer_unordered(plan.concurrency.max(1));
    let mut readers = Vec::with_capacity(plan.subscribers);
    let mut failures = Vec::new();
    while let Some(result) = opened.next().await {
        bar.inc(1);
        match result {
            Ok(s) => readers.push(s),
            Err(err) => failures.push(err),
        }
    }
    bar.finish_and_clear();
    if let Some(first) = failures.first() {
        if plan.max_failed.is_some_and(|max| failures.len() > max) {
            return Err(BenchError::Connect {
                failed: failures.len(),
                wanted: plan.subscribers,
                first: first.clone(),
            });
        }
        eprintln!(
            "{} of {} subscribers failed to connect or subscribe (counted in the report); first: {first}",
            failures.len(),
            plan.subscribers
        );
    }
    Ok((readers, failures))
}

/// A failed subscriber's error as a stable reason, for the report's `failures`.
pub fn failure_reason(err: &str) -> &'static str {
    if err.starts_with("handshake timed out") {
        "handshake_timeout"
    } else if err.starts_with("upgrade refused: 503") {
        "refused_503"
    } else if err.starts_with("upgrade refused") {
        "refused"
    } else if err.starts_with("no answer to subscribe within") {
        "subscribe_timeout"
    } else if err.starts_with("no answer to subscribe") {
        "closed_before_subscribed"
    } else if err.starts_with("subscribe refused") {
        "subscribe_refused"
    } else if err.starts_with("TLS handshake") {
        "tls_handshake"
    } else if err == "no hello" {
        "no_hello"
    } else {
        "connect_error"
    }
}

/// Subscribes to `room`; returns the offset the live stream starts after.
async fn subscribe(socket: &mut Wire, room: &str) -> Result<i64, String> {
    let command = json!({ "type": "subscribe", "room": room, "id": "s" });
    socket.send_text(&command.to_string()).await?;
    loop {
        let text = match tokio::time::timeout(Duration::from_secs(30), socket.next_text()).await {
            Ok(Ok(Some(text))) => text,
            Ok(Err(err)) => return Err(format!("subscribe: {err}")),
            Ok(Ok(None)) => return Err(format!("no answer to subscribe: {}", socket.ending())),
            Err(_) => return Err("no answer to subscribe within 30 s".into()),
        };
        let value: serde_json::Value = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
        if value["type"] != "reply" || value["id"] != "s" {
            continue;
        }
        return match value["result"]["offset"].as_i64() {
            Some(offset) if value["ok"] == true => Ok(offset),
            _ => Err(format!(
                "subscribe refused: {}",
                String::from_utf8_lossy(&text)
            )),
        };
    }
}

/// One subscriber (`i`, in room index `room`): counts what arrives until told to stop.
async fn read(
    (i, room): (usize, usize),
    start: i64,
    mut socket: Wire,
    counters: Arc<Counters>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Tally {
    let mut tally = Tally {
        start,
        last: start,
        ..Tally::default()
    };
    // One wait for the stop signal for the whole run, not one per frame.
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        let message = tokio::select! {
            biased;
            message = socket.next_text() => message,
            _ = &mut stopped => break,
        };
        let text = match message {
            Ok(Some(text)) => text,
            Ok(None) | Err(_) => {
                tally.disconnected = true;
                break;
            }
        };
        let Some(event) = frame::view(&text) else {
            continue;
        };
        let now = Instant::now();
        if event.offset == tally.last || (event.offset < tally.last && event.offset > start) {
            // Seen already, or older than the newest seen: either way a problem.
            if event.offset == tally.last {
                tally.duplicates += 1;
            } else {
                tally.out_of_order += 1;
            }
            continue;
        }
        if event.offset <= start {
            continue;
        }
        tally.last = event.offset;
        tally.delivered += 1;
        counters.delivery(now);
        match event.mark {
            Mark::Sent(sent) => {
                let latency = now_nanos().saturating_sub(sent).min(u64::MAX as u128) as u64;
                let latency = Duration::from_nanos(latency);
                counters.latencies.record(i, latency);
                if let Some(spans) = &counters.spans {
                    spans.record(i, room, event.offset, latency);
                }
            }
            Mark::End => {
                tally.end = Some(event.offset);
                counters.ended.fetch_add(1, Ordering::Relaxed);
            }
            Mark::Other => {}
        }
    }
    tally
}

/// Runs [`publish`] on a thread and runtime of its own. On the subscribers' runtime a publisher
/// woken by its timer would queue behind every reader with a frame to take, so the send time it
/// writes would be taken late, the request sent later still, and the bench's own backlog would
/// count as the server's latency; a thread of its own is scheduled by the OS as soon as it wakes.
async fn publish_apart(
    target: &Target,
    plan: &FanoutPlan,
    rooms: &[String],
    publishers: &[BenchUser],
) -> (u64, u64) {
    let (target, plan, rooms, publishers) = (
        target.clone(),
        plan.clone(),
        rooms.to_vec(),
        publishers.to_vec(),
    );
    let (done, result) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("bench-publish".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the publishers");
            let counts = runtime.block_on(publish(&target, &plan, &rooms, &publishers));
            let _ = done.send(counts);
        })
        .expect("a thread for the publishers");
    let counts = result.await.expect("the publishers' thread answers");
    let _ = thread.join();
    counts
}

/// Publishes at the planned rate for the planned time, then an end marker in every room.
/// Returns (published, errors).
async fn publish(
    target: &Target,
    plan: &FanoutPlan,
    rooms: &[String],
    publishers: &[BenchUser],
) -> (u64, u64) {
    let published = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let n = publishers.len();
    let bar = progress::clock("publishing", plan.duration);
    let tasks: Vec<_> = publishers
        .iter()
        .enumerate()
        .map(|(p, user)| {
            let (target, rooms, user) = (target.clone(), rooms.to_vec(), user.clone());
            let (published, errors, duration, rate) =
                (published.clone(), errors.clone(), plan.duration, plan.rate);
            tokio::spawn(async move {
                let client = target.http_client();
                let mut tick = (rate > 0).then(|| {
                    let interval = Duration::from_secs_f64(n as f64 / f64::from(rate));
                    let first = start + interval * p as u32 / n as u32;
                    let mut tick = tokio::time::interval_at(first.into(), interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    tick
                });
                let mut k = p;
                while start.elapsed() < duration {
                    if let Some(tick) = tick.as_mut() {
                        tick.tick().await;
                    }
                    let room = &rooms[k % rooms.len()];
                    k += n;
                    match create(
                        &client,
                        &target,
                        &user,
                        room,
                        &frame::sent_title(now_nanos()),
                    )
                    .await
                    {
                        true => published.fetch_add(1, Ordering::Relaxed),
                        false => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let ticker = {
        let (bar, published) = (bar.clone(), published.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                bar.set_position(start.elapsed().as_secs());
                bar.set_message(format!("{} published", published.load(Ordering::Relaxed)));
            }
        })
    };
    for task in tasks {
        let _ = task.await;
    }
    ticker.abort();
    bar.finish_and_clear();
    let client = target.http_client();
    for room in rooms {
        if create(&client, target, &publishers[0], room, frame::END_TITLE).await {
            published.fetch_add(1, Ordering::Relaxed);
        } else {
            errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    (
        published.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    )
}

async fn create(
    client: &reqwest::Client,
    target: &Target,
    user: &BenchUser,
    room: &str,
    title: &str,
) -> bool {
    let body = json!({ "title": title, "project_id": room });
    let res = client
        .post(target.http("/tasks"))
        .bearer_auth(&user.token)
        .json(&body)
        .send()
        .await;
    matches!(res, Ok(ref r) if r.status().as_u16() == 201)
}

/// Waits until every subscriber has seen its end marker, or nothing has arrived for `grace`
/// since deliveries began, or a bounded time is up.
async fn wait_for_ends(plan: &FanoutPlan, counters: &Counters, subscribers: usize) {
    if subscribers == 0 {
        return;
    }
    let deadline = Instant::now()
        + if plan.publishers == 0 {
            plan.duration + plan.grace
        } else {
            plan.grace * 10
        };
    let bar = progress::counter("draining", subscribers as u64);
    let mut last = (counters.delivered.load(Ordering::Relaxed), Instant::now());
    loop {
        let ended = counters.ended.load(Ordering::Relaxed);
        bar.set_position(ended as u64);
        if ended >= subscribers || Instant::now() >= deadline {
            break;
        }
        let delivered = counters.delivered.load(Ordering::Relaxed);
        if delivered != last.0 {
            last = (delivered, Instant::now());
        } else if delivered > 0 && last.1.elapsed() > plan.grace {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bar.finish_and_clear();
}

#[cfg(test)]
mod tests {
    use super::failure_reason;

    #[test]
    fn every_subscriber_error_has_a_stable_reason() {
        for (err, reason) in [
            ("handshake timed out", "handshake_timeout"),
            ("upgrade refused: 503 Service Unavailable", "refused_503"),
            ("upgrade refused: 401 Unauthorized", "refused"),
            ("no answer to subscribe within 30 s", "subscribe_timeout"),
            (
                "no answer to subscribe: closed by the server with 1001 \"\"",
                "closed_before_subscribed",
            ),
            ("subscribe refused: {}", "subscribe_refused"),
            ("TLS handshake: invalid peer certificate", "tls_handshake"),
            ("no hello", "no_hello"),
            ("Connection refused (os error 111)", "connect_error"),
        ] {
            assert_eq!(failure_reason(err), reason, "{err}");
        }
    }
}
