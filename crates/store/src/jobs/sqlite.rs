//! The job queue's SQLite half: the claim, the finish and a finish with the next claim, each one
//! statement, on the writer connection that [`QueueWriter`] keeps between them.
//!
//! One writer, so a claim is one statement on it that picks the job while applying every
//! limit and starts it; nothing can slip in between the check and the start.
//!
//! The pick walks `jobs_queued` in claim order (`INDEXED BY`) and stops at the first job whose
//! key has room. Left to itself the planner (which has no statistics: nothing runs `ANALYZE`)
//! prefers `jobs_state_kind`, which makes it check the key limits of *every* queued job and sort
//! them all, on every claim: 1.8 ms instead of 0.2 ms with 5,000 jobs queued.

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::pool::PoolConnection;

use super::*;

/// SQLite: the one writer connection, kept between the queue's own writes (claim, heartbeat,
/// finish) while more of them are waiting. Every return of a connection to sqlx's pool tests it
/// with a ping, one more round trip to the connection's thread; handing the connection straight
/// to the next waiting write saves that round trip and the pool's wake-up. It goes back to the
/// pool as soon as no queue write waits, after an error, and after [`HOLD_AT_MOST`] writes in a
/// row, so that the other writers (enqueues, the API's changes) wait for a few statements at most.
#[derive(Debug, Default)]
pub(crate) struct QueueWriter {
    held: tokio::sync::Mutex<Held>,
    /// Queue writes waiting for `held`.
    waiting: AtomicUsize,
}

#[derive(Debug, Default)]
pub(super) struct Held {
    pub(super) conn: Option<PoolConnection<sqlx::Sqlite>>,
    /// Writes since it was taken from the pool.
    pub(super) uses: u32,
}

/// Queue writes in a row on one held connection before it goes back to the pool.
const HOLD_AT_MOST: u32 = 16;

impl QueueWriter {
    pub(super) async fn lock(&self) -> tokio::sync::MutexGuard<'_, Held> {
        // Counted while waiting, also when the waiting future is dropped.
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        self.held.lock().await
    }

    /// Gives a held connection back to the pool (before the pool closes, which waits for it).
    pub(crate) async fn release(&self) {
        self.held.lock().await.conn.take();
    }

    /// Keeps `conn` for the next queue write if one is waiting and all went well; otherwise it
    /// goes back to the pool (dropped: sqlx tests and returns it).
    pub(super) fn put_back(&self, held: &mut Held, conn: PoolConnection<sqlx::Sqlite>, ok: bool) {
        held.uses += 1;
        if ok && held.uses < HOLD_AT_MOST && self.waiting.load(Ordering::SeqCst) > 0 {
            held.conn = Some(conn);
        } else {
            held.uses = 0;
        }
    }
}

/// Runs `$body` with `$conn: &mut SqliteConnection`, the writer of `$pool` held by the store's
/// [`QueueWriter`] (see there). `$body` may use `?`; the connection is put back first.
macro_rules! on_queue_writer {
    ($store:expr, $pool:expr, |$conn:ident| $body:expr) => {{
        let queue_writer = &$store.shared.queue_writer;
        let mut held = queue_writer.lock().await;
        let mut conn = match held.conn.take() {
            Some(conn) => conn,
            None => {
                held.uses = 0;
                $pool.acquire().await?
            }
        };
        let result: Result<_> = async {
            let $conn: &mut sqlx::SqliteConnection = &mut conn;
            Ok($body)
        }
        .await;
        queue_writer.put_back(&mut held, conn, result.is_ok());
        result?
    }};
}
pub(super) use on_queue_writer;

/// The pick of a claim, a scalar subquery: the first queued job in claim order that is due
/// (`$3` now), of one of the kinds (`$4`, a JSON array), whose key has fewer than `$5`
/// running and a rate token (`$6` rate tolerance, `$7` now in epoch seconds).
/// `$not_counted` adds conditions on the running jobs `r` that count against the key.
macro_rules! pick {
    ($not_counted:literal) => {
        concat!(
            "(SELECT j.id FROM jobs j INDEXED BY jobs_queued \
             WHERE j.state = 'queued' AND j.run_at <= $3 \
               AND j.kind IN (SELECT value FROM json_each($4)) \
               AND (j.concurrency_key IS NULL OR ( \
                 (SELECT COUNT(*) FROM jobs r WHERE r.concurrency_key = j.concurrency_key \
                    AND r.state = 'running' AND r.lease_expires_at > $3",
            $not_counted,
            ") < $5 \
                 AND NOT EXISTS (SELECT 1 FROM job_rate_limits k \
                    WHERE k.concurrency_key = j.concurrency_key AND k.tat - $6 > $7))) \
             ORDER BY j.priority, j.run_at, j.id LIMIT 1)"
        )
    };
}

/// A claimed job's new key bucket state (`$7` now in epoch seconds, `$8` the rate interval,
/// `NULL` for no rate limit), for the note of migration 0006's rate trigger.
macro_rules! claim_tat {
    () => {
        "CASE WHEN $8 IS NULL OR concurrency_key IS NULL THEN NULL \
         ELSE MAX(COALESCE((SELECT k.tat FROM job_rate_limits k \
           WHERE k.concurrency_key = jobs.concurrency_key), 0), $7) + $8 END"
    };
}

/// One statement, so one call to the connection's thread (each call is a cross-thread
/// round trip that costs far more than the SQL) and atomic without a transaction of its
/// own: the pick (`$3`…`$7`, see `pick!`) starts the job (`$1` worker, `$2` lease end) and
/// leaves the notes that migration 0006's triggers turn into the `started` event and, with
/// a rate limit (`$8` its interval), the key's new token bucket state. With one writer
/// connection nothing can come in between the pick and the start.
const CLAIM: &str = concat!(
    "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = $1, \
       lease_expires_at = $2, started_at = COALESCE(started_at, $3), updated_at = $3, \
       event_seq = event_seq + 1, note_seq = event_seq + 1, note_kind = 'started', \
       note_data = json_object('attempt', attempts + 1, 'worker', $1), note_tat = ",
    claim_tat!(),
    " WHERE state = 'queued' AND id = ",
    pick!(""),
    " RETURNING ",
    job_columns!()
);

/// A finish and the same worker's next claim as one statement: one `UPDATE` of two rows,
/// the running job of the lease (`$16` id, `$17` owner, `$18` attempt) and the queued job of
/// the pick. `$1`…`$8` are the claim's (as in `CLAIM`), `$9`…`$15` the finish's values (as
/// `$1`…`$7` of `finish_update!`, with `$3` its time), `$19` the finish's event kind and `$20`
/// its data. A row's old state says which change it gets: `running` is the finished job,
/// `queued` the claimed one (even when the pick is the lease's own job, re-queued after its
/// lease expired: then the finish changes nothing, as a separate finish would not).
///
/// The pick is evaluated before any row changes (SQLite collects the rows of an update whose
/// `WHERE` has a subquery before it changes them), so the job being finished, still running
/// there, is left out of its key's running count, exactly as if the finish had come first.
const FINISH_AND_CLAIM: &str = concat!(
    "UPDATE jobs SET \
       state = CASE WHEN state = 'running' THEN $9 ELSE 'running' END, \
       result = CASE WHEN state = 'running' THEN $10 ELSE result END, \
       error = CASE WHEN state = 'running' THEN $11 ELSE error END, \
       failure_reason = CASE WHEN state = 'running' THEN $12 ELSE failure_reason END, \
       run_at = CASE WHEN state = 'running' THEN COALESCE($13, run_at) ELSE run_at END, \
       finished_at = CASE WHEN state = 'running' THEN $14 ELSE finished_at END, \
       attempts = CASE WHEN state = 'running' THEN attempts - $15 ELSE attempts + 1 END, \
       lease_owner = CASE WHEN state = 'running' THEN NULL ELSE $1 END, \
       lease_expires_at = CASE WHEN state = 'running' THEN NULL ELSE $2 END, \
       started_at = CASE WHEN state = 'running' THEN started_at \
         ELSE COALESCE(started_at, $3) END, \
       updated_at = $3, event_seq = event_seq + 1, note_seq = event_seq + 1, \
       note_kind = CASE WHEN state = 'running' THEN $19 ELSE 'started' END, \
       note_data = CASE WHEN state = 'running' THEN $20 \
         ELSE json_object('attempt', attempts + 1, 'worker', $1) END, \
       note_tat = CASE WHEN state = 'running' THEN NULL ELSE ",
    claim_tat!(),
    " END \
     WHERE (id = $16 AND state = 'running' AND lease_owner = $17 AND attempts = $18) \
       OR (state = 'queued' AND id = ",
    pick!(" AND NOT (r.id = $16 AND r.lease_owner = $17 AND r.attempts = $18)"),
    ") RETURNING ",
    job_columns!()
);

/// Binds `$1`…`$8` of `CLAIM` and `FINISH_AND_CLAIM`.
macro_rules! bind_claim {
    ($query:expr, $request:expr, $now:expr) => {{
        let request: &ClaimRequest<'_> = $request;
        let now: DateTime<Utc> = $now;
        let kinds = Value::from(request.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>());
        let (tolerance, interval) = request
            .limits
            .rate
            .map_or((f64::MAX, None), |r| (r.tolerance(), Some(r.interval())));
        $query
            .bind(request.worker)
            .bind(lease_until(now, request.lease))
            .bind(now)
            .bind(kinds.to_string())
            .bind(i64::from(request.limits.max_running))
            .bind(tolerance)
            .bind(epoch_secs(now))
            .bind(interval)
    }};
}

/// Both rows the statement changed, if any: the finished job (not `running`) and the
/// claimed one (`running`).
pub(super) async fn finish_and_claim(
    writer: &mut sqlx::SqliteConnection,
    lease: &Lease,
    finish: &FinishValues,
    next: &ClaimRequest<'_>,
    now: DateTime<Utc>,
) -> Result<Vec<JobRow>> {
    let attempt = i32::try_from(lease.attempt).unwrap_or(i32::MAX);
    let rows = bind_finish_values!(
        bind_claim!(sqlx::query_as(FINISH_AND_CLAIM), next, now),
        finish
    )
    .bind(&lease.job_id)
    .bind(&lease.owner)
    .bind(attempt)
    .bind(JobEventKind::as_str(finish.event))
    .bind(Json(&finish.data))
    .fetch_all(&mut *writer)
    .await?;
    Ok(rows)
}

pub(super) async fn claim(
    writer: &mut sqlx::SqliteConnection,
    request: &ClaimRequest<'_>,
    now: DateTime<Utc>,
) -> Result<Option<(Job, i64)>> {
    let row: Option<JobRow> = bind_claim!(sqlx::query_as(CLAIM), request, now)
        .fetch_optional(&mut *writer)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let seq = i64::from(row.event_seq);
    Ok(Some((row.into_job()?, seq)))
}

/// [`Store::finish`]'s update as one statement (see `CLAIM`): `$1`…`$11` as in
/// `finish_update!`, `$12` event kind, `$13` its data, left as a note for migration
/// 0006's trigger, which writes the event only when the update changed the job.
pub(super) const FINISH: &str = concat!(
    finish_update!(", note_seq = event_seq + 1, note_kind = $12, note_data = $13"),
    " RETURNING event_seq"
);
