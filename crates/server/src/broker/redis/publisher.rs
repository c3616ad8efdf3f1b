//! Publishes envelopes in the order they were queued, many per round trip (a pipeline of
//! `PUBLISH`es on one connection keeps their order). A failed batch is lost for the other nodes
//! — pub/sub is at most once — and their catch-up from the log delivers it instead.

use super::link::Link;
use super::metrics;
use bytes::Bytes;
use tokio::sync::mpsc;

/// Envelopes per pipeline at most.
const BATCH: usize = 256;

pub(super) async fn run(link: Link, mut queue: mpsc::Receiver<(String, Bytes)>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut failing = false;
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let n = batch.len();
        let Some(mut conn) = link.get() else {
            metrics::publish_failed(n);
            batch.clear();
            continue;
        };
        let mut pipe = redis::pipe();
        for (channel, message) in batch.drain(..) {
            pipe.publish(channel, message.as_ref()).ignore();
        }
        match pipe.query_async::<()>(&mut conn).await {
            Ok(()) => {
                metrics::published(n);
                if failing {
                    tracing::info!("publishing to Redis again");
                    failing = false;
                }
            }
            Err(err) => {
                metrics::publish_failed(n);
                if !failing {
                    tracing::warn!(error = %err, "could not publish to Redis; the other nodes will read the log");
                    failing = true;
                }
            }
        }
    }
}
