//! Exponential backoff with full jitter: after the n-th failure in a row, wait a uniformly random
//! time between zero and `min(cap, base * 2^n)`. The randomness spreads out the clients that a
//! server restart disconnected all at once, so they do not come back all at once.

use rand::Rng;
use std::time::Duration;

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
}
