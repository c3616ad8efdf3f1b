//! Latency distributions. Subscribers record into a few sharded HDR histograms (bounded memory
//! whatever the run's length), and a report carries its histogram encoded, so the reports of
//! several bench processes merge into exact percentiles of the whole run.

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The largest latency recorded exactly, in microseconds (larger ones are clamped to it).
const MAX_MICROS: u64 = 600_000_000;

/// A histogram of latencies in microseconds, three significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("static bounds are valid")
}

/// Latencies recorded from many tasks at once: each task records into one of a few shards, so
/// recording is an uncontended lock and memory does not grow with the samples.
pub struct Recorder {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Recorder {
    /// A recorder with `shards` shards.
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(histogram()))
                .collect(),
        }
    }

    /// Records one sample into the shard chosen by `hint` (the caller's index).
    pub fn record(&self, hint: usize, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, MAX_MICROS);
        let mut shard = self.shards[hint % self.shards.len()]
            .lock()
            .expect("never poisoned");
        shard.saturating_record(micros);
    }

    /// All samples so far in one histogram.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.shards {
            let shard = shard.lock().expect("never poisoned");
            all.add(&*shard).expect("same bounds");
        }
        all
    }
}

/// When each event's first and last copies arrived, to split the end-to-end latency in two: the
/// way to the first subscriber (REST, commit, dispatch) and the spread of the fan-out itself (how
/// long the server takes to get the event to every socket). Sharded like [`Recorder`]; memory
/// grows with the events of the run (16 bytes each, plus the map's own), so the bench keeps it
/// for paced runs only.
pub struct Spans {
    shards: Vec<Mutex<SpanTable>>,
}

/// (room index, offset) → (first, last) latency in microseconds.
type SpanTable = HashMap<(usize, i64), (u64, u64)>;

impl Spans {
    /// A table with `shards` shards.
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1)).map(|_| Mutex::default()).collect(),
        }
    }

    /// Notes that a copy of the event at `offset` of room `room` arrived `latency` after it was
    /// sent, in the shard chosen by `hint` (the caller's index).
    pub fn record(&self, hint: usize, room: usize, offset: i64, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, MAX_MICROS);
        let mut shard = self.shards[hint % self.shards.len()]
            .lock()
            .expect("never poisoned");
        let span = shard.entry((room, offset)).or_insert((micros, micros));
        span.0 = span.0.min(micros);
        span.1 = span.1.max(micros);
    }

    /// (latency of each event's first copy, time from its first copy to its last).
    pub fn summarize(&self) -> (Histogram<u64>, Histogram<u64>) {
        let mut all = SpanTable::new();
        for shard in &self.shards {
            for (&event, &(first, last)) in shard.lock().expect("never poisoned").iter() {
                let span = all.entry(event).or_insert((first, last));
                span.0 = span.0.min(first);
                span.1 = span.1.max(last);
            }
        }
        let (mut firsts, mut spreads) = (histogram(), histogram());
        for (first, last) in all.into_values() {
            firsts.saturating_record(first);
            spreads.saturating_record((last - first).max(1));
        }
        (firsts, spreads)
    }
}

/// Percentiles of a latency distribution, in milliseconds, with the distribution itself encoded
/// for merging.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// The histogram (HdrHistogram V2 + deflate, base64), for `taskflow bench merge`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub histogram: String,
}

impl Percentiles {
    /// Summarizes `h` (microseconds).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            histogram: encode(h),
        }
    }

    /// Summarizes raw samples.
    pub fn of_samples(samples: &[Duration]) -> Self {
        let mut h = histogram();
        for s in samples {
            h.saturating_record((s.as_micros() as u64).clamp(1, MAX_MICROS));
        }
        Self::of(&h)
    }

    /// The histogram back, if the report carried it.
    pub fn decode(&self) -> Option<Histogram<u64>> {
        if self.histogram.is_empty() {
            return (self.count == 0).then(histogram);
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&self.histogram)
            .ok()?;
        Deserializer::new().deserialize(&mut raw.as_slice()).ok()
    }
}

fn encode(h: &Histogram<u64>) -> String {
    let mut raw = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut raw)
        .expect("writing to a Vec cannot fail");
    base64::engine::general_purpose::STANDARD.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let samples: Vec<Duration> = (1..=1000).rev().map(Duration::from_millis).collect();
        let p = Percentiles::of_samples(&samples);
        assert_eq!(p.count, 1000);
        assert!((p.p50_ms - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p99_ms - 990.0).abs() < 1.0, "{p:?}");
        assert!((p.max_ms - 1000.0).abs() < 1.0, "{p:?}");
        assert_eq!(Percentiles::of(&histogram()).count, 0);
    }

    #[test]
    fn spans_split_each_event_into_its_first_copy_and_its_spread() {
        let spans = Spans::new(4);
        // Event 1 of room 0 reaches three subscribers (in different shards) at 5, 20 and 105 ms;
        // event 1 of room 1 (the same offset, another room) once at 7 ms.
        for (hint, ms) in [(0, 20), (1, 5), (2, 105)] {
            spans.record(hint, 0, 1, Duration::from_millis(ms));
        }
        spans.record(3, 1, 1, Duration::from_millis(7));
        let (firsts, spreads) = spans.summarize();
        let (firsts, spreads) = (Percentiles::of(&firsts), Percentiles::of(&spreads));
        assert_eq!(firsts.count, 2, "one per event");
        assert!((firsts.max_ms - 7.0).abs() < 0.01, "{firsts:?}");
        assert!((firsts.p50_ms - 5.0).abs() < 0.01, "{firsts:?}");
        assert!((spreads.max_ms - 100.0).abs() < 0.1, "{spreads:?}");
    }

    #[test]
    fn encoded_histograms_merge_exactly() {
        let a = Percentiles::of_samples(&[Duration::from_millis(1); 90]);
        let b = Percentiles::of_samples(&[Duration::from_millis(100); 10]);
        let mut all = a.decode().unwrap();
        all.add(b.decode().unwrap()).unwrap();
        let merged = Percentiles::of(&all);
        assert_eq!(merged.count, 100);
        assert!((merged.p50_ms - 1.0).abs() < 0.01);
        assert!((merged.p99_ms - 100.0).abs() < 0.1);
    }

    #[test]
    fn recorder_shards_add_up() {
        let r = Recorder::new(4);
        for i in 0..100 {
            r.record(i, Duration::from_micros(50));
        }
        assert_eq!(r.merged().len(), 100);
    }
}
