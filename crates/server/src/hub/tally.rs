//! What the dashboard ([`super::dashboard`]) reports about one hub, counted as it happens: open
//! connections by transport, subscriptions, events dispatched and deliveries, slow-consumer
//! closes, and delivery latency. Every count is a relaxed atomic the hot path bumps once per
//! event (as the Prometheus handles in [`super::metrics`] are); nothing is locked, nothing
//! allocates. The Prometheus recorder is process-wide and cannot be read back per hub or per
//! interval, hence these counters of its own: each hub (one per server; a test process runs
//! several) reports its own numbers, and [`Tally::take`] reads and zeroes an interval's.

use super::session::Transport;
use std::sync::atomic::{AtomicU64, Ordering};
use taskflow_protocol::{Latency, TransportCounts};

/// A hub's counts.
#[derive(Debug, Default)]
pub struct Tally {
    /// Open sessions, by [`Transport::index`].
    connections: [AtomicU64; 3],
    /// Room memberships over all sessions.
    subscriptions: AtomicU64,
    /// Events dispatched since the last [`Tally::take`].
    events: AtomicU64,
    /// Frames of those events queued to sessions.
    deliveries: AtomicU64,
    /// Sessions closed as slow consumers.
    slow_closes: AtomicU64,
    /// Commit-to-enqueue latency of those events.
    latency: LatencyHistogram,
}

/// One interval's numbers, read and reset by [`Tally::take`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Events dispatched.
    pub events: u64,
    /// Deliveries.
    pub deliveries: u64,
    /// Slow-consumer closes.
    pub slow_closes: u64,
    /// Latency percentiles, if any event was dispatched.
    pub latency: Option<Latency>,
}

impl Tally {
    pub(crate) fn connected(&self, transport: Transport) {
        self.connections[transport.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn disconnected(&self, transport: Transport) {
        self.connections[transport.index()].fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn subscribed(&self) {
        self.subscriptions.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn unsubscribed(&self) {
        self.subscriptions.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn slow_close(&self) {
        self.slow_closes.fetch_add(1, Ordering::Relaxed);
    }

    /// One event dispatched to `deliveries` sessions, `latency_ms` after its commit.
    pub(crate) fn dispatched(&self, deliveries: usize, latency_ms: u64) {
        self.events.fetch_add(1, Ordering::Relaxed);
        self.deliveries
            .fetch_add(deliveries as u64, Ordering::Relaxed);
        self.latency.record(latency_ms);
    }

    /// Open connections now.
    pub fn connections(&self) -> TransportCounts {
        let read = |t: Transport| self.connections[t.index()].load(Ordering::Relaxed);
        TransportCounts {
            websocket: read(Transport::WebSocket),
            sse: read(Transport::Sse),
            long_polling: read(Transport::LongPolling),
        }
    }

    /// Events counted in the current interval so far.
    pub fn interval_events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Subscriptions now.
    pub fn subscriptions(&self) -> u64 {
        self.subscriptions.load(Ordering::Relaxed)
    }

    /// The counts since the last call, zeroed for the next interval. An event counted while
    /// this runs lands in this interval or the next, never in neither.
    pub fn take(&self) -> Interval {
        Interval {
            events: self.events.swap(0, Ordering::Relaxed),
            deliveries: self.deliveries.swap(0, Ordering::Relaxed),
            slow_closes: self.slow_closes.swap(0, Ordering::Relaxed),
            latency: self.latency.take(),
        }
    }
}

/// Buckets: values 0 to 3 exactly, then four per power of two (so a bucket is at most a quarter
/// of its lower bound wide), up to 2^32 ms; larger values fall in the last bucket.
const BUCKETS: usize = 4 * 32;

/// A histogram of millisecond latencies over one interval, recorded lock-free (one atomic add
/// per value) and read by swapping every bucket to zero. An HDR-style layout computed with
/// integer operations only, so recording costs no floating point.
#[derive(Debug)]
struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS],
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The bucket of `value`.
fn bucket(value: u64) -> usize {
    if value < 4 {
        return value as usize;
    }
    let octave = 63 - value.leading_zeros() as usize; // 2 or more
    let sub = ((value >> (octave - 2)) & 3) as usize;
    (4 * (octave - 1) + sub).min(BUCKETS - 1)
}

/// The largest value bucket `index` holds (what a percentile falling in it reports: never below
/// the true value, at most a quarter above it).
fn bucket_high(index: usize) -> u64 {
    if index < 4 {
        return index as u64;
    }
    let octave = index / 4 + 1;
    let sub = (index % 4) as u64;
    let width = 1u64 << (octave - 2);
    (1u64 << octave) + sub * width + width - 1
}

impl LatencyHistogram {
    fn record(&self, value: u64) {
        self.buckets[bucket(value)].fetch_add(1, Ordering::Relaxed);
    }

    /// The interval's percentiles, and a fresh interval.
    fn take(&self) -> Option<Latency> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.swap(0, Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let quantile = |q: f64| {
            // The smallest bucket at which at least q of the values are counted.
            let rank = ((q * total as f64).ceil() as u64).max(1);
            let mut seen = 0;
            for (index, count) in counts.iter().enumerate() {
                seen += count;
                if seen >= rank {
                    return bucket_high(index) as f64;
                }
            }
            bucket_high(BUCKETS - 1) as f64
        };
        let max = counts
            .iter()
            .rposition(|&c| c > 0)
            .map(bucket_high)
            .unwrap_or(0) as f64;
        Some(Latency {
            p50: quantile(0.5),
            p99: quantile(0.99),
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_at_most_a_quarter_wide() {
        let mut previous_high = None;
        for index in 0..BUCKETS - 1 {
            let high = bucket_high(index);
            let low = previous_high.map_or(0, |h: u64| h + 1);
            assert_eq!(bucket(low), index, "{low}");
            assert_eq!(bucket(high), index, "{high}");
            assert!(high - low <= low / 4, "bucket {index}: {low}..={high}");
            previous_high = Some(high);
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_cover_the_interval_and_reset() {
        let h = LatencyHistogram::default();
        assert_eq!(h.take(), None);
        for _ in 0..98 {
            h.record(1);
        }
        h.record(40);
        h.record(1000);
        let latency = h.take().unwrap();
        assert_eq!(latency.p50, 1.0);
        assert!((40.0..=50.0).contains(&latency.p99), "{latency:?}");
        assert!((1000.0..=1250.0).contains(&latency.max), "{latency:?}");
        assert_eq!(h.take(), None, "the next interval starts empty");
    }

    #[test]
    fn the_tally_counts_per_interval_and_holds_the_gauges() {
        let tally = Tally::default();
        tally.connected(Transport::WebSocket);
        tally.connected(Transport::Sse);
        tally.connected(Transport::Sse);
        tally.disconnected(Transport::Sse);
        tally.subscribed();
        tally.dispatched(3, 0);
        tally.dispatched(5, 2);
        tally.slow_close();
        let interval = tally.take();
        assert_eq!(
            (interval.events, interval.deliveries, interval.slow_closes),
            (2, 8, 1)
        );
        assert_eq!(interval.latency.unwrap().max, 2.0);
        assert_eq!(
            tally.connections(),
            TransportCounts {
                websocket: 1,
                sse: 1,
                long_polling: 0
            }
        );
        assert_eq!(tally.subscriptions(), 1);
        let next = tally.take();
        assert_eq!((next.events, next.deliveries, next.latency), (0, 0, None));
        assert_eq!(tally.subscriptions(), 1, "gauges are not reset");
    }
}
