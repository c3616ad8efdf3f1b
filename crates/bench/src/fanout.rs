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
use crate::join::{self, Patience};
use crate::payload::Payload;
use crate::setup::{self, BenchUser, Setup};
use crate::stats::{Percentiles, Recorder, Spans};
use crate::target::{Target, Usage};
use crate::timeline::{Rates, Timeline};
use crate::wire::Wire;
use crate::{progress, BenchError};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    /// How long a subscriber refused with 503 and `Retry-After` keeps following it (zero: it
    /// fails at the first refusal).
    pub retry_for: Duration,
    /// What the published tasks carry.
    pub payload: Payload,
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
    /// Those failures by reason (see [`join::failure_reason`]).
    #[serde(default)]
    pub failures: BTreeMap<String, u64>,
    /// Subscribers that got in after following one or more 503s with `Retry-After` (not
    /// failures: they took part).
    #[serde(default)]
    pub delayed: u64,
    /// Those by the reason of the first refusal they followed (`server_full`, `overloaded`,
    /// `user_full`, `shutting_down`, ...).
    #[serde(default)]
    pub delays: BTreeMap<String, u64>,
    /// Events published by this process (answered 201), end markers included.
    pub published: u64,
    /// Publish requests refused or failed.
    pub publish_errors: u64,
    /// What the subscribers received against what they should have.
    #[serde(flatten)]
    pub totals: Completeness,
    /// Subscribers whose connection the server closed (slow consumer, ...) during the run.
    pub disconnected: u64,
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
    /// Subscribers the server agreed to send compressed frames (permessage-deflate).
    #[serde(default)]
    pub compressed_subscribers: u64,
    /// Bytes the subscribers read from their sockets after the handshake (frames as they
    /// travelled, headers included).
    #[serde(default)]
    pub wire_bytes: u64,
    /// `wire_bytes` per delivered message: what one delivery costs on the wire.
    #[serde(default)]
    pub wire_bytes_per_delivery: Option<f64>,
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
pub(crate) struct Tally {
    /// The room's offset when the subscription started.
    pub(crate) start: i64,
    /// The last offset received.
    pub(crate) last: i64,
    pub(crate) delivered: u64,
    pub(crate) duplicates: u64,
    pub(crate) out_of_order: u64,
    /// The end marker's offset, once seen.
    pub(crate) end: Option<i64>,
    pub(crate) disconnected: bool,
}

impl Tally {
    /// A subscriber whose stream starts after `start`.
    pub(crate) fn new(start: i64) -> Self {
        Self {
            start,
            last: start,
            ..Self::default()
        }
    }

    /// Counts the event at `offset`: `true` when it is the first copy of one after the last
    /// received (delivered), `false` when it is seen already or older than the newest seen
    /// (counted as a duplicate or out of order) or from before the subscription (ignored).
    pub(crate) fn take(&mut self, offset: i64) -> bool {
        if offset == self.last || (offset < self.last && offset > self.start) {
            if offset == self.last {
                self.duplicates += 1;
            } else {
                self.out_of_order += 1;
            }
            return false;
        }
        if offset <= self.start {
            return false;
        }
        self.last = offset;
        self.delivered += 1;
        true
    }
}

/// What the subscribers received against what they should have (in a report, these fields
/// stand beside the others).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completeness {
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
    /// Subscribers that never saw their room's end marker, nor did any other of their room
    /// (their `expected` is unknown and counted as what they received).
    pub incomplete: u64,
}

impl Completeness {
    /// Adds another process's totals (`taskflow bench merge`).
    pub fn add(&mut self, other: &Completeness) {
        self.expected += other.expected;
        self.delivered += other.delivered;
        self.lost += other.lost;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.incomplete += other.incomplete;
    }
}

/// Adds up `tallies` (each with its room index, of `rooms`). A subscriber that missed its marker
/// still has a known end if another one of its room saw it: the marker's offset is the room's.
pub(crate) fn account<'a>(
    tallies: impl Iterator<Item = (usize, &'a Tally)> + Clone,
    rooms: usize,
) -> Completeness {
    let mut room_end = vec![None; rooms];
    for (room, tally) in tallies.clone() {
        if tally.end.is_some() {
            room_end[room] = tally.end;
        }
    }
    let mut total = Completeness::default();
    for (room, tally) in tallies {
        total.delivered += tally.delivered;
        total.duplicates += tally.duplicates;
        total.out_of_order += tally.out_of_order;
        match tally.end.or(room_end[room]) {
            Some(end) => total.expected += (end - tally.start).max(0) as u64,
            None => {
                total.incomplete += 1;
                total.expected += tally.delivered;
            }
        }
    }
    total.lost = total.expected.saturating_sub(total.delivered);
    total
}

/// The projects and users of a run: rooms `bench-<run>-<r>`, each with its own subscribing users
/// (members of that room only; subscriber `i` is in room `i % rooms`), and publishers that are
/// members of every room.
pub(crate) struct Cast {
    pub(crate) run: String,
    pub(crate) rooms: Vec<String>,
    /// Per room, the users its subscribers connect as ([`setup::user_of`]).
    pub(crate) users: Vec<Vec<BenchUser>>,
    pub(crate) publishers: Vec<BenchUser>,
}

impl Cast {
    /// Creates (or, for a shared `run`, finds) the projects and mints the users.
    pub(crate) async fn new(
        target: &Target,
        run: Option<String>,
        rooms: usize,
        subscribers: usize,
        publishers: usize,
        part: u32,
    ) -> Result<Self, BenchError> {
        let setup = Setup::new(target);
        let run = run.unwrap_or_else(|| format!("{}", now_nanos() % 1_000_000_000));
        let rooms: Vec<String> = (0..rooms.max(1))
            .map(|r| format!("bench-{run}-{r}"))
            .collect();
        for room in &rooms {
            setup.project(room).await?;
        }
        let mut users: Vec<Vec<BenchUser>> = Vec::new();
        for (r, room) in rooms.iter().enumerate() {
            let in_room = (subscribers + rooms.len() - 1 - r) / rooms.len();
            let prefix = format!("bench-{run}-{part}-r{r}");
            users.push(setup::users_for(&setup, &prefix, in_room, Some(room)).await?);
        }
        let mut cast_publishers = Vec::new();
        for p in 0..publishers {
            let user = setup.user(&format!("bench-{run}-{part}-pub{p}")).await?;
            for room in &rooms {
                setup.member(room, &user.id).await?;
            }
            cast_publishers.push(user);
        }
        Ok(Self {
            run,
            rooms,
            users,
            publishers: cast_publishers,
        })
    }

    /// Subscriber `i`'s room index and user.
    pub(crate) fn subscriber(&self, i: usize) -> (usize, &BenchUser) {
        let room = i % self.rooms.len();
        (
            room,
            setup::user_of(&self.users[room], i / self.rooms.len()),
        )
    }
}

/// Shared by every subscriber task.
struct Counters {
    delivered: AtomicU64,
    /// Bytes read by the subscribers that ended, and how many of them negotiated compression.
    wire_bytes: AtomicU64,
    compressed: AtomicU64,
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
    let cast = Cast::new(
        target,
        plan.run.clone(),
        plan.rooms,
        plan.subscribers,
        plan.publishers,
        plan.part,
    )
    .await?;

    // Subscribing, publishing and the longest drain: a few thousand small buckets at most.
    let span = plan.duration * 2 + plan.grace * 10 + Duration::from_secs(300);
    let counters = Arc::new(Counters {
        delivered: AtomicU64::new(0),
        wire_bytes: AtomicU64::new(0),
        compressed: AtomicU64::new(0),
        ended: AtomicUsize::new(0),
        first_nanos: AtomicU64::new(0),
        last_nanos: AtomicU64::new(0),
        base: Instant::now(),
        latencies: Recorder::new(16),
        spans: (plan.rate > 0).then(|| Spans::new(16)),
        timeline: Timeline::new(Instant::now(), span),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (readers, failed, delays) = subscribe_all(target, plan, &cast, &counters, &stop_rx).await?;

    let before = target.sample();
    let (published, publish_errors) = if cast.publishers.is_empty() {
        (0, 0)
    } else {
        let pace = Pace {
            rate: plan.rate,
            until: Until::Elapsed(plan.duration),
            payload: plan.payload,
        };
        publish_apart(
            target.clone(),
            pace,
            cast.rooms.clone(),
            cast.publishers.clone(),
        )
        .await
    };
    // Publishers of this process end with the markers; a subscribers-only process waits for
    // another's for as long as it publishes.
    let deadline = Instant::now()
        + if plan.publishers == 0 {
            plan.duration + plan.grace
        } else {
            plan.grace * 10
        };
    wait_for_ends(
        &counters.ended,
        &counters.delivered,
        readers.len(),
        plan.grace,
        deadline,
    )
    .await;
    let after = target.sample();
    let _ = stop_tx.send(true);

    let mut tallies = Vec::with_capacity(readers.len());
    for (room, reader) in readers {
        if let Ok(tally) = reader.await {
            tallies.push((room, tally));
        }
    }
    let mut report = FanoutReport {
        run: cast.run,
        subscribers: tallies.len(),
        failed_connections: failed.len() as u64,
        delayed: delays.values().sum(),
        delays,
        published,
        publish_errors,
        totals: account(tallies.iter().map(|(room, t)| (*room, t)), cast.rooms.len()),
        disconnected: tallies.iter().filter(|(_, t)| t.disconnected).count() as u64,
        ..FanoutReport::default()
    };
    for err in &failed {
        *report
            .failures
            .entry(join::failure_reason(err).to_owned())
            .or_default() += 1;
    }
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
    report.delivered_per_sec = report.totals.delivered as f64 / window;
    report.events_per_sec_per_subscriber =
        report.delivered_per_sec / report.subscribers.max(1) as f64;
    report.rates = counters.timeline.rates();
    let cpu = before.zip(after).map(|(b, a)| a.cpu_secs - b.cpu_secs);
    report.server_cpu_secs = cpu;
    report.server_cpu_us_per_delivery = cpu
        .filter(|_| report.totals.delivered > 0)
        .map(|c| c * 1e6 / report.totals.delivered as f64);
    report.server_before = before;
    report.server_after = after;
    report.compressed_subscribers = counters.compressed.load(Ordering::Relaxed);
    report.wire_bytes = counters.wire_bytes.load(Ordering::Relaxed);
    report.wire_bytes_per_delivery = per_delivery(report.wire_bytes, report.totals.delivered);
    Ok(report)
}

/// Bytes per delivered message, once anything was delivered.
pub(crate) fn per_delivery(bytes: u64, delivered: u64) -> Option<f64> {
    (delivered > 0).then(|| bytes as f64 / delivered as f64)
}

/// Connects and subscribes every subscriber, and starts reading each one as soon as it is
/// subscribed (a socket left unread would not answer the server's pings): the readers, the
/// errors of those that could not connect or subscribe (fatal past `max_failed`), and the
/// delayed ones by the reason of the first 503 they followed.
async fn subscribe_all(
    target: &Target,
    plan: &FanoutPlan,
    cast: &Cast,
    counters: &Arc<Counters>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<(Readers, Vec<String>, BTreeMap<String, u64>), BenchError> {
    let dialer = Arc::new(Dialer::new(target, plan.sources));
    let patience = Patience {
        retry_for: plan.retry_for,
        errors: false,
    };
    let bar = progress::counter("subscribing", plan.subscribers as u64);
    let mut opened = futures::stream::iter(0..plan.subscribers)
        .map(|i| {
            let (room, user) = cast.subscriber(i);
            let token = user.token.clone();
            let (dialer, target) = (dialer.clone(), target.clone());
            let name = format!("project:{}", cast.rooms[room]);
            let (counters, stop) = (counters.clone(), stop.clone());
            async move {
                let joined = join::join(&dialer, &target, &token, &name, None, &patience).await?;
                let start = joined.subscribed.offset;
                let reader = tokio::spawn(read((i, room), start, joined.wire, counters, stop));
                Ok::<_, String>((room, reader, joined.delayed_by))
            }
        })
        .buffer_unordered(plan.concurrency.max(1));
    let mut readers = Vec::with_capacity(plan.subscribers);
    let mut failures = Vec::new();
    let mut delays = BTreeMap::new();
    while let Some(result) = opened.next().await {
        bar.inc(1);
        match result {
            Ok((room, reader, delayed_by)) => {
                if let Some(reason) = delayed_by {
                    *delays.entry(reason).or_default() += 1;
                }
                readers.push((room, reader));
            }
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
    Ok((readers, failures, delays))
}

/// One subscriber (`i`, in room index `room`): counts what arrives until told to stop.
async fn read(
    (i, room): (usize, usize),
    start: i64,
    mut socket: Wire,
    counters: Arc<Counters>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Tally {
    let mut tally = Tally::new(start);
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
        if !tally.take(event.offset) {
            continue;
        }
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
    counters
        .wire_bytes
        .fetch_add(socket.bytes_read(), Ordering::Relaxed);
    counters
        .compressed
        .fetch_add(u64::from(socket.compressed()), Ordering::Relaxed);
    tally
}

/// How fast publishers go, and for how long.
#[derive(Debug, Clone)]
pub(crate) struct Pace {
    /// Events per second over all publishers; 0: as fast as the server accepts.
    pub(crate) rate: u32,
    /// When they stop.
    pub(crate) until: Until,
    /// What each task carries.
    pub(crate) payload: Payload,
}

/// When publishing stops.
#[derive(Debug, Clone)]
pub(crate) enum Until {
    /// After this long (a fan-out run).
    Elapsed(Duration),
    /// Once this is set (a storm: publishing goes on through it, however long it takes).
    Told(Arc<AtomicBool>),
}

impl Until {
    fn reached(&self, start: Instant) -> bool {
        match self {
            Until::Elapsed(duration) => start.elapsed() >= *duration,
            Until::Told(stop) => stop.load(Ordering::Relaxed),
        }
    }
}

/// Runs [`publish`] on a thread and runtime of its own. On the subscribers' runtime a publisher
/// woken by its timer would queue behind every reader with a frame to take, so the send time it
/// writes would be taken late, the request sent later still, and the bench's own backlog would
/// count as the server's latency; a thread of its own is scheduled by the OS as soon as it wakes.
pub(crate) async fn publish_apart(
    target: Target,
    pace: Pace,
    rooms: Vec<String>,
    publishers: Vec<BenchUser>,
) -> (u64, u64) {
    let (done, result) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("bench-publish".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the publishers");
            let counts = runtime.block_on(publish(&target, &pace, &rooms, &publishers));
            let _ = done.send(counts);
        })
        .expect("a thread for the publishers");
    let counts = result.await.expect("the publishers' thread answers");
    let _ = thread.join();
    counts
}

/// Publishes at the planned rate until told or for the planned time, then an end marker in
/// every room. Returns (published, errors).
async fn publish(
    target: &Target,
    pace: &Pace,
    rooms: &[String],
    publishers: &[BenchUser],
) -> (u64, u64) {
    let published = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let n = publishers.len();
    let bar = match pace.until {
        Until::Elapsed(duration) => progress::clock("publishing", duration),
        // A storm has bars of its own.
        Until::Told(_) => indicatif::ProgressBar::hidden(),
    };
    let tasks: Vec<_> = publishers
        .iter()
        .enumerate()
        .map(|(p, user)| {
            let (target, rooms, user) = (target.clone(), rooms.to_vec(), user.clone());
            let (published, errors, until, rate, payload) = (
                published.clone(),
                errors.clone(),
                pace.until.clone(),
                pace.rate,
                pace.payload,
            );
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
                while !until.reached(start) {
                    if let Some(tick) = tick.as_mut() {
                        tick.tick().await;
                    }
                    let room = &rooms[k % rooms.len()];
                    let body = payload.task(&frame::sent_title(now_nanos()), room, k as u64);
                    k += n;
                    match create(&client, &target, &user, &body).await {
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
        let end = Payload::Minimal.task(frame::END_TITLE, room, 0);
        if create(&client, target, &publishers[0], &end).await {
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

async fn create(client: &reqwest::Client, target: &Target, user: &BenchUser, body: &Value) -> bool {
    let res = client
        .post(target.http("/tasks"))
        .bearer_auth(&user.token)
        .json(body)
        .send()
        .await;
    matches!(res, Ok(ref r) if r.status().as_u16() == 201)
}

/// Waits until every one of `subscribers` has seen its end marker (`ended`), or nothing has been
/// `delivered` for `grace` since deliveries began, or `deadline` is reached.
pub(crate) async fn wait_for_ends(
    ended: &AtomicUsize,
    delivered: &AtomicU64,
    subscribers: usize,
    grace: Duration,
    deadline: Instant,
) {
    if subscribers == 0 {
        return;
    }
    let bar = progress::counter("draining", subscribers as u64);
    let mut last = (delivered.load(Ordering::Relaxed), Instant::now());
    loop {
        let ended = ended.load(Ordering::Relaxed);
        bar.set_position(ended as u64);
        if ended >= subscribers || Instant::now() >= deadline {
            break;
        }
        let now = delivered.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        } else if now > 0 && last.1.elapsed() > grace {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bar.finish_and_clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_each_offset_once_in_order() {
        let mut tally = Tally::new(10);
        assert!(!tally.take(9), "before the subscription");
        assert!(tally.take(11));
        assert!(!tally.take(11), "a duplicate");
        assert!(
            tally.take(13),
            "a gap is not seen here: the end marker tells"
        );
        assert!(!tally.take(12), "late");
        assert_eq!(
            (tally.delivered, tally.duplicates, tally.out_of_order),
            (2, 1, 1)
        );
    }

    #[test]
    fn completeness_takes_a_rooms_end_from_any_subscriber_that_saw_it() {
        let mut saw = Tally::new(0);
        for offset in 1..=5 {
            saw.take(offset);
        }
        saw.end = Some(5);
        let mut missed = Tally::new(2);
        missed.take(3);
        let other_room = Tally::new(0);
        let tallies = [(0, saw), (0, missed), (1, other_room)];
        let total = account(tallies.iter().map(|(r, t)| (*r, t)), 2);
        assert_eq!(total.expected, 5 + 3);
        assert_eq!(total.delivered, 6);
        assert_eq!(total.lost, 2);
        assert_eq!(total.incomplete, 1, "nobody in room 1 saw its marker");
    }
}
