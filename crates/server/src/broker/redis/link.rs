//! The node's command connection to Redis (publishes, presence): a `ConnectionManager`, which
//! reconnects by itself once it exists. Creating it needs Redis up, so a task keeps trying in the
//! background and the node starts (and serves its local clients) whether Redis is there or not.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;
use tokio::sync::watch;

/// A handle to the command connection, there once Redis has answered once.
#[derive(Clone)]
pub(crate) struct Link {
    /// `None` until the first connection succeeds.
    conn: watch::Receiver<Option<ConnectionManager>>,
}

impl Link {
    /// Starts connecting to `client` in the background.
    pub(crate) fn start(client: redis::Client) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(async move {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Duration::from_secs(1))
                .set_response_timeout(Duration::from_secs(2))
                .set_number_of_retries(2)
                .set_max_delay(1_000);
            let mut delay = Duration::from_millis(100);
            loop {
                match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                    Ok(conn) => {
                        let _ = tx.send(Some(conn));
                        return;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "Redis unreachable; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        (Self { conn: rx }, task)
    }

    /// The connection, if Redis was reached once (it may be down now: commands then fail).
    pub(crate) fn get(&self) -> Option<ConnectionManager> {
        self.conn.borrow().clone()
    }
}
