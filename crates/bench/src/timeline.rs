//! Deliveries over time, in fixed buckets, for the rate plot: a flat array of counters that
//! thousands of subscriber tasks bump without a lock.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Width of one bucket.
pub const BUCKET: Duration = Duration::from_millis(250);

/// Counts per bucket since `start`; events past the last bucket count in the last one.
pub struct Timeline {
    start: Instant,
    buckets: Vec<AtomicU64>,
}

impl Timeline {
    /// A timeline covering `span` from `start`.
    pub fn new(start: Instant, span: Duration) -> Self {
        let n = (span.as_millis() / BUCKET.as_millis()).max(1) as usize + 1;
        Self {
            start,
            buckets: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Counts one event at `at`.
    pub fn record(&self, at: Instant) {
        let i =
            (at.saturating_duration_since(self.start).as_millis() / BUCKET.as_millis()) as usize;
        self.buckets[i.min(self.buckets.len() - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// Events per second in each bucket, trailing empty buckets dropped.
    pub fn rates(&self) -> Rates {
        let mut per_sec: Vec<f64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed) as f64 / BUCKET.as_secs_f64())
            .collect();
        while per_sec.last() == Some(&0.0) {
            per_sec.pop();
        }
        Rates {
            bucket_ms: BUCKET.as_millis() as u64,
            per_sec,
        }
    }
}

/// Delivered messages per second over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// Width of one bucket, milliseconds.
    pub bucket_ms: u64,
    /// Rate in each bucket.
    pub per_sec: Vec<f64>,
}

impl Rates {
    /// Adds another process's rates bucket by bucket (same start, same width).
    pub fn add(&mut self, other: &Rates) {
        if self.bucket_ms == 0 {
            self.bucket_ms = other.bucket_ms;
        }
        if self.per_sec.len() < other.per_sec.len() {
            self.per_sec.resize(other.per_sec.len(), 0.0);
        }
        for (a, b) in self.per_sec.iter_mut().zip(&other.per_sec) {
            *a += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_bucket() {
        let start = Instant::now();
        let t = Timeline::new(start, Duration::from_secs(1));
        t.record(start);
        t.record(start + BUCKET + Duration::from_millis(1));
        t.record(start + Duration::from_secs(60)); // clamped into the last bucket
        let rates = t.rates();
        let per_bucket = 1.0 / BUCKET.as_secs_f64();
        assert_eq!(rates.per_sec[0], per_bucket);
        assert_eq!(rates.per_sec[1], per_bucket);
        assert_eq!(*rates.per_sec.last().unwrap(), per_bucket);
    }
}
