//! SQLite's write-ahead log, copied into the database file in the background.
//!
//! SQLite normally checkpoints inside the commit that grows the log past 1,000 pages: that
//! commit copies the log into the database file and syncs it, which takes tens of milliseconds
//! while every write queued behind it waits (the p99 of webhook ingress came from there). The
//! writer connection has `wal_autocheckpoint=0`, and this task runs a `PASSIVE` checkpoint on a
//! reader connection every [`EVERY`] instead: it copies what no reader still needs, never blocks
//! the writer, and the writer starts the log over once it has all been copied.

use std::sync::Weak;
use std::time::Duration;

use sqlx::SqlitePool;

use crate::Result;

/// How often the log is copied. At 1,000 webhook deliveries a second that is a few megabytes.
pub(crate) const EVERY: Duration = Duration::from_millis(250);

/// Checkpoints every [`EVERY`] until the store is closed or dropped.
pub(crate) async fn run<T: Send + Sync + 'static>(pool: SqlitePool, store: Weak<T>) {
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if store.strong_count() == 0 || pool.is_closed() {
            return;
        }
        if let Err(e) = passive(&pool).await {
            tracing::warn!(error = %e, "SQLite checkpoint failed; the next one tries again");
        }
    }
}

/// One `PASSIVE` checkpoint: (frames in the log, frames now in the database file).
pub(crate) async fn passive(pool: &SqlitePool) -> Result<(i64, i64)> {
    let (_busy, log, checkpointed): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(pool)
            .await?;
    Ok((log, checkpointed))
}
