//! The store: tasks, projects, members and the event log, on SQLite (the embedded default) or
//! PostgreSQL, chosen by the URL scheme.
//!
//! One implementation serves both backends through sqlx's `Any` driver: the schema and every
//! query are written in the SQL the two share (`$n` placeholders, `RETURNING`, `ON CONFLICT`), so
//! there is one code path to test and no drift between two copies. What differs (connection
//! setup, the single SQLite writer) is confined to [`Backend`].
//!
//! Every write runs in one transaction that also appends its events to the log. Its first
//! statement locks the room's row in `rooms`, so writers of one project are serialized: offsets
//! have no holes or repeats, and rules that read before they write (cycle detection, claiming the
//! next task) cannot race. With SQLite, concurrent writes share a transaction (group commit,
//! [`group`]): each still succeeds or fails alone, and is answered only once committed.

mod chat;
mod dedup;
mod direct;
mod docs;
mod error;
mod group;
mod history;
mod import;
mod log;
mod meta;
mod pool;
mod projects;
mod rows;
mod tasks;
mod tx;

pub use docs::StoredDoc;
pub use error::{DependencyError, StoreError};
pub use import::{ImportEvents, ImportSpec, Importer, LineError};
pub use pool::{PoolSizes, PoolStats};
pub use tasks::{TaskCursor, TaskFilter};
pub use tx::EventSink;

use futures::future::BoxFuture;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyConnection;
use sqlx::{AnyPool, Executor};
use std::time::Duration;

/// Result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file: WAL mode, one writer connection.
    Sqlite,
    /// A PostgreSQL server: a pool of connections, row locks serialize writers per room.
    Postgres,
}

impl Backend {
    /// Picks the backend from the URL scheme.
    pub fn from_url(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }
}

/// A handle to the store; cheap to clone (the pools are reference-counted).
#[derive(Clone)]
pub struct Store {
    /// Connections for reads. For SQLite these run beside the writer thanks to WAL.
    read: AnyPool,
    /// Connections for write transactions. SQLite allows one writer at a time, so its pool has
    /// exactly one connection: writers queue in the pool instead of failing with SQLITE_BUSY.
    write: AnyPool,
    /// The most each pool may open: `(readers, writers)`.
    sizes: (u32, u32),
    /// Identifies this database's history; it changes only when the database is new.
    epoch: String,
    /// Which database this is.
    backend: Backend,
    /// Receives the events of every committed write.
    sink: tx::SinkSlot,
    /// SQLite's group commit, which every write goes through; `None` for PostgreSQL, where each
    /// write is its own transaction on a connection of its own.
    group: Option<group::GroupCommit>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl Store {
    /// Connects with the default pool sizes; see [`Store::connect_with`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, PoolSizes::default()).await
    }

    /// Connects, creating an SQLite file if missing, and runs the embedded migrations. With
    /// PostgreSQL, warns when the server has no room for the pools at their full size (see
    /// [`pool`]).
    pub async fn connect_with(url: &str, sizes: PoolSizes) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let (read, write, split) = match backend {
            // Readers and the writer are separate pools: an in-memory database would be a
            // different, empty database for each of them.
            Backend::Sqlite if url.contains(":memory:") => return Err(StoreError::UnsupportedUrl),
            Backend::Sqlite => {
                let url = sqlite_url(url);
                let (readers, writers) = sizes.sqlite();
                let write = sqlite_pool(&url, writers).await?;
                // Migrations create the file and switch it to WAL before readers open it.
                MIGRATOR.run(&write).await?;
                let read = sqlite_pool(&url, readers).await?;
                (read, write, (readers, writers))
            }
            Backend::Postgres => {
                let (readers, writers) = sizes.postgres();
                let options = |size| {
                    AnyPoolOptions::new()
                        .max_connections(size)
                        .acquire_timeout(sizes.acquire_timeout)
                };
                let write = options(writers).connect(url).await?;
                MIGRATOR.run(&write).await?;
                let read = options(readers).connect(url).await?;
                (read, write, (readers, writers))
            }
        };
        let epoch = meta::ensure_epoch(&write).await?;
        if backend == Backend::Postgres {
            match pool::ServerRoom::read(&read).await {
                Ok(room) => {
                    let open = read.size() + write.size();
                    if let Some(why) = room.shortfall(split.0 + split.1, open) {
                        tracing::warn!("{why}");
                    }
                }
                Err(err) => tracing::debug!(%err, "cannot read PostgreSQL's connection limits"),
            }
        }
        let sink = tx::SinkSlot::default();
        let group = (backend == Backend::Sqlite)
            .then(|| group::GroupCommit::start(write.clone(), sink.clone()));
        Ok(Self {
            read,
            write,
            sizes: split,
            epoch,
            backend,
            sink,
            group,
        })
    }

    /// The epoch of this database's event log: stable across restarts, new with a new database.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Sets where committed events go. Only the first call has an effect: one store feeds one
    /// hub.
    pub fn set_event_sink(&self, sink: std::sync::Arc<dyn EventSink>) {
        let _ = self.sink.set(sink);
    }

    /// Runs `op` as one write: in a transaction, committed if `op` succeeds and rolled back if
    /// it fails; the events it appended reach the sink after the commit, before this returns.
    /// With SQLite, `op` runs on the group-commit task and may share its transaction with other
    /// writes (each in its own savepoint), which changes nothing of the above.
    pub(crate) async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t, 'c> FnOnce(&'t mut tx::WriteTx<'c>) -> BoxFuture<'t, Result<T>> + Send + 'static,
    {
        if let Some(group) = &self.group {
            return group.write(op).await;
        }
        let mut db = self.write.begin().await?;
        let mut tx = tx::WriteTx::new(&mut db);
        let value = op(&mut tx).await?;
        let events = tx.into_events();
        db.commit().await?;
        tx::publish(&self.sink, events);
        Ok(value)
    }

    /// Answers whether the database is reachable, for `/readyz`: how long a reader's connection
    /// took to get (the wait every query sees when the pool is saturated).
    pub async fn ping(&self) -> Result<Duration> {
        let start = std::time::Instant::now();
        let mut conn = self.read.acquire().await?;
        let acquired = start.elapsed();
        conn.execute("SELECT 1").await?;
        Ok(acquired)
    }

    /// Why this node's pools do not fit in what the database server has left, if they do not
    /// (PostgreSQL; `None` for SQLite): the warning a node logs at start, asked again.
    pub async fn connection_shortfall(&self) -> Result<Option<String>> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let room = pool::ServerRoom::read(&self.read).await?;
        let open = self.read.size() + self.write.size();
        Ok(room.shortfall(self.sizes.0 + self.sizes.1, open))
    }

    /// Both pools as they are now: readers first, then writers.
    pub fn pool_stats(&self) -> [PoolStats; 2] {
        [
            PoolStats::of("read", self.sizes.0, &self.read),
            PoolStats::of("write", self.sizes.1, &self.write),
        ]
    }

    /// How long taking a connection from each pool takes now, readers first. The SQLite writer
    /// is not probed: the group commit holds it for each batch, and a probe would only queue
    /// behind writes.
    pub async fn acquire_times(&self) -> Result<Vec<(&'static str, Duration)>> {
        let mut times = vec![("read", pool::acquire_time(&self.read).await?)];
        if self.group.is_none() {
            times.push(("write", pool::acquire_time(&self.write).await?));
        }
        Ok(times)
    }

    /// Closes every connection; used on shutdown so SQLite checkpoints its WAL.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// sqlx creates a missing SQLite file only in `rwc` mode; a bare `sqlite://taskflow.db` should
/// just work on a first run.
fn sqlite_url(url: &str) -> String {
    if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

async fn sqlite_pool(url: &str, size: u32) -> Result<AnyPool> {
    Ok(AnyPoolOptions::new()
        .max_connections(size)
        .min_connections(1)
        // A large import holds the writer; other writes wait for it rather than fail fast.
        .acquire_timeout(Duration::from_secs(120))
        .after_connect(|conn: &mut AnyConnection, _meta| {
            Box::pin(async move {
                // WAL lets readers run beside the writer; NORMAL sync in WAL mode is durable
                // against a process crash (SIGKILL), which is what the crash test checks.
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute("PRAGMA synchronous = NORMAL").await?;
                conn.execute("PRAGMA foreign_keys = ON").await?;
                conn.execute("PRAGMA busy_timeout = 10000").await?;
                Ok(())
            })
        })
        .connect(url)
        .await?)
}

/// Milliseconds since the Unix epoch: how the store keeps time.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
