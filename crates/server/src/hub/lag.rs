//! Back-pressure from the fan-out to the writers: how many connections are behind although
//! their clients read, so that writes can wait for them instead of overrunning their queues.
//!
//! A connection whose queue fills up is closed as a slow consumer (`ws_queue_messages`). That
//! is right for a client that stopped reading, and wrong for one whose connection task simply
//! has not had the CPU yet: when publishers can commit faster than the server writes to
//! sockets, every queue grows together, and healthy clients would be cut off. With connection
//! tasks on the same run queue as the request handlers that is rare (a handler waits its turn
//! behind the writers); with `ws_threads` they are on runtimes of their own and nothing else
//! slows the publishers down. So each session tells this gauge when its queue passes half its
//! limit while its socket still takes data (it is *lagging*: the server's fault, not the
//! client's), and again when it has caught up, or its socket filled (now it is the client that
//! is slow, and the queue limit deals with it), or it ended. Writes wait, for a bounded time,
//! while any session lags.
//!
//! The gauge changes only when a session crosses a threshold, never per message.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// How many sessions lag, and a signal for when none does.
#[derive(Debug, Default)]
pub struct FanoutLag {
    lagging: AtomicUsize,
    caught_up: Notify,
}

impl FanoutLag {
    /// One more session lags. Called by sessions; public so that a test can stage a lag.
    pub fn enter(&self) {
        self.lagging.fetch_add(1, Ordering::AcqRel);
    }

    /// One session no longer lags.
    pub fn leave(&self) {
        if self.lagging.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.caught_up.notify_waiters();
        }
    }

    /// Sessions lagging now.
    pub fn lagging(&self) -> usize {
        self.lagging.load(Ordering::Acquire)
    }

    /// Waits until no session lags, or `max_wait` passed: a bound, so that nothing that keeps a
    /// session lagging (its own task waiting here, say) can stop writes for longer. Returns
    /// whether it waited.
    pub async fn caught_up(&self, max_wait: Duration) -> bool {
        let notified = self.caught_up.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.lagging() == 0 {
            return false;
        }
        let _ = tokio::time::timeout(max_wait, notified).await;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn writes_wait_while_a_session_lags_and_go_on_when_it_caught_up() {
        let lag = Arc::new(FanoutLag::default());
        assert!(!lag.caught_up(Duration::from_secs(5)).await, "nobody lags");
        lag.enter();
        lag.enter();
        let waiter = tokio::spawn({
            let lag = lag.clone();
            async move { lag.caught_up(Duration::from_secs(30)).await }
        });
        tokio::task::yield_now().await;
        lag.leave();
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one session still lags");
        lag.leave();
        assert!(waiter.await.unwrap(), "released once none lags");
        assert_eq!(lag.lagging(), 0);
    }

    #[tokio::test]
    async fn the_wait_is_bounded() {
        let lag = FanoutLag::default();
        lag.enter();
        // Nobody leaves: the bound alone ends the wait.
        assert!(lag.caught_up(Duration::from_millis(50)).await);
        assert_eq!(lag.lagging(), 1);
    }
}
