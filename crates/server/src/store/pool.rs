//! How many database connections a node opens, and what it can tell of them while running.
//!
//! Each node has two pools: the writer's and the readers'. With SQLite the writer is one
//! connection (SQLite allows one writer at a time; writes queue in the group commit), the
//! readers the rest. With PostgreSQL the writers get `database_write_connections` of the node's
//! `database_max_connections`, the readers the rest: a storm of reads (handshakes, replays)
//! then cannot take every connection and leave a write waiting for one.
//!
//! PostgreSQL allows `max_connections` (100 by default, 3 of them reserved for superusers), for
//! every node together: with the default of 9 per node, ten nodes fit (90 of 97). With SQLite
//! the default is one writer and eight readers, more than two cores keep busy. At start a node
//! compares what it may open with the room the server has left and warns when it does not fit,
//! since a pool that cannot grow shows only later, as slow acquires under load.

use sqlx::{AnyPool, Row};
use std::time::{Duration, Instant};

/// The pools' sizes, from `database_max_connections` and `database_write_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSizes {
    /// Connections of the node in all, readers and writers.
    pub max: u32,
    /// Of those, the writers' (PostgreSQL; SQLite always has one writer).
    pub writers: u32,
    /// How long a query may wait for a PostgreSQL connection before it fails (SQLite's wait
    /// 120 s: a large import holds the one writer, and other writes wait for it).
    pub acquire_timeout: Duration,
}

impl Default for PoolSizes {
    fn default() -> Self {
        Self {
            max: 9,
            writers: 3,
            acquire_timeout: Duration::from_secs(30),
        }
    }
}

impl PoolSizes {
    /// `(readers, writers)` for SQLite: one writer, at least one reader.
    pub(crate) fn sqlite(self) -> (u32, u32) {
        (self.max.saturating_sub(1).max(1), 1)
    }

    /// `(readers, writers)` for PostgreSQL: at least one of each, `max` in all (two at least).
    pub(crate) fn postgres(self) -> (u32, u32) {
        let max = self.max.max(2);
        let writers = self.writers.clamp(1, max - 1);
        (max - writers, writers)
    }
}

/// One pool, as seen now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    /// `read` or `write`.
    pub pool: &'static str,
    /// The most it may open.
    pub max: u32,
    /// Open now.
    pub open: u32,
    /// Open and not in use.
    pub idle: u32,
}

impl PoolStats {
    pub(crate) fn of(pool: &'static str, max: u32, handle: &AnyPool) -> Self {
        Self {
            pool,
            max,
            open: handle.size(),
            idle: u32::try_from(handle.num_idle()).unwrap_or(u32::MAX),
        }
    }

    /// Connections in use.
    pub fn busy(&self) -> u32 {
        self.open.saturating_sub(self.idle)
    }
}

/// How long taking a connection from `pool` takes now (a probe: the connection goes back at
/// once). Under saturation this is the wait every query sees.
pub(crate) async fn acquire_time(pool: &AnyPool) -> sqlx::Result<Duration> {
    let start = Instant::now();
    let conn = pool.acquire().await?;
    let took = start.elapsed();
    drop(conn);
    Ok(took)
}

/// What the PostgreSQL server has room for, read at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServerRoom {
    /// `max_connections`.
    pub max_connections: u32,
    /// `superuser_reserved_connections`.
    pub reserved: u32,
    /// Connections open on the server now, this node's own included.
    pub in_use: u32,
}

impl ServerRoom {
    /// Reads the server's settings and its current connections.
    pub(crate) async fn read(pool: &AnyPool) -> sqlx::Result<Self> {
        let row = sqlx::query(
            "SELECT CAST(current_setting('max_connections') AS INTEGER) AS max_connections, \
             CAST(current_setting('superuser_reserved_connections') AS INTEGER) AS reserved, \
             CAST((SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') \
             AS INTEGER) AS in_use",
        )
        .fetch_one(pool)
        .await?;
        let get = |name: &str| -> sqlx::Result<u32> {
            Ok(u32::try_from(row.try_get::<i32, _>(name)?).unwrap_or(0))
        };
        Ok(Self {
            max_connections: get("max_connections")?,
            reserved: get("reserved")?,
            in_use: get("in_use")?,
        })
    }

    /// Why a node that may open `wanted` connections, `open` of which it holds already, does
    /// not fit on this server, or `None` if it does.
    pub(crate) fn shortfall(&self, wanted: u32, open: u32) -> Option<String> {
        let room = self
            .max_connections
            .saturating_sub(self.reserved)
            .saturating_sub(self.in_use.saturating_sub(open));
        (wanted > room).then(|| {
            format!(
                "this node may open {wanted} database connections (database_max_connections), but \
                 PostgreSQL has room for {room} (max_connections {}, {} reserved for superusers, \
                 {} in use by others): under load its queries will wait for connections. Lower \
                 database_max_connections on every node, or raise max_connections",
                self.max_connections,
                self.reserved,
                self.in_use.saturating_sub(open)
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_has_one_writer_and_the_rest_read() {
        let sizes = PoolSizes::default();
        assert_eq!(sizes.sqlite(), (8, 1));
        assert_eq!(PoolSizes { max: 1, ..sizes }.sqlite(), (1, 1));
    }

    #[test]
    fn postgres_splits_the_node_s_connections_and_keeps_one_of_each() {
        let sizes = PoolSizes::default();
        assert_eq!(sizes.postgres(), (6, 3));
        assert_eq!(
            PoolSizes {
                max: 3,
                writers: 8,
                ..sizes
            }
            .postgres(),
            (1, 2)
        );
        assert_eq!(
            PoolSizes {
                max: 1,
                writers: 0,
                ..sizes
            }
            .postgres(),
            (1, 1)
        );
    }

    #[test]
    fn ten_default_nodes_fit_under_postgres_defaults_and_an_eleventh_does_not() {
        let per_node = PoolSizes::default().max;
        let default = ServerRoom {
            max_connections: 100,
            reserved: 3,
            in_use: 0,
        };
        // Nine nodes hold their connections; the tenth, with 2 open already, fits.
        let tenth = ServerRoom {
            in_use: 9 * per_node + 2,
            ..default
        };
        assert_eq!(tenth.shortfall(per_node, 2), None);
        let eleventh = ServerRoom {
            in_use: 10 * per_node + 2,
            ..default
        };
        let why = eleventh
            .shortfall(per_node, 2)
            .expect("the eleventh does not fit");
        assert!(why.contains("room for 7 "), "{why}");
        assert!(why.contains("max_connections 100, 3 reserved"), "{why}");
    }
}
