//! Admission under a storm. When a node is drained or the network blips, every client of it
//! reconnects within a second or two. Each handshake checks a token, reserves a connection slot
//! and (on a cold cache) reads the caller's memberships; served all at once, they queue on the
//! database pool and on the CPU until their clients give up after 30 s and try again, which is
//! how a storm feeds itself.
//!
//! The gate serves [`Config::ws_handshake_concurrency`] handshakes at a time. Others wait in a
//! bounded queue (FIFO: tokio's semaphore is fair) for at most `ws_handshake_wait_ms`; a
//! handshake that finds the queue full, or waits its limit out, is answered at once with 503 and
//! `Retry-After`. The `Retry-After` is random between `ws_retry_after_secs` and twice that, so
//! the refused come back spread out rather than as the next wave; `taskflow.js` and
//! `taskflow client` add their own jitter on top.
//!
//! [`Config::ws_handshake_concurrency`]: crate::config::Config::ws_handshake_concurrency

use crate::config::Config;
use crate::error::{ApiError, BusyReason};
use metrics::{counter, gauge};
use rand::Rng;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// The handshake gate of one node.
pub struct Gate {
    /// Handshakes served at once.
    permits: Semaphore,
    /// Handshakes waiting for a permit.
    waiting: AtomicUsize,
    /// Waiting handshakes at most.
    queue: usize,
    /// How long one may wait.
    wait: Duration,
    /// The least `Retry-After` sent, in seconds.
    retry_after: u64,
}

/// A waiting handshake; counted out however its wait ends (also when its client goes away and
/// the request's future is dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let now = self.0.fetch_sub(1, Ordering::Relaxed) - 1;
        gauge!("handshakes_waiting").set(now as f64);
    }
}

impl Gate {
    /// The gate the configuration describes.
    pub fn new(config: &Config) -> Self {
        Self {
            permits: Semaphore::new(config.ws_handshake_concurrency.max(1)),
            waiting: AtomicUsize::new(0),
            queue: config.ws_handshake_queue,
            wait: Duration::from_millis(config.ws_handshake_wait_ms),
            retry_after: config.ws_retry_after_secs.max(1),
        }
    }

    /// A place to run one handshake, held until its session exists; or the 503 to answer.
    pub async fn enter(&self) -> Result<SemaphorePermit<'_>, ApiError> {
        if let Ok(permit) = self.permits.try_acquire() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(self.refuse(BusyReason::Overloaded));
        }
        let waiting = Waiting(&self.waiting);
        gauge!("handshakes_waiting").set(self.waiting.load(Ordering::Relaxed) as f64);
        let permit = tokio::time::timeout(self.wait, self.permits.acquire()).await;
        drop(waiting);
        match permit {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(self.refuse(BusyReason::Overloaded)),
        }
    }

    /// Whether a handshake arriving now would be refused at once (the queue is full): what a
    /// browser's probe (`GET /ws/tasks` without `Upgrade`) learns, since a browser's WebSocket
    /// cannot read the status of a refused handshake.
    pub fn is_full(&self) -> bool {
        self.permits.available_permits() == 0 && self.waiting.load(Ordering::Relaxed) >= self.queue
    }

    /// The 503 for `reason`, with a jittered `Retry-After`, counted by reason.
    pub fn refuse(&self, reason: BusyReason) -> ApiError {
        counter!("handshakes_refused_total", "reason" => reason.code()).increment(1);
        self.busy(reason)
    }

    /// The 503 for `reason`, not counted (the answer to a probe).
    pub fn busy(&self, reason: BusyReason) -> ApiError {
        ApiError::Busy {
            reason,
            retry_after_secs: rand::thread_rng().gen_range(self.retry_after..=2 * self.retry_after),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(concurrency: usize, queue: usize, wait_ms: u64) -> Gate {
        Gate::new(&Config {
            ws_handshake_concurrency: concurrency,
            ws_handshake_queue: queue,
            ws_handshake_wait_ms: wait_ms,
            ws_retry_after_secs: 3,
            ..Config::default()
        })
    }

    fn retry_after(err: ApiError) -> u64 {
        match err {
            ApiError::Busy {
                reason: BusyReason::Overloaded,
                retry_after_secs,
            } => retry_after_secs,
            other => panic!("expected a busy refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once_with_a_jittered_retry_after() {
        let gate = gate(1, 0, 60_000);
        let _held = gate.enter().await.unwrap();
        assert!(gate.is_full());
        let started = std::time::Instant::now();
        let secs = retry_after(gate.enter().await.unwrap_err());
        assert!(started.elapsed() < Duration::from_secs(1), "not held");
        assert!((3..=6).contains(&secs), "{secs}");
        let seen: std::collections::HashSet<u64> = (0..200)
            .map(|_| retry_after(gate.refuse(BusyReason::Overloaded)))
            .collect();
        assert!(seen.len() > 1 && seen.iter().all(|s| (3..=6).contains(s)));
    }

    #[tokio::test]
    async fn a_waiting_handshake_gets_the_place_a_finished_one_leaves() {
        let gate = std::sync::Arc::new(gate(1, 1, 60_000));
        let held = gate.enter().await.unwrap();
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter().await.map(drop).is_ok() }
        });
        while gate.waiting.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(gate.is_full(), "one running, one waiting");
        drop(held);
        assert!(waiter.await.unwrap());
        assert_eq!(gate.waiting.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_handshake_waits_at_most_its_limit() {
        let gate = gate(1, 8, 2_000);
        let _held = gate.enter().await.unwrap();
        let started = tokio::time::Instant::now();
        retry_after(gate.enter().await.unwrap_err());
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(gate.waiting.load(Ordering::Relaxed), 0, "counted out");
    }
}
