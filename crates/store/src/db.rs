//! The plumbing every table module shares, so that a new table copies none of it: running a
//! query on the right pool of either backend, transactions ([`Tx`] for writes that commit
//! together, `in_transaction!` for a store method's own), timestamps, and pages of list reads.
//!
//! Queries are generic over the backend, so the helpers that run them are macros: the body is
//! written once and compiled for each backend's connection type (all of them are `on_pool!`).
//!
//! - `on_reader!(store, |pool| …)`: reads (SQLite: the reader pool, in parallel under WAL).
//! - `on_writer!(store, |pool| …)`: one write statement without a transaction of its own
//!   (SQLite: the one writer connection).
//! - `in_transaction!(store, |tx| …)`: a new transaction (SQLite: on the writer); the body
//!   commits, and dropping the transaction rolls it back.
//! - `on_tx!(tx, |conn| …)`: the connection of an open [`Tx`].
//!
//! Timestamps are truncated to microseconds ([`ts`]), PostgreSQL's precision, so that both
//! backends store the same values. On SQLite they are RFC 3339 text in UTC written by sqlx in
//! one format, so text order is time order.

use chrono::{DateTime, SubsecRound, Utc};

use crate::signals::Signal;
use crate::{Inner, Result, Store};

/// Runs `$body` with `$conn` bound to a pool of the store: on SQLite the one named `$sqlite`
/// (`reader` or `writer`), on PostgreSQL its one pool. What the helpers below are made of.
macro_rules! on_pool {
    ($store:expr, $sqlite:ident, |$conn:ident| $body:expr) => {
        match &$store.inner {
            $crate::Inner::Sqlite { $sqlite, .. } => {
                let $conn = $sqlite;
                $body
            }
            $crate::Inner::Postgres(pool) => {
                let $conn = pool;
                $body
            }
        }
    };
}
pub(crate) use on_pool;

/// Runs `$body` with `$conn` bound to the pool for reads (SQLite: the reader pool).
macro_rules! on_reader {
    ($store:expr, |$conn:ident| $body:expr) => {
        $crate::db::on_pool!($store, reader, |$conn| $body)
    };
}
pub(crate) use on_reader;

/// Runs `$body` with `$conn` bound to the pool for writes (SQLite: the one writer connection's
/// pool), for a single statement that needs no transaction of its own.
macro_rules! on_writer {
    ($store:expr, |$conn:ident| $body:expr) => {
        $crate::db::on_pool!($store, writer, |$conn| $body)
    };
}
pub(crate) use on_writer;

/// Runs `$body` with `$tx` bound to a new transaction (SQLite: on the one writer connection).
/// `$body` must commit; dropping the transaction rolls it back.
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $body:expr) => {
        $crate::db::on_pool!($store, writer, |pool| {
            let mut $tx = pool.begin().await?;
            $body
        })
    };
}
pub(crate) use in_transaction;

/// Runs `$body` with `$conn` bound to the open transaction's connection, on either backend.
macro_rules! on_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match &mut $tx.inner {
            $crate::db::TxInner::Sqlite(tx) => {
                let $conn = &mut **tx;
                $body
            }
            $crate::db::TxInner::Postgres(tx) => {
                let $conn = &mut **tx;
                $body
            }
        }
    };
}
pub(crate) use on_tx;

/// A transaction that writes of several tables share (a webhook delivery and its job are
/// stored together or not at all). Dropping it without [`Tx::commit`] rolls back.
pub struct Tx {
    pub(crate) inner: TxInner,
    store: Store,
    /// A job was enqueued in it: the commit wakes the workers.
    pub(crate) queued: bool,
}

pub(crate) enum TxInner {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Tx {
    pub async fn commit(self) -> Result<()> {
        match self.inner {
            TxInner::Sqlite(tx) => tx.commit().await?,
            TxInner::Postgres(tx) => tx.commit().await?,
        }
        if self.queued {
            self.store.signal_local(Signal::JobsQueued);
        }
        Ok(())
    }
}

impl Store {
    /// Starts a transaction for writes that commit together (enqueues among them).
    pub async fn begin(&self) -> Result<Tx> {
        let inner = match &self.inner {
            Inner::Sqlite { writer, .. } => TxInner::Sqlite(writer.begin().await?),
            Inner::Postgres(pool) => TxInner::Postgres(pool.begin().await?),
        };
        Ok(Tx {
            inner,
            store: self.clone(),
            queued: false,
        })
    }
}

/// Both backends keep microseconds.
pub(crate) fn ts(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

/// A time as seconds since the epoch, to the microsecond.
pub(crate) fn epoch_secs(at: DateTime<Utc>) -> f64 {
    // Microsecond timestamps fit a double's 53-bit mantissa exactly for millennia.
    #[allow(clippy::cast_precision_loss, reason = "see above")]
    let micros = at.timestamp_micros() as f64;
    micros / 1_000_000.0
}

/// One page of a list read with `LIMIT limit + 1`: the extra row, if it came, says that there
/// is more, and the page's last row is where the next page starts.
pub(crate) fn page<T>(
    mut data: Vec<T>,
    limit: u32,
    cursor: impl Fn(&T) -> String,
) -> kodiai_protocol::Page<T> {
    let limit = limit as usize;
    let next_cursor = if data.len() > limit {
        data.truncate(limit);
        data.last().map(cursor)
    } else {
        None
    };
    kodiai_protocol::Page { data, next_cursor }
}
