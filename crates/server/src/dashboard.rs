//! The dashboard the server pushes: every `dashboard_interval_ms`, while someone follows the
//! admin-only `system` room (on this node, or on another node of the cluster), this node
//! measures its interval ([`crate::hub::tally`]), serializes one `stats` frame and hands the
//! bytes to its `system` members and to the other nodes. A dashboard then needs no `/metrics`
//! scraping, gets every node's numbers through whichever node it is connected to, and degrades
//! to SSE and long polling like any other subscription.
//!
//! With nobody following, a tick only zeroes the interval's counters (so that the first frame
//! after a quiet hour covers one interval, not the hour): no connection is counted, no memory
//! read, nothing serialized or sent.

use crate::hub::Hub;
use crate::state::AppState;
use std::time::{Duration, Instant};
use taskflow_protocol::{BrokerState, NodeStats, ServerFrame};

/// The shortest interval honoured: a dashboard does not need more than ten frames a second.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The node name a single node reports.
const LOCAL_NODE: &str = "local";

/// Runs until aborted (at shutdown).
pub async fn run(state: AppState) {
    let interval = Duration::from_millis(state.config().dashboard_interval_ms).max(MIN_INTERVAL);
    let mut every = tokio::time::interval(interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    let mut started = Instant::now();
    loop {
        every.tick().await;
        let hub = state.hub();
        let elapsed = started.elapsed();
        started = Instant::now();
        // Another node's frames arrive once per interval while its dashboard watches; three
        // intervals without one and that dashboard is gone.
        if !hub.stats_wanted(interval * 3) {
            hub.tally().take();
            continue;
        }
        let stats = measure(hub, &node(&state), broker(&state), elapsed);
        hub.push_stats(&crate::hub::frame_bytes(&ServerFrame::Stats(stats)));
    }
}

fn node(state: &AppState) -> String {
    state
        .cluster()
        .map_or(LOCAL_NODE.to_owned(), |c| c.node().to_owned())
}

fn broker(state: &AppState) -> BrokerState {
    match state.cluster() {
        None => BrokerState::None,
        Some(cluster) if cluster.is_connected() => BrokerState::Connected,
        Some(_) => BrokerState::Disconnected,
    }
}

/// This hub's numbers over the `elapsed` interval that just ended (and the start of the next).
pub fn measure(hub: &Hub, node: &str, broker: BrokerState, elapsed: Duration) -> NodeStats {
    let interval = hub.tally().take();
    let seconds = elapsed.as_secs_f64().max(1e-3);
    NodeStats {
        room: crate::domain::Room::SYSTEM.to_owned(),
        node: node.to_owned(),
        at: chrono::Utc::now(),
        interval_ms: elapsed.as_millis() as u64,
        connections: hub.tally().connections(),
        subscriptions: hub.tally().subscriptions(),
        events_per_sec: interval.events as f64 / seconds,
        deliveries_per_sec: interval.deliveries as f64 / seconds,
        latency_ms: interval.latency,
        rss_bytes: crate::telemetry::resident_memory_bytes(),
        slow_consumer_closes: interval.slow_closes,
        broker,
    }
}
