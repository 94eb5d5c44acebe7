//! The job queue's PostgreSQL half: the claim, with a finish riding on it or not, and the finish.
//!
//! Many claimers at once. The candidate is locked with `FOR UPDATE SKIP LOCKED`
//! (others skip it) and, in the same statement, a keyed job locks its key's row in
//! `job_rate_limits`; the next statement, whose snapshot is taken once that lock is held,
//! recounts the key's running jobs and starts the job only if there is room, so the per-key
//! limit holds exactly. A claim is four round trips: begin, candidate and key lock, start, commit;
//! a finish together with the claim adds none (it is part of the candidate's statement).

use super::*;
use sqlx::PgPool;

/// The candidate's common table expressions: `$1` now, `$2` kinds, `$3` running limit, `$4`
/// rate tolerance, `$5` now in epoch seconds; `$not_counted` adds conditions on the running
/// jobs `r` that count against a key. `candidate` is the job and its key, `key_lock` the
/// key's `tat` read under its lock (the `INSERT … ON CONFLICT DO UPDATE` waits for, then
/// holds, the key's row lock). `MATERIALIZED`: the candidate is chosen and locked once,
/// whoever reads it.
macro_rules! candidate_ctes {
    ($not_counted:literal) => {
        concat!(
            "candidate AS MATERIALIZED (SELECT j.id, j.concurrency_key \
             FROM jobs j \
             WHERE j.state = 'queued' AND j.run_at <= $1 AND j.kind = ANY($2) \
               AND (j.concurrency_key IS NULL OR ( \
                 (SELECT COUNT(*) FROM jobs r WHERE r.concurrency_key = j.concurrency_key \
                    AND r.state = 'running' AND r.lease_expires_at > $1",
            $not_counted,
            ") < $3 \
                 AND NOT EXISTS (SELECT 1 FROM job_rate_limits k \
                    WHERE k.concurrency_key = j.concurrency_key AND k.tat - $4 > $5))) \
             ORDER BY j.priority, j.run_at, j.id LIMIT 1 \
             FOR UPDATE OF j SKIP LOCKED), \
             key_lock AS (INSERT INTO job_rate_limits (concurrency_key) \
               SELECT concurrency_key FROM candidate WHERE concurrency_key IS NOT NULL \
               ON CONFLICT (concurrency_key) DO UPDATE SET tat = job_rate_limits.tat \
               RETURNING concurrency_key, tat)"
        )
    };
}

/// The candidate (see `candidate_ctes!`): its id, key and, for a keyed job, the key's `tat`.
const CANDIDATE: &str = concat!(
    "WITH ",
    candidate_ctes!(""),
    " SELECT candidate.id, candidate.concurrency_key, key_lock.tat FROM candidate \
     LEFT JOIN key_lock ON key_lock.concurrency_key = candidate.concurrency_key"
);

/// A finish and the candidate of the same worker's next claim, in one statement at the
/// start of the claim's transaction: `$1`…`$5` as in `CANDIDATE`; the finish's values
/// `$6` state, `$7` result, `$8` error, `$9` failure reason, `$10` new run time (or keep),
/// `$11` finished at, `$12` attempt given back, of the lease's job (`$13` id, `$14` owner,
/// `$15` attempt), with its event (`$16` kind, `$17` data) at `$1`. One row: the finish's
/// event number (`NULL` when the lease was lost) and the candidate's columns (`NULL` for
/// none). The statement's snapshot does not see its own finish, so the finished job is
/// left out of its key's running count here; `START`, a later statement, sees it.
const FINISH_AND_CANDIDATE: &str = concat!(
    "WITH fin AS (UPDATE jobs SET state = $6, result = $7, error = $8, failure_reason = $9, \
       run_at = COALESCE($10, run_at), finished_at = $11, attempts = attempts - $12, \
       updated_at = $1, lease_owner = NULL, lease_expires_at = NULL, \
       event_seq = event_seq + 1 \
       WHERE id = $13 AND state = 'running' AND lease_owner = $14 AND attempts = $15 \
       RETURNING id, event_seq), \
     fin_event AS (INSERT INTO job_events (job_id, seq, kind, data, created_at) \
       SELECT id, event_seq, $16, $17, $1 FROM fin), ",
    candidate_ctes!(" AND NOT (r.id = $13 AND r.lease_owner = $14 AND r.attempts = $15)"),
    " SELECT (SELECT event_seq FROM fin), candidate.id, candidate.concurrency_key, \
       key_lock.tat \
     FROM (SELECT 1) AS one LEFT JOIN candidate ON true \
     LEFT JOIN key_lock ON key_lock.concurrency_key = candidate.concurrency_key"
);

/// `$1` worker, `$2` lease end, `$3` now, `$4` id, `$5` key, `$6` running limit, `$7` now
/// in epoch seconds, `$8` rate interval, `$9` whether a rate limit applies. Starts the job
/// only while its key has fewer than `$6` running (counted in this statement's snapshot,
/// taken under the key's lock), records the `started` event and takes a rate token; no row
/// when the key's last slot went to another worker meanwhile.
const START: &str = concat!(
    "WITH u AS (UPDATE jobs SET state = 'running', attempts = attempts + 1, \
       lease_owner = $1, lease_expires_at = $2, started_at = COALESCE(started_at, $3), \
       updated_at = $3, event_seq = event_seq + 1 \
       WHERE id = $4 AND ($5::text IS NULL OR (SELECT COUNT(*) FROM jobs r \
         WHERE r.concurrency_key = $5 AND r.state = 'running' AND r.lease_expires_at > $3) < $6) \
       RETURNING *), \
     e AS (INSERT INTO job_events (job_id, seq, kind, data, created_at) \
       SELECT id, event_seq, 'started', jsonb_build_object('attempt', attempts, 'worker', $1::text), $3 FROM u), \
     t AS (UPDATE job_rate_limits SET tat = GREATEST(tat, $7) + $8 \
       WHERE $9 AND concurrency_key = $5 AND EXISTS (SELECT 1 FROM u)) \
     SELECT ",
    job_columns!(),
    " FROM u"
);

/// The claim's transaction, with sorting priced out for the planner: the candidate must come
/// from walking `jobs_queued` in claim order, stopping at the first job whose key has room.
/// Without statistics (a new or never analysed table) the planner otherwise picks
/// `jobs_state_kind`, checks the key limits of every queued job and sorts them all: 7 ms
/// instead of 0.2 ms per claim with 5,000 jobs queued. One round trip, like a plain `BEGIN`.
const BEGIN: &str = "BEGIN; SET LOCAL enable_sort = off";

/// Claims after a lost race on a key's last slot are retried this often before the worker
/// reports an empty queue (and tries again at its next wake-up).
const RACES: usize = 4;

pub(super) async fn claim(
    pool: &PgPool,
    request: &ClaimRequest<'_>,
    now: DateTime<Utc>,
) -> Result<Option<(Job, i64)>> {
    Ok(claim_after(pool, None, request, now)
        .await?
        .and_then(|(_, claimed)| claimed))
}

/// A finish and the claim of the same worker's next job in the claim's transaction: the
/// finish rides on the candidate's statement (`FINISH_AND_CANDIDATE`), so it costs no round
/// trip of its own. Returns the finish's event number (`None`: the lease was lost) and the
/// claimed job, or `None` when every try lost a race, which rolled the finish back too: the
/// caller then finishes alone.
pub(super) async fn finish_and_claim(
    pool: &PgPool,
    lease: &Lease,
    finish: &FinishValues,
    request: &ClaimRequest<'_>,
    now: DateTime<Utc>,
) -> Result<Option<(Option<i64>, Option<(Job, i64)>)>> {
    claim_after(pool, Some((lease, finish)), request, now).await
}

/// The claim, after `finish` of another job in the same transaction when given; `None`
/// when every try lost a race.
async fn claim_after(
    pool: &PgPool,
    finish: Option<(&Lease, &FinishValues)>,
    request: &ClaimRequest<'_>,
    now: DateTime<Utc>,
) -> Result<Option<(Option<i64>, Option<(Job, i64)>)>> {
    let kinds: Vec<&str> = request.kinds.iter().map(|k| k.as_str()).collect();
    let (tolerance, interval) = request
        .limits
        .rate
        .map_or((f64::MAX, 0.0), |r| (r.tolerance(), r.interval()));
    let now_secs = epoch_secs(now);
    let max_running = i64::from(request.limits.max_running);
    for _ in 0..RACES {
        let mut tx = pool.begin_with(BEGIN).await?;
        let (finished, candidate) = match finish {
            None => {
                let row: Option<(String, Option<String>, Option<f64>)> = sqlx::query_as(CANDIDATE)
                    .bind(now)
                    .bind(&kinds)
                    .bind(max_running)
                    .bind(tolerance)
                    .bind(now_secs)
                    .fetch_optional(&mut *tx)
                    .await?;
                (None, row)
            }
            Some((lease, values)) => {
                let (seq, id, key, tat): (
                    Option<i32>,
                    Option<String>,
                    Option<String>,
                    Option<f64>,
                ) = bind_finish_values!(
                    sqlx::query_as(FINISH_AND_CANDIDATE)
                        .bind(now)
                        .bind(&kinds)
                        .bind(max_running)
                        .bind(tolerance)
                        .bind(now_secs),
                    values
                )
                .bind(&lease.job_id)
                .bind(&lease.owner)
                .bind(i32::try_from(lease.attempt).unwrap_or(i32::MAX))
                .bind(JobEventKind::as_str(values.event))
                .bind(Json(&values.data))
                .fetch_one(&mut *tx)
                .await?;
                (seq.map(i64::from), id.map(|id| (id, key, tat)))
            }
        };
        let Some((id, key, tat)) = candidate else {
            if finished.is_some() {
                tx.commit().await?;
            }
            return Ok(Some((finished, None)));
        };
        if tat.is_some_and(|tat| tat - tolerance > now_secs) {
            // Another worker took the key's last token since the candidate was chosen;
            // look again (the rollback releases the candidate and the key).
            lost_race(tx, finish.is_some()).await?;
            continue;
        }
        let row: Option<JobRow> = sqlx::query_as(START)
            .bind(request.worker)
            .bind(lease_until(now, request.lease))
            .bind(now)
            .bind(&id)
            .bind(&key)
            .bind(max_running)
            .bind(now_secs)
            .bind(interval)
            .bind(request.limits.rate.is_some())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            // Another worker took the key's last slot since the candidate was chosen.
            lost_race(tx, finish.is_some()).await?;
            continue;
        };
        tx.commit().await?;
        let seq = i64::from(row.event_seq);
        return Ok(Some((finished, Some((row.into_job()?, seq)))));
    }
    Ok(finish.is_none().then_some((None, None)))
}

/// Ends a claim's transaction that lost a race. With a finish in it, the rollback undoes
/// the finish too, which the next try does again: it waits for that rollback, which
/// releases the finished job's row (dropped, the transaction would roll back only once its
/// connection is back in the pool).
async fn lost_race(tx: sqlx::Transaction<'_, sqlx::Postgres>, finished: bool) -> Result<()> {
    if finished {
        tx.rollback().await?;
    }
    Ok(())
}

/// [`Store::finish`]'s update and its event as one statement (atomic without a transaction
/// of its own): one round trip. `$1`…`$11` as in `finish_update!`, `$12` event kind, `$13` its
/// data.
pub(super) const FINISH: &str = concat!(
    "WITH u AS (",
    finish_update!(""),
    " RETURNING id, event_seq), e AS (INSERT INTO job_events (job_id, seq, kind, data, created_at) \
       SELECT id, event_seq, $12, $13, $8 FROM u) \
     SELECT event_seq FROM u"
);
