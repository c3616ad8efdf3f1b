//! The cluster broker's metrics (see docs/operations.md, "Cluster metrics").

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use std::sync::LazyLock;

static CONNECTED: LazyLock<Gauge> = LazyLock::new(|| gauge!("broker_connected"));
static RECONNECTS: LazyLock<Counter> = LazyLock::new(|| counter!("broker_reconnects_total"));
static PUBLISHED: LazyLock<Counter> = LazyLock::new(|| counter!("broker_published_total"));
static PUBLISH_LOST: LazyLock<Counter> =
    LazyLock::new(|| counter!("broker_publish_failures_total"));
static RECEIVED: LazyLock<Counter> = LazyLock::new(|| counter!("broker_received_total"));
static UNREADABLE: LazyLock<Counter> = LazyLock::new(|| counter!("broker_unreadable_total"));
static LAG: LazyLock<Histogram> = LazyLock::new(|| histogram!("broker_lag_seconds"));
static WATCHED: LazyLock<Gauge> = LazyLock::new(|| gauge!("broker_watched_rooms"));

pub(crate) fn connected(up: bool) {
    CONNECTED.set(if up { 1.0 } else { 0.0 });
}
pub(crate) fn reconnected() {
    RECONNECTS.increment(1);
}
pub(crate) fn published(n: usize) {
    PUBLISHED.increment(n as u64);
}
pub(crate) fn publish_failed(n: usize) {
    PUBLISH_LOST.increment(n as u64);
}
/// An event from another node, `lag_secs` after its commit.
pub(crate) fn received(lag_secs: f64) {
    RECEIVED.increment(1);
    LAG.record(lag_secs);
}
pub(crate) fn unreadable() {
    UNREADABLE.increment(1);
}
pub(crate) fn watched(rooms: usize) {
    WATCHED.set(rooms as f64);
}
