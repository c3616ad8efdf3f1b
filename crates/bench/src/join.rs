//! Getting one subscriber in: a TCP connection from the next source address, the WebSocket
//! handshake, the subscription (or the resume). A server in a storm, at a connection limit or
//! draining answers the handshake with 503 and `Retry-After`; a client that waits that long (and
//! a little more, so the refused do not all come back in the same instant) and tries again gets
//! in. That is a delay, not a failure: only a subscriber that never gets in within its patience
//! is one, and the reports count the two apart (`delayed`/`delays` and
//! `failed_connections`/`failures`).

use crate::dial::Dialer;
use crate::target::Target;
use crate::wire::{OpenError, Subscribed, Wire};
use rand::Rng;
use std::time::{Duration, Instant};

/// How long a subscriber keeps trying, and at what.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    /// How long after its first attempt a subscriber may still try again (zero: one attempt).
    pub retry_for: Duration,
    /// Whether other errors (a reset, a timeout, a connection closed before the subscribe
    /// reply) are tried again too, after a short pause, as a reconnecting client does. The
    /// fan-out counts them as failures at once; a storm's clients retry them (`retried`).
    pub errors: bool,
}

/// The pause before another attempt after an error that is not a "not now" (the server named
/// no time): short, since a reconnecting client's first concern is to be back.
const ERROR_PAUSE: Duration = Duration::from_millis(200);

/// A subscriber that got in.
pub struct Joined {
    /// Its connection, subscribed.
    pub wire: Wire,
    /// The subscribe reply.
    pub subscribed: Subscribed,
    /// The reason of the first "not now" it followed, if it was delayed.
    pub delayed_by: Option<String>,
    /// The reasons ([`failure_reason`]) of the errors it tried again after (with
    /// [`Patience::errors`]).
    pub retried: Vec<&'static str>,
}

/// Connects as the holder of `token` and subscribes to `room` (resuming after `since`), following
/// "not now" answers (and, with [`Patience::errors`], retrying errors) for as long as `patience`
/// allows. The error is the last attempt's, in words.
pub async fn join(
    dialer: &Dialer,
    target: &Target,
    token: &str,
    room: &str,
    since: Option<(&str, i64)>,
    patience: &Patience,
) -> Result<Joined, String> {
    let start = Instant::now();
    let deadline = start + patience.retry_for;
    let mut delayed_by = None;
    let mut retried = Vec::new();
    loop {
        let (wait, error) = match attempt(dialer, target, token, room, since).await {
            Ok((wire, subscribed)) => {
                return Ok(Joined {
                    wire,
                    subscribed,
                    delayed_by,
                    retried,
                })
            }
            Err(OpenError::NotNow(not_now)) => {
                delayed_by.get_or_insert_with(|| not_now.reason.clone());
                (jittered(not_now.retry_after), not_now.message)
            }
            Err(OpenError::Failed(error)) if patience.errors => {
                retried.push(failure_reason(&error));
                (jittered(ERROR_PAUSE), error)
            }
            Err(OpenError::Failed(error)) => return Err(error),
        };
        if Instant::now() + wait > deadline {
            if delayed_by.is_some() || !retried.is_empty() {
                // The last error first, so that its reason names the failure.
                return Err(format!(
                    "{error}; still refused after trying for {:.1} s",
                    start.elapsed().as_secs_f64()
                ));
            }
            return Err(error);
        }
        tokio::time::sleep(wait).await;
    }
}

/// How long the TCP connection may take: under a storm the listen queue overflows and the
/// kernel retries the SYN (after 1, 3, 7 s ...), and a client must not wait for minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// One try: dial, handshake, subscribe.
async fn attempt(
    dialer: &Dialer,
    target: &Target,
    token: &str,
    room: &str,
    since: Option<(&str, i64)>,
) -> Result<(Wire, Subscribed), OpenError> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, dialer.dial(target))
        .await
        .map_err(|_| OpenError::Failed("connect timed out".into()))??;
    let mut wire = Wire::open(tcp, target, token).await?;
    let subscribed = wire.subscribe(room, since).await?;
    Ok((wire, subscribed))
}

/// `wait` and up to a quarter more (at least 100 ms more), at random.
fn jittered(wait: Duration) -> Duration {
    let spread = (wait / 4).max(Duration::from_millis(100));
    wait + spread.mul_f64(rand::thread_rng().gen::<f64>())
}

/// A failed subscriber's error as a stable reason, for the reports' `failures` and `retried`.
pub fn failure_reason(err: &str) -> &'static str {
    if err.starts_with("handshake timed out") {
        "handshake_timeout"
    } else if err.starts_with("upgrade refused: 503") {
        "refused_503"
    } else if err.starts_with("upgrade refused: 429") {
        "refused_429"
    } else if err.starts_with("upgrade refused") {
        "refused"
    } else if err.starts_with("no answer to subscribe within") {
        "subscribe_timeout"
    } else if err.starts_with("no answer to subscribe") {
        "closed_before_subscribed"
    } else if err.starts_with("subscribe refused") {
        "subscribe_refused"
    } else if err.starts_with("connect timed out") {
        "connect_timeout"
    } else if err.starts_with("TLS handshake") {
        "tls_handshake"
    } else if err == "no hello" {
        "no_hello"
    } else {
        "connect_error"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subscriber_error_has_a_stable_reason() {
        for (err, reason) in [
            ("handshake timed out", "handshake_timeout"),
            ("upgrade refused: 503 Service Unavailable", "refused_503"),
            (
                "upgrade refused: 503 Service Unavailable (server_full, Retry-After 2 s); still \
                 refused after trying for 4.1 s",
                "refused_503",
            ),
            ("upgrade refused: 429 Too Many Requests", "refused_429"),
            ("upgrade refused: 401 Unauthorized", "refused"),
            ("no answer to subscribe within 30 s", "subscribe_timeout"),
            (
                "no answer to subscribe: closed by the server with 1001 \"\"",
                "closed_before_subscribed",
            ),
            ("subscribe refused: {}", "subscribe_refused"),
            ("TLS handshake: invalid peer certificate", "tls_handshake"),
            ("no hello", "no_hello"),
            ("connect timed out", "connect_timeout"),
            ("Connection refused (os error 111)", "connect_error"),
        ] {
            assert_eq!(failure_reason(err), reason, "{err}");
        }
    }

    #[test]
    fn the_jitter_adds_a_little() {
        for _ in 0..100 {
            let wait = jittered(Duration::from_secs(2));
            assert!(wait >= Duration::from_secs(2) && wait <= Duration::from_millis(2500));
            let short = jittered(Duration::from_millis(200));
            assert!(short >= Duration::from_millis(200) && short <= Duration::from_millis(300));
        }
    }
}
