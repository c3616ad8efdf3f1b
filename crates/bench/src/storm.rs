//! `taskflow bench storm`: every client of a node comes back at once. N clients over R rooms
//! connect and subscribe (the connect phase: itself a storm with `--ramp 0`); a publisher creates
//! tasks at `--rate` through the REST API and keeps at it through what follows. Then the storm:
//!
//! - `--mode reconnect`: every client drops its connection at the same moment (a network blip,
//!   a proxy restarting) and at once reconnects and resumes each room from the last offset it
//!   received (`subscribe` with `since`);
//! - `--mode drain --drain-pid PID`: the bench sends SIGTERM to that node; it closes its
//!   sessions with 1001, and their clients reconnect to the same address (with `--reuse-port`,
//!   the kernel hands the connection to a live node) and resume there.
//!
//! Times run from the storm's start (the drop, or the SIGTERM). A client is **subscribed** when
//! its resume is answered, and **caught up** once it has received every event of its room up to
//! the offset that answer names: the room's last event on the node that took it back, so
//! everything it missed has been replayed and what follows is live. That offset is at least the
//! room's last offset when the storm began, so "caught up" also means "has everything published
//! before the storm". A resume answered `recovered: false` replays nothing and counts as caught
//! up at once; it is counted (`recovered_false`) and its gap shows as `lost`.
//!
//! Whether nothing was lost does not depend on timing: as in the fan-out, the publisher ends with
//! a `bench-end` task in every room, and every client checks every offset from its first
//! subscription to that marker across all its connections (`lost`, `duplicates`, `out_of_order`
//! over the whole run).
//!
//! The server's side of the bill comes from its `/metrics` ([`metrics`]): database queries made
//! to admit or subscribe real-time connections, per connection opened, in each phase.
//!
//! Each client is one task holding one connection and a few numbers, so one bench process takes
//! about 19,000 clients within its 20,000 open files.

use crate::dial::Dialer;
use crate::fanout::{self, Cast, Pace, Tally, Until};
use crate::frame::{self, Mark};
use crate::join::{self, Joined, Patience};
use crate::metrics::{self, DbQueries};
use crate::payload::Payload;
use crate::stats::Percentiles;
use crate::target::{Target, Usage};
use crate::wire::Wire;
use crate::{progress, BenchError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What brings the clients back at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every client drops its connection and reconnects at once.
    Reconnect,
    /// The node(s) given by `--drain-pid` get SIGTERM; their clients reconnect.
    Drain,
}

/// What to do.
#[derive(Debug, Clone)]
pub struct StormPlan {
    /// Clients.
    pub clients: usize,
    /// Rooms they are spread over.
    pub rooms: usize,
    /// Events per second over all rooms, through the whole run; 0: as fast as the server takes.
    pub rate: u32,
    /// Concurrent publishers.
    pub publishers: usize,
    /// The storm.
    pub mode: Mode,
    /// The server processes to drain (`Mode::Drain`).
    pub drain_pids: Vec<u32>,
    /// Over how long the connect phase starts its clients (zero: all at once).
    pub ramp: Duration,
    /// Publishing before the storm.
    pub warmup: Duration,
    /// Publishing after every client is caught up, before the end markers.
    pub after: Duration,
    /// How long the storm may take: clients not caught up by then are reported as such.
    pub timeout: Duration,
    /// How long to wait for the last end markers once nothing arrives.
    pub grace: Duration,
    /// How long a client keeps trying to get in (following 503s, retrying errors).
    pub retry_for: Duration,
    /// Where to read the server's `/metrics` (empty: the target).
    pub metrics: Vec<SocketAddr>,
    /// Source addresses for the clients.
    pub sources: u8,
    /// The run's name; generated if absent.
    pub run: Option<String>,
    /// This process's part of the run (keeps user names apart).
    pub part: u32,
    /// More clients than this failing to get in (in either phase) ends the run with an error.
    pub max_failed: Option<usize>,
}

/// One phase: the connect phase, or the storm.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Phase {
    /// Clients that (re)connected in it: all in the connect phase; in the storm, those whose
    /// connection it ended.
    pub clients: u64,
    /// Seconds from the phase's start until the last of them was subscribed (in the connect
    /// phase: until the last one got in or gave up).
    pub subscribed_s: f64,
    /// Seconds from the phase's start until the last of them was caught up (of those that were).
    pub caught_up_s: f64,
    /// Per client, the time until its subscribe (resume) reply: in the connect phase from its own
    /// first attempt, in the storm from the storm's start.
    pub subscribed: Percentiles,
    /// Per client, the time until it was caught up, from the same start. In the connect phase
    /// nothing is published yet, so it is the time until subscribed.
    pub caught_up: Percentiles,
    /// Clients subscribed but not caught up when the storm's time (`--timeout`) was up.
    pub not_caught_up: u64,
    /// Resumes answered `recovered: false`.
    pub recovered_false: u64,
    /// Events the resumed clients had missed and received as the replay (offsets up to the one
    /// their resume reply named).
    pub replayed: u64,
    /// Clients that never got in (in the connect phase, also those whose connection was lost
    /// before the storm and could not resume).
    pub failed: u64,
    /// Those by reason (`join::failure_reason` of the last error).
    pub failures: BTreeMap<String, u64>,
    /// Clients that got in after following one or more 503s with `Retry-After`.
    pub delayed: u64,
    /// Those by the reason of the first refusal they followed.
    pub delays: BTreeMap<String, u64>,
    /// Errors tried again (not failures: the client got in or failed later), by reason.
    pub retried: BTreeMap<String, u64>,
    /// What the server's metrics say of the phase.
    pub db: DbQueries,
}

/// What happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StormReport {
    /// The run's name.
    pub run: String,
    /// The storm.
    pub mode: Mode,
    /// Clients.
    pub clients: usize,
    /// Rooms.
    pub rooms: usize,
    /// The connect phase.
    pub connect: Phase,
    /// The storm.
    pub storm: Phase,
    /// Database queries per (re)connection during the storm (`storm.db.per_connection`).
    pub db_queries_per_connection: Option<f64>,
    /// Clients that never got in, in either phase.
    pub failed_connections: u64,
    /// Clients delayed by 503s, in either phase.
    pub delayed: u64,
    /// Connections lost before the storm (each resumed, or counted in `connect.failed`).
    pub unplanned_reconnects: u64,
    /// Events published (answered 201), end markers included.
    pub published: u64,
    /// Publish requests refused or failed.
    pub publish_errors: u64,
    /// For each client connected at the end, what it received from its first subscription to
    /// its room's end marker, across all its connections, against what it should have.
    #[serde(flatten)]
    pub totals: fanout::Completeness,
    /// Server CPU seconds during the storm (with `--server-pid`).
    pub server_cpu_secs: Option<f64>,
    /// The server when the storm began.
    pub server_before: Option<Usage>,
    /// The server once it was over.
    pub server_after: Option<Usage>,
}

/// What every client task shares with the run.
struct Ctx {
    target: Target,
    dialer: Dialer,
    patience: Patience,
    mode: Mode,
    /// `None` until the storm starts, then when it started.
    storm: watch::Receiver<Option<Instant>>,
    stop: watch::Receiver<bool>,
    /// Clients done with the connect phase (in, or failed).
    joined: AtomicUsize,
    /// Clients connected or reconnecting (not failed).
    live: AtomicUsize,
    /// Clients whose connection the storm ended.
    affected: AtomicUsize,
    /// Of those, the ones not caught up (nor failed) yet.
    pending: AtomicUsize,
    /// Of those, the ones that could not get back in.
    storm_failed: AtomicUsize,
    /// Clients that saw their room's end marker.
    ended: AtomicUsize,
    delivered: AtomicU64,
}

/// One client's (re)connection in a phase.
struct Entry {
    subscribed: Duration,
    caught_up: Option<Duration>,
    recovered: bool,
    replayed: u64,
    delayed_by: Option<String>,
    retried: Vec<&'static str>,
}

impl Entry {
    fn of(joined: &Joined, subscribed: Duration, caught_up: bool) -> Self {
        Self {
            subscribed,
            caught_up: caught_up.then_some(subscribed),
            recovered: joined.subscribed.recovered,
            replayed: 0,
            delayed_by: joined.delayed_by.clone(),
            retried: joined.retried.clone(),
        }
    }
}

/// What a client task hands back.
struct ClientEnd {
    room: usize,
    /// Its deliveries, if it was connected at the end.
    tally: Option<Tally>,
    connect: Result<Entry, String>,
    /// Its last resume in the storm, if the storm ended its connection.
    storm: Option<Result<Entry, String>>,
    /// Connections lost before the storm.
    unplanned: u64,
    /// The error of a resume before the storm that did not get back in.
    lost_before: Option<String>,
}

/// Why a connection's reading ended.
enum Why {
    Stop,
    Storm,
    Lost,
}

/// One client between its connections.
struct Client {
    ctx: Arc<Ctx>,
    room: String,
    token: String,
    tally: Tally,
    epoch: String,
    /// While catching up after a storm resume: the offset to reach, and the storm's start.
    catching_up: Option<(i64, Instant)>,
    /// Whether this client is counted in `Ctx::pending`.
    counted: bool,
    end: ClientEnd,
}

impl Client {
    /// The client's life: the connect phase, then reading, resuming whenever its connection
    /// ends, until told to stop.
    async fn run(ctx: Arc<Ctx>, room: (usize, String), token: String, ramp: Duration) -> ClientEnd {
        tokio::time::sleep(ramp).await;
        let began = Instant::now();
        let joined = join::join(
            &ctx.dialer,
            &ctx.target,
            &token,
            &room.1,
            None,
            &ctx.patience,
        )
        .await;
        let joined = match joined {
            Ok(joined) => joined,
            Err(err) => {
                ctx.joined.fetch_add(1, Ordering::Relaxed);
                return ClientEnd {
                    room: room.0,
                    tally: None,
                    connect: Err(err),
                    storm: None,
                    unplanned: 0,
                    lost_before: None,
                };
            }
        };
        // Live before joined: once every client is joined, `live` is final.
        ctx.live.fetch_add(1, Ordering::Relaxed);
        ctx.joined.fetch_add(1, Ordering::Relaxed);
        let mut client = Client {
            ctx,
            room: room.1,
            token,
            tally: Tally::new(joined.subscribed.offset),
            epoch: joined.subscribed.epoch.clone(),
            catching_up: None,
            counted: false,
            end: ClientEnd {
                room: room.0,
                tally: None,
                connect: Ok(Entry::of(&joined, began.elapsed(), true)),
                storm: None,
                unplanned: 0,
                lost_before: None,
            },
        };
        let mut wire = joined.wire;
        let (mut storm, mut stop) = (client.ctx.storm.clone(), client.ctx.stop.clone());
        loop {
            let listen = client.ctx.mode == Mode::Reconnect && client.end.storm.is_none();
            let why = client.read(&mut wire, &mut storm, &mut stop, listen).await;
            // Dropped unread: a blip, as far as the server can tell (no closing handshake).
            drop(wire);
            if let Why::Stop = why {
                client.end.tally = Some(client.tally);
                return client.end;
            }
            let at = *storm.borrow();
            wire = match client.resume(at).await {
                Some(wire) => wire,
                None => {
                    client.ctx.live.fetch_sub(1, Ordering::Relaxed);
                    return client.end;
                }
            };
        }
    }

    /// Reads until told to stop, the storm (when `listen`), or the end of the connection.
    async fn read(
        &mut self,
        wire: &mut Wire,
        storm: &mut watch::Receiver<Option<Instant>>,
        stop: &mut watch::Receiver<bool>,
        listen: bool,
    ) -> Why {
        // One wait for each signal for the whole connection, not one per frame.
        let stopped = stop.wait_for(|stop| *stop);
        tokio::pin!(stopped);
        let storm = async {
            match listen {
                true => drop(storm.wait_for(Option::is_some).await),
                false => std::future::pending().await,
            }
        };
        tokio::pin!(storm);
        loop {
            let message = tokio::select! {
                biased;
                _ = &mut stopped => return Why::Stop,
                _ = &mut storm => return Why::Storm,
                message = wire.next_text() => message,
            };
            let Ok(Some(text)) = message else {
                return Why::Lost;
            };
            let Some(event) = frame::view(&text) else {
                continue;
            };
            if !self.tally.take(event.offset) {
                continue;
            }
            self.ctx.delivered.fetch_add(1, Ordering::Relaxed);
            if event.mark == Mark::End {
                self.tally.end = Some(event.offset);
                self.ctx.ended.fetch_add(1, Ordering::Relaxed);
            }
            if let Some((offset, since)) = self.catching_up {
                if let Some(Ok(entry)) = &mut self.end.storm {
                    entry.replayed += u64::from(event.offset <= offset);
                }
                if self.tally.last >= offset {
                    self.caught_up(since.elapsed());
                }
            }
        }
    }

    fn caught_up(&mut self, after: Duration) {
        if let Some(Ok(entry)) = &mut self.end.storm {
            entry.caught_up = Some(after);
        }
        self.catching_up = None;
        if std::mem::take(&mut self.counted) {
            self.ctx.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Reconnects and resumes after the last offset received. `storm`: when the storm started,
    /// if it has (a connection lost before it is counted, not timed). `None` if the client
    /// could not get back in.
    async fn resume(&mut self, storm: Option<Instant>) -> Option<Wire> {
        if let Some(_at) = storm {
            if self.end.storm.is_none() {
                self.ctx.affected.fetch_add(1, Ordering::Relaxed);
            }
            if !std::mem::replace(&mut self.counted, true) {
                self.ctx.pending.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            self.end.unplanned += 1;
        }
        let since = Some((self.epoch.as_str(), self.tally.last));
        let ctx = &self.ctx;
        let joined = join::join(
            &ctx.dialer,
            &ctx.target,
            &self.token,
            &self.room,
            since,
            &ctx.patience,
        )
        .await;
        let joined = match joined {
            Ok(joined) => joined,
            Err(err) => {
                match storm {
                    Some(_) => {
                        self.end.storm = Some(Err(err));
                        self.ctx.storm_failed.fetch_add(1, Ordering::Relaxed);
                        if std::mem::take(&mut self.counted) {
                            self.ctx.pending.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                    None => self.end.lost_before = Some(err),
                }
                return None;
            }
        };
        self.epoch.clone_from(&joined.subscribed.epoch);
        if let Some(at) = storm {
            let subscribed = at.elapsed();
            // Nothing to wait for: it missed nothing, or the server replays nothing.
            let done = !joined.subscribed.recovered || self.tally.last >= joined.subscribed.offset;
            self.end.storm = Some(Ok(Entry::of(&joined, subscribed, done)));
            self.catching_up = (!done).then_some((joined.subscribed.offset, at));
            if done {
                self.caught_up(subscribed);
            }
        }
        Some(joined.wire)
    }
}

/// Runs the plan.
pub async fn run(target: &Target, plan: &StormPlan) -> Result<StormReport, BenchError> {
    if plan.mode == Mode::Drain {
        if plan.drain_pids.is_empty() {
            return Err(BenchError::Setup(
                "--mode drain needs the node to drain: --drain-pid PID".into(),
            ));
        }
        for &pid in &plan.drain_pids {
            drainable(pid)?;
        }
    }
    let files = crate::dial::open_files_limit();
    if files.is_some_and(|n| (plan.clients as u64) + 256 > n) {
        eprintln!(
            "{} clients in one process may not fit its open-files limit ({}); run several \
             processes (--part) or raise it (ulimit -n)",
            plan.clients,
            files.unwrap_or_default()
        );
    }
    let cast = Cast::new(
        target,
        plan.run.clone(),
        plan.rooms,
        plan.clients,
        plan.publishers,
        plan.part,
    )
    .await?;
    let metrics_at = match plan.metrics.is_empty() {
        true => vec![target.addr],
        false => plan.metrics.clone(),
    };
    let (storm_tx, storm_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = Arc::new(Ctx {
        target: target.clone(),
        dialer: Dialer::new(target, plan.sources),
        patience: Patience {
            retry_for: plan.retry_for,
            errors: true,
        },
        mode: plan.mode,
        storm: storm_rx,
        stop: stop_rx,
        joined: AtomicUsize::new(0),
        live: AtomicUsize::new(0),
        affected: AtomicUsize::new(0),
        pending: AtomicUsize::new(0),
        storm_failed: AtomicUsize::new(0),
        ended: AtomicUsize::new(0),
        delivered: AtomicU64::new(0),
    });

    // The connect phase.
    let cold = metrics::scrape(target, &metrics_at).await;
    let started = Instant::now();
    let clients: Vec<_> = (0..plan.clients)
        .map(|i| {
            let (room, user) = cast.subscriber(i);
            let name = format!("project:{}", cast.rooms[room]);
            let ramp = plan.ramp.mul_f64(i as f64 / plan.clients.max(1) as f64);
            tokio::spawn(Client::run(
                ctx.clone(),
                (room, name),
                user.token.clone(),
                ramp,
            ))
        })
        .collect();
    let bar = progress::counter("connecting", plan.clients as u64);
    while ctx.joined.load(Ordering::Relaxed) < plan.clients {
        bar.set_position(ctx.joined.load(Ordering::Relaxed) as u64);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_s = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let warm = metrics::scrape(target, &metrics_at).await;
    let failed_to_connect = plan.clients - ctx.live.load(Ordering::Relaxed);
    if plan.max_failed.is_some_and(|max| failed_to_connect > max) {
        let _ = stop_tx.send(true);
        let ends = collect(clients).await;
        return Err(too_many_failed(&ends, plan.clients));
    }

    // Publishing, then the storm.
    let stop_publishing = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn(fanout::publish_apart(
        target.clone(),
        Pace {
            rate: plan.rate,
            until: Until::Told(stop_publishing.clone()),
            payload: Payload::Minimal,
        },
        cast.rooms.clone(),
        cast.publishers.clone(),
    ));
    tokio::time::sleep(plan.warmup).await;
    let before = metrics::scrape(target, &metrics_at).await;
    let server_before = target.sample();
    let alive = ctx.live.load(Ordering::Relaxed) as u64;
    let storm_start = Instant::now();
    let _ = storm_tx.send(Some(storm_start));
    if plan.mode == Mode::Drain {
        for &pid in &plan.drain_pids {
            if let Err(err) = terminate(pid) {
                eprintln!("SIGTERM to {pid}: {err}");
            }
        }
    }
    let bar = progress::counter("storm", alive);
    loop {
        let (affected, pending) = (
            ctx.affected.load(Ordering::Relaxed),
            ctx.pending.load(Ordering::Relaxed),
        );
        bar.set_position(affected.saturating_sub(pending) as u64);
        // Every client the storm hits has lost its connection: all of them when they drop it
        // themselves (every live one, and those of them that could not get back in); those of a
        // drained node once it has exited (its sockets are closed then).
        let all_hit = match plan.mode {
            Mode::Reconnect => {
                affected
                    >= ctx.live.load(Ordering::Relaxed) + ctx.storm_failed.load(Ordering::Relaxed)
            }
            Mode::Drain => plan.drain_pids.iter().all(|&pid| exited(pid)),
        };
        if (all_hit && pending == 0) || storm_start.elapsed() >= plan.timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bar.finish_and_clear();
    let after = metrics::scrape(target, &metrics_at).await;
    let server_after = target.sample();

    // Publishing a little longer, then the end markers and the last deliveries.
    tokio::time::sleep(plan.after).await;
    stop_publishing.store(true, Ordering::Relaxed);
    let (published, publish_errors) = publisher.await.unwrap_or_default();
    fanout::wait_for_ends(
        &ctx.ended,
        &ctx.delivered,
        ctx.live.load(Ordering::Relaxed),
        plan.grace,
        Instant::now() + plan.grace * 10,
    )
    .await;
    let _ = stop_tx.send(true);
    let ends = collect(clients).await;

    let mut connect = phase(
        ends.iter().map(|e| &e.connect),
        ends.iter().filter_map(|e| e.lost_before.as_deref()),
        metrics::delta(&cold, &warm),
    );
    // From the phase's start (with a ramp, the clients started later than that).
    (connect.subscribed_s, connect.caught_up_s) = (connect_s, connect_s);
    let storm = phase(
        ends.iter().filter_map(|e| e.storm.as_ref()),
        std::iter::empty(),
        metrics::delta(&before, &after),
    );
    let totals = fanout::account(
        ends.iter()
            .filter_map(|e| e.tally.as_ref().map(|t| (e.room, t))),
        cast.rooms.len(),
    );
    let report = StormReport {
        run: cast.run,
        mode: plan.mode,
        clients: plan.clients,
        rooms: cast.rooms.len(),
        db_queries_per_connection: storm.db.per_connection,
        failed_connections: connect.failed + storm.failed,
        delayed: connect.delayed + storm.delayed,
        unplanned_reconnects: ends.iter().map(|e| e.unplanned).sum(),
        connect,
        storm,
        published,
        publish_errors,
        totals,
        server_cpu_secs: server_before
            .zip(server_after)
            .map(|(b, a)| a.cpu_secs - b.cpu_secs),
        server_before,
        server_after,
    };
    if report.failed_connections > 0 {
        if plan
            .max_failed
            .is_some_and(|max| report.failed_connections as usize > max)
        {
            return Err(too_many_failed(&ends, plan.clients));
        }
        eprintln!(
            "{} of {} clients did not get in (counted in the report, by reason)",
            report.failed_connections, plan.clients
        );
    }
    Ok(report)
}

/// Every client's end, once they are told to stop (a client that panicked is left out).
async fn collect(clients: Vec<tokio::task::JoinHandle<ClientEnd>>) -> Vec<ClientEnd> {
    let mut ends = Vec::with_capacity(clients.len());
    for client in clients {
        if let Ok(end) = client.await {
            ends.push(end);
        }
    }
    ends
}

/// The error `--max-failed` ends the run with.
fn too_many_failed(ends: &[ClientEnd], wanted: usize) -> BenchError {
    let errors: Vec<&str> = ends
        .iter()
        .filter_map(|e| {
            e.connect
                .as_ref()
                .err()
                .or(e.lost_before.as_ref())
                .or(e.storm.as_ref().and_then(|s| s.as_ref().err()))
        })
        .map(String::as_str)
        .collect();
    BenchError::Connect {
        failed: errors.len(),
        wanted,
        first: errors.first().copied().unwrap_or_default().to_owned(),
    }
}

/// A phase's figures from its clients' entries; `later` are failures of clients that got in
/// first (counted as failed, not as clients again).
fn phase<'a>(
    entries: impl Iterator<Item = &'a Result<Entry, String>>,
    later: impl Iterator<Item = &'a str>,
    db: DbQueries,
) -> Phase {
    let mut phase = Phase {
        db,
        ..Phase::default()
    };
    let (mut subscribed, mut caught_up) = (Vec::new(), Vec::new());
    let fail = |phase: &mut Phase, err: &str| {
        phase.failed += 1;
        *phase
            .failures
            .entry(join::failure_reason(err).to_owned())
            .or_default() += 1;
    };
    for entry in entries {
        phase.clients += 1;
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                fail(&mut phase, err);
                continue;
            }
        };
        subscribed.push(entry.subscribed);
        match entry.caught_up {
            Some(at) => caught_up.push(at),
            None => phase.not_caught_up += 1,
        }
        phase.recovered_false += u64::from(!entry.recovered);
        phase.replayed += entry.replayed;
        if let Some(reason) = &entry.delayed_by {
            phase.delayed += 1;
            *phase.delays.entry(reason.clone()).or_default() += 1;
        }
        for reason in &entry.retried {
            *phase.retried.entry((*reason).to_owned()).or_default() += 1;
        }
    }
    for err in later {
        fail(&mut phase, err);
    }
    let last = |all: &[Duration]| all.iter().max().map_or(0.0, Duration::as_secs_f64);
    phase.subscribed_s = last(&subscribed);
    phase.caught_up_s = last(&caught_up);
    phase.subscribed = Percentiles::of_samples(&subscribed);
    phase.caught_up = Percentiles::of_samples(&caught_up);
    phase
}

/// Refuses to drain a process that is not a Taskflow server: the pid is the user's word, and a
/// mistyped one must not stop something else.
fn drainable(pid: u32) -> Result<(), BenchError> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map_err(|e| BenchError::Setup(format!("--drain-pid {pid}: {e}")))?;
    let words: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let program = words.first().map(|w| w.rsplit('/').next().unwrap_or(w));
    let command = words.get(1).map(String::as_str);
    if program == Some("taskflow") && !matches!(command, Some("bench" | "client" | "token")) {
        return Ok(());
    }
    Err(BenchError::Setup(format!(
        "--drain-pid {pid} is not a taskflow server ({})",
        words.join(" ")
    )))
}

/// SIGTERM: the node drains (closes its sessions with 1001, refuses new ones) and exits.
fn terminate(pid: u32) -> std::io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or(std::io::ErrorKind::InvalidInput)?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
    Ok(())
}

/// Whether `pid` has exited: gone, or a zombie its parent has not reaped yet (its sockets are
/// closed either way).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(subscribed_ms: u64, caught_up_ms: Option<u64>) -> Result<Entry, String> {
        Ok(Entry {
            subscribed: Duration::from_millis(subscribed_ms),
            caught_up: caught_up_ms.map(Duration::from_millis),
            recovered: true,
            replayed: 2,
            delayed_by: None,
            retried: Vec::new(),
        })
    }

    #[test]
    fn a_phase_counts_its_clients_times_failures_and_delays() {
        let mut delayed = entry(3000, Some(3100));
        if let Ok(e) = &mut delayed {
            e.delayed_by = Some("server_full".into());
            e.retried = vec!["connect_error"];
            e.recovered = false;
        }
        let entries = [
            entry(100, Some(150)),
            entry(200, None),
            delayed,
            Err("upgrade refused: 503 Service Unavailable (overloaded, Retry-After 2 s)".into()),
        ];
        let p = phase(
            entries.iter(),
            ["handshake timed out"].into_iter(),
            DbQueries::default(),
        );
        assert_eq!(p.clients, 4);
        assert_eq!(p.failed, 2);
        assert_eq!(p.failures["refused_503"], 1);
        assert_eq!(p.failures["handshake_timeout"], 1);
        assert_eq!((p.delayed, p.delays["server_full"]), (1, 1));
        assert_eq!(p.retried["connect_error"], 1);
        assert_eq!(p.recovered_false, 1);
        assert_eq!(p.replayed, 6);
        assert_eq!(p.not_caught_up, 1);
        assert!((p.subscribed_s - 3.0).abs() < 1e-9);
        assert!((p.caught_up_s - 3.1).abs() < 1e-9);
        assert_eq!(p.subscribed.count, 3);
        assert_eq!(p.caught_up.count, 2);
    }

    #[test]
    fn only_taskflow_servers_are_drained() {
        // This test binary is not one.
        assert!(drainable(std::process::id()).is_err());
        assert!(!exited(std::process::id()));
        assert!(exited(u32::MAX - 1));
    }
}
