//! Exponential backoff with full jitter: after the n-th failure in a row, wait a uniformly random
//! time between zero and `min(cap, base * 2^n)`. The randomness spreads out the clients that a
//! server restart disconnected all at once, so they do not come back all at once.
//!
//! A server that refuses the handshake with 503 and `Retry-After` knows better than the
//! schedule: [`Backoff::after_retry_after`] waits at least that long, with jitter on top, so
//! the clients a drained or overloaded node turned away do not all return in the same second.

use rand::Rng;
use std::time::Duration;

/// The longest `Retry-After` honoured as it is: a larger one (a misconfigured server) is read as
/// this, so a client never sits out for hours on one answer.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A retry schedule.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The first ceiling.
    base: Duration,
    /// The largest ceiling.
    cap: Duration,
    /// Failures in a row so far.
    failures: u32,
}

impl Backoff {
    /// A schedule starting at `base`, never above `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            failures: 0,
        }
    }

    /// The ceiling for the next wait.
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(20));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next wait, and one more failure counted.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        rand::thread_rng().gen_range(Duration::ZERO..=ceiling)
    }

    /// The next wait after a refusal that said `Retry-After: retry_after`: uniformly random
    /// between `retry_after` and twice that (the server's value is jittered already; this
    /// spreads the clients that got the same one), never below `retry_after` (up to
    /// [`MAX_RETRY_AFTER`]) and never above [`MAX_RETRY_AFTER`] beyond it. `taskflow.js` waits
    /// the same (`retryAfterDelay`). Counts as a failure like any other, so a refusal followed
    /// by lost connections keeps backing off rather than starting over.
    pub fn after_retry_after(&mut self, retry_after: Duration) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let least = retry_after.min(MAX_RETRY_AFTER);
        let most = least.saturating_mul(2).min(MAX_RETRY_AFTER.max(least));
        rand::thread_rng().gen_range(least..=most)
    }

    /// A connection succeeded: start again from `base`.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut ceilings = Vec::new();
        for _ in 0..9 {
            ceilings.push(b.ceiling().as_millis());
            let delay = b.next_delay();
            assert!(delay <= Duration::from_secs(30));
        }
        assert_eq!(
            ceilings,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(500));
    }

    #[test]
    fn delays_are_jittered_within_the_ceiling() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..200).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(1)));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 100, "full jitter spreads the delays");
        assert!(delays.iter().any(|d| *d < Duration::from_millis(500)));
    }

    #[test]
    fn a_retry_after_is_waited_at_least_with_jitter_up_to_twice() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let delays: Vec<Duration> = (0..200)
            .map(|_| b.after_retry_after(Duration::from_secs(2)))
            .collect();
        assert!(
            delays
                .iter()
                .all(|d| (Duration::from_secs(2)..=Duration::from_secs(4)).contains(d)),
            "{delays:?}"
        );
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 100, "jittered, not all the same");
        assert!(delays.iter().any(|d| *d < Duration::from_secs(3)));
        assert!(delays.iter().any(|d| *d > Duration::from_secs(3)));
    }

    #[test]
    fn a_retry_after_is_capped_and_counts_as_a_failure() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        // Near the most: at least the Retry-After, the jitter stops at MAX_RETRY_AFTER (not at
        // the backoff's cap: the server's answer outranks the schedule).
        for _ in 0..50 {
            let d = b.after_retry_after(Duration::from_secs(40));
            assert!(
                (Duration::from_secs(40)..=MAX_RETRY_AFTER).contains(&d),
                "{d:?}"
            );
        }
        // Beyond it: MAX_RETRY_AFTER.
        assert_eq!(b.after_retry_after(MAX_RETRY_AFTER), MAX_RETRY_AFTER);
        assert_eq!(
            b.after_retry_after(Duration::from_secs(3600)),
            MAX_RETRY_AFTER
        );

        // A refusal is a failure: the schedule goes on from where it was, not from the base.
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        b.next_delay();
        b.after_retry_after(Duration::from_secs(1));
        assert_eq!(b.ceiling(), Duration::from_secs(2));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(500));
    }
}
