//! Group commit for SQLite: concurrent writes share one transaction, and so one commit.
//!
//! SQLite has a single writer, and with WAL every commit appends each page the transaction
//! touched to the log (and now and then checkpoints the log into the database file). When every
//! write is its own transaction, that work is done once per write, for the same few pages (the
//! room's row, the last leaf of `tasks`, of `events` and of their indexes). Here writes queue
//! instead, and one task runs them back to back in one transaction, each but the first inside
//! its own savepoint, and commits once.
//!
//! What each caller sees is what it saw with a transaction of its own:
//! - An operation that fails is rolled back alone (to its savepoint; the first operation of a
//!   batch, which has none, by rolling back the transaction before anything else joins it) and
//!   answered with its own error; its neighbours go on.
//! - A successful operation is answered only after the shared COMMIT succeeded, and its events
//!   are published (in queue order, before its caller is answered) only then. If the commit, or
//!   a savepoint step, fails, nothing of the batch is stored, no event of it is published and
//!   every caller of the batch gets an error.
//! - Operations run one at a time, in queue order, on the one writer connection, so offsets are
//!   handed out in that order and a batch commits as a whole: commit order is offset order. A
//!   rolled-back operation takes its offsets back with it, so none is skipped.
//!
//! Nothing waits to fill a batch: it holds whatever queued while the writer was busy, so a lone
//! write costs what it did before (one transaction, no savepoint) and batches grow with load.

use super::tx::{publish, SinkSlot, WriteTx};
use super::{Result, StoreError};
use futures::future::BoxFuture;
use futures::FutureExt;
use sqlx::{AnyConnection, AnyPool, Connection};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use taskflow_protocol::LoggedEvent;
use tokio::sync::{mpsc, oneshot};

/// The most operations one transaction holds, so that one batch cannot keep the log's readers
/// and the answers of its first callers waiting for long.
const MAX_BATCH: usize = 64;

/// The handle writes are queued through; cheap to clone.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    /// The writer task's queue. Unbounded, but every queued job has a caller waiting for it, so
    /// it holds at most one job per write request in flight.
    jobs: mpsc::UnboundedSender<Box<dyn Job>>,
}

impl GroupCommit {
    /// Starts the writer task. It takes the connection from `pool` (the single writer
    /// connection) for each batch and gives it back after, so other users of the pool (imports,
    /// compaction) take turns with it. It ends when every handle is dropped.
    pub(crate) fn start(pool: AnyPool, sink: SinkSlot) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, sink, queue));
        Self { jobs }
    }

    /// Queues `op` and waits until it has committed, or failed.
    pub(crate) async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t, 'c> FnOnce(&'t mut WriteTx<'c>) -> BoxFuture<'t, Result<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(Queued { op, reply }))
            .map_err(|_| StoreError::NotCommitted(None))?;
        // A closed channel means the writer dropped the job without answering: it panicked.
        answer.await.map_err(|_| StoreError::NotCommitted(None))?
    }
}

/// A queued write, its result type erased.
trait Job: Send {
    /// Runs the operation on `tx`; says whether it succeeded and how to answer its caller.
    fn run<'t, 'c>(self: Box<Self>, tx: &'t mut WriteTx<'c>) -> BoxFuture<'t, Ran>;
    /// Answers the caller without running the operation: the batch could not start.
    fn refuse(self: Box<Self>, err: Arc<sqlx::Error>);
}

/// An operation and where its result goes.
struct Queued<T, F> {
    op: F,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for Queued<T, F>
where
    T: Send + 'static,
    F: for<'t, 'c> FnOnce(&'t mut WriteTx<'c>) -> BoxFuture<'t, Result<T>> + Send + 'static,
{
    fn run<'t, 'c>(self: Box<Self>, tx: &'t mut WriteTx<'c>) -> BoxFuture<'t, Ran> {
        let Queued { op, reply } = *self;
        Box::pin(async move {
            match op(tx).await {
                Ok(value) => Ran {
                    ok: true,
                    answer: Box::new(move |committed| {
                        // The caller may have gone (its request was cancelled): nobody to tell.
                        let _ = reply.send(
                            committed
                                .map(|()| value)
                                .map_err(|e| StoreError::NotCommitted(Some(e))),
                        );
                    }),
                },
                Err(err) => Ran {
                    ok: false,
                    answer: Box::new(move |_| {
                        let _ = reply.send(Err(err));
                    }),
                },
            }
        })
    }

    fn refuse(self: Box<Self>, err: Arc<sqlx::Error>) {
        let _ = self.reply.send(Err(StoreError::NotCommitted(Some(err))));
    }
}

/// What running one job did.
struct Ran {
    /// Whether the operation succeeded; its writes are kept only if it did.
    ok: bool,
    /// Answers the caller, given the outcome of the batch's commit. A failed operation is
    /// answered with its own error whatever that outcome.
    answer: Box<dyn FnOnce(Result<(), Arc<sqlx::Error>>) + Send>,
}

/// The writer task: one batch after another, until every handle is gone.
async fn run(pool: AnyPool, sink: SinkSlot, mut queue: mpsc::UnboundedReceiver<Box<dyn Job>>) {
    while let Some(first) = queue.recv().await {
        run_batch(&pool, &sink, first, &mut queue).await;
    }
}

/// Runs `first` and whatever else is queued (up to [`MAX_BATCH`]) in one transaction, commits,
/// then publishes and answers.
async fn run_batch(
    pool: &AnyPool,
    sink: &SinkSlot,
    first: Box<dyn Job>,
    queue: &mut mpsc::UnboundedReceiver<Box<dyn Job>>,
) {
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(err) => return first.refuse(Arc::new(err)),
    };
    // The first operation runs without a savepoint: if it fails, the transaction holds nothing
    // else yet, and rolling it back (which dropping it does) undoes exactly that operation.
    let (ran, events) = run_job(first, &mut tx).await;
    if !ran.ok {
        // If the rollback fails, dropping the transaction tries again; the error is the
        // operation's own either way.
        let _ = tx.rollback().await;
        return (ran.answer)(Ok(()));
    }
    let mut done: Vec<(Ran, Vec<LoggedEvent>)> = vec![(ran, events)];
    while done.len() < MAX_BATCH {
        let Ok(job) = queue.try_recv() else { break };
        let mut savepoint = match tx.begin().await {
            Ok(savepoint) => savepoint,
            Err(err) => {
                let err = Arc::new(err);
                job.refuse(err.clone());
                return fail(done, err);
            }
        };
        let (ran, events) = run_job(job, &mut savepoint).await;
        let step = if ran.ok {
            savepoint.commit().await
        } else {
            savepoint.rollback().await
        };
        match step {
            Ok(()) if ran.ok => done.push((ran, events)),
            Ok(()) => (ran.answer)(Ok(())),
            Err(err) => {
                // The transaction is in an unknown state: give up the whole batch (dropping `tx`
                // rolls it back).
                let err = Arc::new(err);
                (ran.answer)(Err(err.clone()));
                return fail(done, err);
            }
        }
    }
    match tx.commit().await {
        Ok(()) => {
            for (ran, events) in done {
                publish(sink, events);
                (ran.answer)(Ok(()));
            }
        }
        Err(err) => fail(done, Arc::new(err)),
    }
}

/// Runs one job on `conn` (inside the batch's transaction or a savepoint of it). A panic counts
/// as a failure: the caller, whose reply channel unwound with the job, gets an error.
async fn run_job(job: Box<dyn Job>, conn: &mut AnyConnection) -> (Ran, Vec<LoggedEvent>) {
    let mut tx = WriteTx::new(conn);
    let ran = match AssertUnwindSafe(job.run(&mut tx)).catch_unwind().await {
        Ok(ran) => ran,
        Err(_) => {
            tracing::error!("a write operation panicked; it was rolled back");
            Ran {
                ok: false,
                answer: Box::new(|_| ()),
            }
        }
    };
    (ran, tx.into_events())
}

/// Answers every operation of a batch that was not committed.
fn fail(done: Vec<(Ran, Vec<LoggedEvent>)>, err: Arc<sqlx::Error>) {
    tracing::error!(error = %err, operations = done.len(), "a batch of writes failed to commit");
    for (ran, _) in done {
        (ran.answer)(Err(err.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::super::log::lock_room;
    use super::super::tx::EventSink;
    use super::super::{now_ms, Store, StoreError};
    use std::sync::{Arc, Mutex};
    use taskflow_protocol::{EventKind, LoggedEvent};

    /// Every event the store published, in publication order.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<LoggedEvent>>);

    impl EventSink for Recorder {
        fn committed(&self, events: Vec<LoggedEvent>) {
            self.0.lock().unwrap().extend(events);
        }
    }

    /// Write `n`: appends one event carrying `n` to the default project's room, then fails if
    /// `fail`, after its event is in (so a rollback has something to undo).
    async fn write(store: &Store, n: u32, fail: bool) -> Result<u32, StoreError> {
        store
            .write(move |tx| {
                Box::pin(async move {
                    lock_room(tx, "project:default").await?;
                    let data = serde_json::json!({ "n": n });
                    tx.append(
                        "project:default",
                        EventKind::MessageCreated,
                        &data,
                        now_ms(),
                    )
                    .await?;
                    if fail {
                        return Err(StoreError::Corrupt(format!("write {n} fails")));
                    }
                    Ok(n)
                })
            })
            .await
    }

    /// A store on a fresh SQLite file (kept while the directory lives) whose published events are
    /// recorded.
    async fn recorded_store() -> (tempfile::TempDir, Store, Arc<Recorder>) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        let sink = Arc::new(Recorder::default());
        store.set_event_sink(sink.clone());
        (dir, store, sink)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_is_rolled_back_alone_and_the_batch_commits() {
        let (_dir, store, sink) = recorded_store().await;
        // Writes 0 and 3, 7 and 11 fail. 0 is the first of its batch (no savepoint: its
        // transaction is rolled back whole); the others share the next batch with 1 to 10.
        let failing = |n: u32| [0, 3, 7, 11].contains(&n);
        // Holding the writer connection makes every write below queue (in order: one poll of
        // `join_all` polls each future once) until it is released.
        let held = store.write.acquire().await.unwrap();
        let writes: Vec<_> = (0..12).map(|n| write(&store, n, failing(n))).collect();
        let mut all = Box::pin(futures::future::join_all(writes));
        assert!(futures::poll!(&mut all).is_pending());
        drop(held);
        let results = all.await;

        for (n, result) in (0..12).zip(&results) {
            match result {
                Ok(value) => assert!(!failing(n) && *value == n, "write {n}: {result:?}"),
                Err(StoreError::Corrupt(why)) => {
                    assert!(failing(n) && *why == format!("write {n} fails"), "{why}")
                }
                Err(other) => panic!("write {n}: {other}"),
            }
        }
        let kept: Vec<u32> = (0..12).filter(|&n| !failing(n)).collect();
        let logged = store.events_after("project:default", 0, 100).await.unwrap();
        let offsets: Vec<i64> = logged.iter().map(|e| e.offset).collect();
        assert_eq!(
            offsets,
            (1..=kept.len() as i64).collect::<Vec<_>>(),
            "no hole"
        );
        let ns: Vec<u32> = logged
            .iter()
            .map(|e| e.data["n"].as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            ns, kept,
            "the successful writes, in queue order, and nothing else"
        );
        let published = sink.0.lock().unwrap().clone();
        assert_eq!(
            published, logged,
            "exactly the committed events were published"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_that_cannot_start_fails_every_write_and_publishes_nothing() {
        let (_dir, store, sink) = recorded_store().await;
        store.write.close().await;
        let results = futures::future::join_all((0..3).map(|n| write(&store, n, false))).await;
        for result in results {
            assert!(
                matches!(result, Err(StoreError::NotCommitted(Some(_)))),
                "{result:?}"
            );
        }
        assert!(sink.0.lock().unwrap().is_empty());
    }
}
