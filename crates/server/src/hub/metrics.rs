//! The hub's metrics. Handles are resolved once (the recorder's lookup hashes the name and
//! labels), so the hot path only bumps an atomic.

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use std::sync::LazyLock;

static CONNECTIONS: LazyLock<Gauge> = LazyLock::new(|| gauge!("ws_connections"));
static OPENED: LazyLock<Counter> = LazyLock::new(|| counter!("hub_connections_opened_total"));
static SUBSCRIPTIONS: LazyLock<Gauge> = LazyLock::new(|| gauge!("ws_subscriptions"));
static FRAMES_IN: LazyLock<Counter> = LazyLock::new(|| counter!("ws_frames_in_total"));
static FRAMES_OUT: LazyLock<Counter> = LazyLock::new(|| counter!("ws_frames_out_total"));
static BYTES_IN: LazyLock<Counter> = LazyLock::new(|| counter!("ws_bytes_in_total"));
static BYTES_OUT: LazyLock<Counter> = LazyLock::new(|| counter!("ws_bytes_out_total"));
static SLOW: LazyLock<Counter> = LazyLock::new(|| counter!("ws_slow_consumer_disconnects_total"));
static HEARTBEAT: LazyLock<Counter> = LazyLock::new(|| counter!("ws_heartbeat_terminations_total"));
static VIOLATIONS: LazyLock<Counter> = LazyLock::new(|| counter!("ws_protocol_violations_total"));
static EVENTS: LazyLock<Counter> = LazyLock::new(|| counter!("hub_events_dispatched_total"));
static DELIVERIES: LazyLock<Counter> = LazyLock::new(|| counter!("hub_deliveries_total"));
static GAP_FILLS: LazyLock<Counter> = LazyLock::new(|| counter!("hub_gap_fills_total"));
static WRITES_HELD: LazyLock<Counter> = LazyLock::new(|| counter!("hub_writes_held_total"));
static COMMIT_TO_ENQUEUE: LazyLock<Histogram> =
    LazyLock::new(|| histogram!("hub_commit_to_enqueue_seconds"));

pub(crate) fn connection_opened() {
    CONNECTIONS.increment(1.0);
    OPENED.increment(1);
}
/// A database query made to admit or subscribe a real-time connection (a cold membership
/// cache, a room's position, a replay from the log): divided by `hub_connections_opened_total`,
/// the queries per connection a reconnect storm costs.
pub(crate) fn db_query(reason: &'static str) {
    counter!("realtime_db_queries_total", "reason" => reason).increment(1);
}
pub(crate) fn connection_closed() {
    CONNECTIONS.decrement(1.0);
}
pub(crate) fn subscribed() {
    SUBSCRIPTIONS.increment(1.0);
}
pub(crate) fn unsubscribed(n: usize) {
    SUBSCRIPTIONS.decrement(n as f64);
}
/// A frame read from a client.
pub fn frame_in(bytes: usize) {
    FRAMES_IN.increment(1);
    BYTES_IN.increment(bytes as u64);
}
/// A batch of frames written to a client in one flush.
pub fn frames_out(frames: usize, bytes: usize) {
    FRAMES_OUT.increment(frames as u64);
    BYTES_OUT.increment(bytes as u64);
}
/// A write waited for the fan-out to catch up (hub/lag.rs).
pub fn write_held() {
    WRITES_HELD.increment(1);
}
pub(crate) fn slow_consumer() {
    SLOW.increment(1);
}
/// A peer that stopped answering pings was terminated.
pub fn heartbeat_termination() {
    HEARTBEAT.increment(1);
}
/// A client broke the WebSocket protocol (framing, UTF-8, size) and was closed with 1002, 1007
/// or 1009.
pub fn protocol_violation() {
    VIOLATIONS.increment(1);
}
pub(crate) fn dispatched(deliveries: usize, commit_to_enqueue_secs: f64) {
    EVENTS.increment(1);
    DELIVERIES.increment(deliveries as u64);
    COMMIT_TO_ENQUEUE.record(commit_to_enqueue_secs);
}
pub(crate) fn gap_filled(events: usize) {
    GAP_FILLS.increment(events as u64);
}

/// An event frame of `plain` bytes was compressed for the connections that negotiated
/// `permessage-deflate`, to `deflated` bytes (`None`: it did not get shorter and went plain).
pub(crate) fn compressed(plain: usize, deflated: Option<usize>) {
    static COMPRESSED: LazyLock<Counter> = LazyLock::new(|| counter!("ws_compressions_total"));
    static PLAIN: LazyLock<Counter> = LazyLock::new(|| counter!("ws_compression_in_bytes_total"));
    static OUT: LazyLock<Counter> = LazyLock::new(|| counter!("ws_compression_out_bytes_total"));
    COMPRESSED.increment(1);
    PLAIN.increment(plain as u64);
    OUT.increment(deflated.unwrap_or(plain) as u64);
}

/// A compressed message from a client was inflated.
pub(crate) fn inflated() {
    static INFLATED: LazyLock<Counter> =
        LazyLock::new(|| counter!("ws_compressed_messages_in_total"));
    INFLATED.increment(1);
}
