//! The recent events of a room, kept in memory with the bytes already framed, so that a client
//! that reconnects after a blip or a drain resumes without a query: its gap is, in the common
//! case, the last few seconds of its room. Only a gap older than the tail reads the log.
//!
//! Bounded three ways (`ReplayLimits`): events per room, bytes per room, and bytes over all
//! rooms of the node. The bytes are those of the `event` frames, which the sessions' queues share
//! (one allocation per event, not per copy), plus a fixed overhead per entry. A room that must
//! make room drops its own oldest events; a room is dropped with its tail by the dispatcher's
//! sweep (`rooms`).
//!
//! The tail never serves what the log would not: it keeps at most the log's
//! `retention_max_events` per room and no event older than `retention_max_age_secs`, so whether a
//! resume is recovered does not depend on which node it reaches.
//!
//! The tail always holds consecutive offsets ending at the room's last delivered one: whenever the
//! room's position moves without delivering (a skip over compacted events, a catch-up for
//! nobody) the tail is emptied.

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bookkeeping per kept event, counted with its bytes.
const ENTRY_OVERHEAD: usize = 48;

/// How much the tails hold, and how many replays may read the log at once.
#[derive(Debug, Clone, Copy)]
pub struct ReplayLimits {
    /// Events kept per room.
    pub tail_events: usize,
    /// Bytes kept per room.
    pub tail_bytes: usize,
    /// Bytes kept over all rooms of the node.
    pub tail_total_bytes: usize,
    /// Replays (and retention checks) reading the log at once; the rest wait their turn, so a
    /// storm of resumes with old gaps queues instead of exhausting the pool.
    pub concurrency: usize,
    /// On a single node, how long a room that nobody receives keeps its tail (its stream is
    /// still current: every event of the node passes through it). A cluster node does not hear a
    /// room it does not follow, so there the room is dropped as soon as it is unused.
    pub retain: std::time::Duration,
    /// The log's retention by age: an older event is not served from a tail.
    pub max_age: std::time::Duration,
}

impl Default for ReplayLimits {
    fn default() -> Self {
        Self {
            tail_events: 1024,
            tail_bytes: 1 << 20,
            tail_total_bytes: 256 << 20,
            concurrency: 4,
            retain: std::time::Duration::from_secs(60),
            max_age: std::time::Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// The bytes every tail of a node holds, against the node's limit.
#[derive(Debug)]
pub(crate) struct TailBudget {
    limits: ReplayLimits,
    used: AtomicUsize,
}

impl TailBudget {
    pub(crate) fn new(limits: ReplayLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes held over all tails.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// One kept event.
struct Kept {
    offset: i64,
    bytes: Bytes,
    task_event: bool,
    /// Commit time, in milliseconds since the epoch.
    at_ms: i64,
}

/// One room's tail.
pub(crate) struct Tail {
    events: VecDeque<Kept>,
    bytes: usize,
    budget: Arc<TailBudget>,
}

impl Tail {
    pub(crate) fn new(budget: &Arc<TailBudget>) -> Self {
        Self {
            events: VecDeque::new(),
            bytes: 0,
            budget: budget.clone(),
        }
    }

    /// Keeps a delivered event (the next offset), dropping the oldest ones beyond the limits.
    pub(crate) fn push(&mut self, offset: i64, bytes: &Bytes, task_event: bool, at_ms: i64) {
        if self
            .events
            .back()
            .is_some_and(|last| last.offset + 1 != offset)
        {
            self.clear();
        }
        let limits = self.budget.limits;
        let cost = bytes.len() + ENTRY_OVERHEAD;
        if cost > limits.tail_bytes || limits.tail_events == 0 {
            self.clear();
            return;
        }
        self.events.push_back(Kept {
            offset,
            bytes: bytes.clone(),
            task_event,
            at_ms,
        });
        self.bytes += cost;
        let total = self.budget.used.fetch_add(cost, Ordering::Relaxed) + cost;
        let mut over_total = total.saturating_sub(limits.tail_total_bytes);
        while self.events.len() > limits.tail_events
            || self.bytes > limits.tail_bytes
            || (over_total > 0 && self.events.len() > 1)
        {
            let freed = self.pop();
            over_total = over_total.saturating_sub(freed);
        }
    }

    fn pop(&mut self) -> usize {
        let Some(kept) = self.events.pop_front() else {
            return 0;
        };
        let cost = kept.bytes.len() + ENTRY_OVERHEAD;
        self.bytes -= cost;
        self.budget.used.fetch_sub(cost, Ordering::Relaxed);
        cost
    }

    /// Forgets every event (the room's position moved without them).
    pub(crate) fn clear(&mut self) {
        while self.pop() > 0 {}
    }

    /// Up to `limit` frames after offset `after`, up to `until`, in order (only task events if
    /// `task_events_only`), with the last offset they cover; `None` if the tail does not start
    /// at or before `after + 1` (the log must be read).
    pub(crate) fn after(
        &self,
        after: i64,
        until: i64,
        limit: usize,
        task_events_only: bool,
    ) -> Option<(Vec<Bytes>, i64)> {
        let first = self.events.front()?.offset;
        if first > after + 1 || self.events.back()?.offset < until.min(after + 1) {
            return None;
        }
        let skip = usize::try_from(after + 1 - first).ok()?;
        if !self.young(self.events.get(skip)?) {
            return None;
        }
        let mut frames = Vec::new();
        let mut covered = after;
        for kept in self.events.iter().skip(skip).take(limit) {
            if kept.offset > until {
                break;
            }
            covered = kept.offset;
            if !task_events_only || kept.task_event {
                frames.push(kept.bytes.clone());
            }
        }
        Some((frames, covered))
    }

    /// Whether offsets `after + 1 ..= until` are all here (and within the log's retention).
    pub(crate) fn covers(&self, after: i64, until: i64) -> bool {
        if after >= until {
            return true;
        }
        let (Some(first), Some(last)) = (self.events.front(), self.events.back()) else {
            return false;
        };
        if first.offset > after + 1 || last.offset < until {
            return false;
        }
        usize::try_from(after + 1 - first.offset)
            .ok()
            .and_then(|at| self.events.get(at))
            .is_some_and(|kept| self.young(kept))
    }

    /// Whether the log's retention by age still keeps this event.
    fn young(&self, kept: &Kept) -> bool {
        let age_ms = chrono::Utc::now()
            .timestamp_millis()
            .saturating_sub(kept.at_ms);
        u128::try_from(age_ms).map_or(true, |age| age <= self.budget.limits.max_age.as_millis())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(events: usize, bytes: usize, total: usize) -> Arc<TailBudget> {
        TailBudget::new(ReplayLimits {
            tail_events: events,
            tail_bytes: bytes,
            tail_total_bytes: total,
            ..ReplayLimits::default()
        })
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    fn frame(offset: i64) -> Bytes {
        Bytes::from(format!("{offset:>52}"))
    }

    fn offsets(frames: &[Bytes]) -> Vec<i64> {
        frames
            .iter()
            .map(|f| std::str::from_utf8(f).unwrap().trim().parse().unwrap())
            .collect()
    }

    #[test]
    fn it_serves_what_it_holds_and_says_when_the_log_must_be_read() {
        let budget = budget(100, 1 << 20, 1 << 20);
        let mut tail = Tail::new(&budget);
        assert_eq!(tail.after(0, 5, 10, false), None);
        for offset in 11..=20 {
            tail.push(offset, &frame(offset), offset % 2 == 0, now());
        }
        let (frames, covered) = tail.after(14, 20, 3, false).unwrap();
        assert_eq!((offsets(&frames), covered), (vec![15, 16, 17], 17));
        let (frames, covered) = tail.after(10, 20, 100, true).unwrap();
        assert_eq!((offsets(&frames), covered), (vec![12, 14, 16, 18, 20], 20));
        assert_eq!(tail.after(9, 20, 10, false), None, "offset 10 is not here");
        assert!(tail.covers(10, 20) && tail.covers(20, 20) && !tail.covers(9, 20));
        tail.push(25, &frame(25), false, now());
        assert_eq!(
            tail.after(20, 25, 10, false),
            None,
            "a jump empties it before keeping the new event"
        );
        assert_eq!(offsets(&tail.after(24, 25, 10, false).unwrap().0), vec![25]);
    }

    #[test]
    fn it_serves_nothing_the_logs_retention_by_age_has_dropped() {
        let budget = TailBudget::new(ReplayLimits {
            max_age: std::time::Duration::from_secs(60),
            ..ReplayLimits::default()
        });
        let mut tail = Tail::new(&budget);
        tail.push(1, &frame(1), false, now() - 120_000);
        tail.push(2, &frame(2), false, now());
        assert!(!tail.covers(0, 2) && tail.after(0, 2, 10, false).is_none());
        assert!(tail.covers(1, 2));
        assert_eq!(offsets(&tail.after(1, 2, 10, false).unwrap().0), vec![2]);
    }

    #[test]
    fn it_holds_at_most_its_events_and_bytes_and_gives_them_back() {
        let budget = budget(8, 4 * (52 + ENTRY_OVERHEAD), 1 << 20);
        let mut tail = Tail::new(&budget);
        for offset in 1..=100 {
            tail.push(offset, &frame(offset), false, now());
        }
        assert_eq!(
            offsets(&tail.after(96, 100, 10, false).unwrap().0),
            vec![97, 98, 99, 100]
        );
        assert_eq!(tail.after(95, 100, 10, false), None);
        assert_eq!(budget.used(), 4 * (52 + ENTRY_OVERHEAD));
        drop(tail);
        assert_eq!(budget.used(), 0, "a dropped room gives its bytes back");
    }

    #[test]
    fn the_node_wide_budget_bounds_every_room_together() {
        let cost = 52 + ENTRY_OVERHEAD;
        let budget = budget(1000, 1 << 20, 10 * cost);
        let mut a = Tail::new(&budget);
        let mut b = Tail::new(&budget);
        for offset in 1..=50 {
            a.push(offset, &frame(offset), false, now());
            b.push(offset, &frame(offset), false, now());
            assert!(budget.used() <= 10 * cost + cost, "{}", budget.used());
        }
        assert!(
            a.covers(49, 50) && b.covers(49, 50),
            "each keeps its newest"
        );
        a.clear();
        b.clear();
        assert_eq!(budget.used(), 0);
    }
}
