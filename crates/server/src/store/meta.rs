//! Facts about the database itself: its epoch, and the secrets generated on first start.

use super::{Result, Store};
use sqlx::AnyPool;

/// Reads the epoch, creating it the first time. `ON CONFLICT DO NOTHING` makes concurrent first
/// starts (several nodes on one new database) agree on one value.
pub(crate) async fn ensure_epoch(pool: &AnyPool) -> Result<String> {
    let fresh = uuid::Uuid::now_v7().to_string();
    insert_if_absent(pool, "epoch", &fresh).await?;
    Ok(
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'epoch'")
            .fetch_one(pool)
            .await?,
    )
}

async fn insert_if_absent(pool: &AnyPool, key: &str, value: &str) -> Result<bool> {
    let done =
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key.to_owned())
            .bind(value.to_owned())
            .execute(pool)
            .await?;
    Ok(done.rows_affected() == 1)
}

impl Store {
    /// A value kept in the database's `meta` table (generated secrets live here, beside the data
    /// they protect, so every node of a cluster reads the same ones).
    pub async fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key.to_owned())
            .fetch_optional(&self.read)
            .await?)
    }

    /// Stores `value` under `key` unless a value is there already; true if this call stored it.
    pub async fn set_meta_if_absent(&self, key: &str, value: &str) -> Result<bool> {
        insert_if_absent(&self.write, key, value).await
    }
}
