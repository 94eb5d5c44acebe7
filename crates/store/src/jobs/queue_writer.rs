//! SQLite: the queue's own writes (claims, heartbeats, finishes), committed in groups.
//!
//! SQLite has one writer, and each of these writes was a commit of its own, which puts every
//! page it touched (the job's row, the indexes on its state, the event and its index, the
//! event counter) into the write-ahead log again, a moment after the previous write put most of
//! the same pages there. One task now takes every queue write that is waiting and runs them in
//! one transaction: a group pays one commit and writes the pages its writes share once. Each
//! write is answered only once its group has committed, so a claim or finish that returned is
//! as durable as before. A write that comes alone is one statement in autocommit, as before.
//!
//! A group that fails is rolled back and its writes run again one by one, so that one failing
//! write fails only itself. The task runs a write to the end even when its caller stopped
//! waiting, as SQLite's own thread did before.
//!
//! The task keeps the one writer connection while writes keep coming (every return of a
//! connection to sqlx's pool tests it with a ping, one more round trip to the connection's
//! thread) and gives it back as soon as none waits, or after [`HOLD_GROUPS`] groups in a row,
//! so that the other writers (enqueues, the API's changes) wait for a few groups at most.

use std::future::Future;
use std::pin::Pin;

use sqlx::pool::PoolConnection;
use sqlx::{Connection, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use crate::{Error, Result};

/// Writes in one transaction at most.
const GROUP_AT_MOST: usize = 32;
/// Groups in a row on one held connection before it goes back to the pool.
const HOLD_GROUPS: u32 = 8;
/// Writes waiting for the task before callers wait to hand theirs over.
const QUEUE: usize = 256;

pub(super) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One write of the queue: a statement with everything it binds owned, so that it can wait
/// for its group (and run again alone when the group fails).
pub(super) trait Statement: Send + 'static {
    type Output: Send + 'static;
    fn run<'c>(&'c self, conn: &'c mut SqliteConnection) -> BoxFuture<'c, Result<Self::Output>>;
}

/// A write with its caller's answer, as the task sees it.
trait Queued: Send {
    /// Runs the statement and keeps what it answered until the group has committed.
    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> BoxFuture<'c, Result<()>>;
    /// Answers what `run` kept (its group committed).
    fn committed(self: Box<Self>);
    fn failed(self: Box<Self>, error: Error);
}

struct Pending<S: Statement> {
    statement: S,
    output: Option<S::Output>,
    reply: oneshot::Sender<Result<S::Output>>,
}

impl<S: Statement> Queued for Pending<S> {
    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> BoxFuture<'c, Result<()>> {
        Box::pin(async move {
            self.output = Some(self.statement.run(conn).await?);
            Ok(())
        })
    }

    fn committed(self: Box<Self>) {
        let answer = self
            .output
            .ok_or_else(|| Error::Corrupt("a queue write was answered before it ran".into()));
        let _ = self.reply.send(answer);
    }

    fn failed(self: Box<Self>, error: Error) {
        let _ = self.reply.send(Err(error));
    }
}

/// Hands queue writes to the task that commits them in groups. Cheap to clone; the task ends
/// when the last clone is dropped.
#[derive(Debug, Clone)]
pub(crate) struct QueueWriter {
    sender: mpsc::Sender<Box<dyn Queued>>,
}

impl QueueWriter {
    /// Starts the task that writes through `pool` (the one-connection writer pool).
    pub(crate) fn start(pool: SqlitePool) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write_groups(pool, receiver));
        Self { sender }
    }

    /// Runs `statement` in the next group; answers once that group has committed.
    pub(super) async fn write<S: Statement>(&self, statement: S) -> Result<S::Output> {
        let (reply, answer) = oneshot::channel();
        let pending = Box::new(Pending {
            statement,
            output: None,
            reply,
        });
        self.sender
            .send(pending)
            .await
            .map_err(|_| Error::Database(sqlx::Error::PoolClosed))?;
        answer
            .await
            .map_err(|_| Error::Database(sqlx::Error::PoolClosed))?
    }
}

/// The task: takes what is waiting (up to [`GROUP_AT_MOST`]) and writes it in one transaction,
/// until every sender is gone.
async fn write_groups(pool: SqlitePool, mut receiver: mpsc::Receiver<Box<dyn Queued>>) {
    let mut group: Vec<Box<dyn Queued>> = Vec::with_capacity(GROUP_AT_MOST);
    let mut held: Option<PoolConnection<Sqlite>> = None;
    let mut groups_held = 0;
    loop {
        if receiver.is_empty() || groups_held >= HOLD_GROUPS {
            held = None;
            groups_held = 0;
        }
        if receiver.recv_many(&mut group, GROUP_AT_MOST).await == 0 {
            return;
        }
        let mut conn = match held.take() {
            Some(conn) => conn,
            None => match pool.acquire().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "no SQLite writer connection for queue writes");
                    // Each write tries on its own, so that each answers its own error.
                    for pending in group.drain(..) {
                        match pool.acquire().await {
                            Ok(mut conn) => run_alone(pending, &mut conn).await,
                            Err(e) => pending.failed(e.into()),
                        }
                    }
                    continue;
                }
            },
        };
        if group.len() == 1 {
            if let Some(pending) = group.pop() {
                run_alone(pending, &mut conn).await;
            }
        } else {
            match run_group(&mut conn, &mut group).await {
                Ok(()) => group.drain(..).for_each(|pending| pending.committed()),
                Err(e) => {
                    tracing::warn!(error = %e, size = group.len(), "a group of queue writes failed; running them one by one");
                    for pending in group.drain(..) {
                        run_alone(pending, &mut conn).await;
                    }
                }
            }
        }
        held = Some(conn);
        groups_held += 1;
    }
}

async fn run_group(conn: &mut SqliteConnection, group: &mut [Box<dyn Queued>]) -> Result<()> {
    let mut tx = conn.begin().await?;
    for pending in group.iter_mut() {
        pending.run(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One write in autocommit.
async fn run_alone(mut pending: Box<dyn Queued>, conn: &mut SqliteConnection) {
    match pending.run(conn).await {
        Ok(()) => pending.committed(),
        Err(e) => pending.failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    /// Inserts `x` into `t`, whose primary key it is: a second insert of one value fails.
    struct Insert(i64);

    impl Statement for Insert {
        type Output = u64;

        fn run<'c>(
            &'c self,
            conn: &'c mut SqliteConnection,
        ) -> BoxFuture<'c, Result<Self::Output>> {
            Box::pin(async move {
                let done = sqlx::query("INSERT INTO t (x) VALUES ($1)")
                    .bind(self.0)
                    .execute(&mut *conn)
                    .await?;
                Ok(done.rows_affected())
            })
        }
    }

    async fn pool(dir: &tempfile::TempDir) -> SqlitePool {
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("t.db"))
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        pool
    }

    async fn stored(pool: &SqlitePool) -> Vec<i64> {
        sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    // On the test's one thread, the writes are all handed over before the task first runs, so
    // they make one group.
    #[tokio::test]
    async fn a_failing_write_fails_alone_and_the_rest_of_its_group_commits() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&dir).await;
        let writer = QueueWriter::start(pool.clone());
        let (first, again, second) = tokio::join!(
            writer.write(Insert(1)),
            writer.write(Insert(1)),
            writer.write(Insert(2)),
        );
        assert_eq!(first.unwrap(), 1);
        assert!(matches!(again, Err(Error::Database(_))), "{again:?}");
        assert_eq!(second.unwrap(), 1);
        assert_eq!(stored(&pool).await, [1, 2]);
    }

    /// Whether it ran inside a transaction: SQLite refuses a `BEGIN` there.
    struct InGroup;

    impl Statement for InGroup {
        type Output = bool;

        fn run<'c>(
            &'c self,
            conn: &'c mut SqliteConnection,
        ) -> BoxFuture<'c, Result<Self::Output>> {
            Box::pin(async move {
                match sqlx::query("BEGIN").execute(&mut *conn).await {
                    Ok(_) => {
                        sqlx::query("COMMIT").execute(&mut *conn).await?;
                        Ok(false)
                    }
                    Err(e) if e.to_string().contains("within a transaction") => Ok(true),
                    Err(e) => Err(e.into()),
                }
            })
        }
    }

    #[tokio::test]
    async fn writes_waiting_together_share_one_transaction_and_a_lone_one_runs_alone() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&dir).await;
        let writer = QueueWriter::start(pool.clone());
        let together = futures::future::join_all((0..5).map(|_| writer.write(InGroup))).await;
        assert!(
            together.iter().all(|a| matches!(a, Ok(true))),
            "{together:?}"
        );
        assert!(!writer.write(InGroup).await.unwrap());

        let answers = futures::future::join_all((0..50).map(|x| writer.write(Insert(x)))).await;
        assert!(answers.iter().all(|a| matches!(a, Ok(1))), "{answers:?}");
        assert_eq!(stored(&pool).await, (0..50).collect::<Vec<_>>());
    }
}
