//! The job queue's storage: enqueue (alone or inside a [`Tx`] with other writes), claim with
//! per-key concurrency and rate limits, heartbeat, finish, reap expired leases, cancel, retry,
//! the event log, and the reads of the API.
//!
//! This file holds the queue's types, the statements both backends share and the backend
//! dispatch of every write; the claim and the finish, which each backend does its own way, are
//! in `sqlite` and `postgres`, the reads in `reads`.
//!
//! Every function takes `now` from the caller (the worker's clock), so that tests move time
//! by hand; timestamps are truncated to microseconds ([`ts`]).
//!
//! A worker owns a running job through its [`Lease`]: the owner name *and* the attempt number.
//! Every write of a worker checks both, so a worker that lost its job (lease expired and the job
//! was claimed again, or it was cancelled) changes nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kodiai_protocol::{
    FailureReason, Job, JobEvent, JobEventKind, JobFailure, JobKind, JobSpec, JobState, Page,
};
use serde_json::{Value, json};
use sqlx::types::Json;

use crate::db::{epoch_secs, in_transaction, on_tx, ts};
use crate::signals::Signal;
use crate::{Error, Inner, Result, Store, Tx};
use sqlite::on_queue_writer;

pub(crate) use sqlite::QueueWriter;

/// Columns of `jobs` read into a [`JobRow`], as a literal so that queries stay `&'static str`.
macro_rules! job_columns {
    () => {
        "id, kind, payload, priority, state, attempts, max_attempts, run_at, lease_owner, \
         lease_expires_at, concurrency_key, dedupe_key, installation_id, delivery_id, result, \
         error, failure_reason, created_at, updated_at, started_at, finished_at, event_seq"
    };
}

/// The update of [`Store::finish`]: `$1` state, `$2` result, `$3` error, `$4` failure reason,
/// `$5` new run time (or keep), `$6` finished at, `$7` attempt given back, `$8` now, `$9` id,
/// `$10` lease owner, `$11` attempt; `$more_set` adds assignments. Only the lease's holder
/// changes anything.
macro_rules! finish_update {
    ($more_set:literal) => {
        concat!(
            "UPDATE jobs SET state = $1, result = $2, error = $3, \
             failure_reason = $4, run_at = COALESCE($5, run_at), finished_at = $6, \
             attempts = attempts - $7, updated_at = $8, lease_owner = NULL, lease_expires_at = NULL, \
             event_seq = event_seq + 1",
            $more_set,
            " WHERE id = $9 AND state = 'running' AND lease_owner = $10 AND attempts = $11"
        )
    };
}

/// A job to enqueue. [`NewJob::new`] sets the defaults; the builder methods the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub spec: JobSpec,
    /// Lower runs first. Default 0.
    pub priority: i32,
    /// Not before this time. Default: now.
    pub run_at: Option<DateTime<Utc>>,
    /// Runs before a transiently failing job fails for good. Default 3.
    pub max_attempts: u32,
    pub concurrency_key: Option<String>,
    pub dedupe_key: Option<String>,
    pub installation_id: Option<i64>,
    pub delivery_id: Option<String>,
}

impl NewJob {
    pub fn new(spec: JobSpec) -> Self {
        Self {
            spec,
            priority: 0,
            run_at: None,
            max_attempts: 3,
            concurrency_key: None,
            dedupe_key: None,
            installation_id: None,
            delivery_id: None,
        }
    }

    pub fn concurrency_key(mut self, key: impl Into<String>) -> Self {
        self.concurrency_key = Some(key.into());
        self
    }

    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    pub fn dedupe_key(mut self, key: impl Into<String>) -> Self {
        self.dedupe_key = Some(key.into());
        self
    }

    pub fn installation(mut self, installation_id: i64) -> Self {
        self.installation_id = Some(installation_id);
        self
    }

    pub fn delivery(mut self, delivery_id: impl Into<String>) -> Self {
        self.delivery_id = Some(delivery_id.into());
        self
    }
}

/// The answer to an enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub id: String,
    /// `false` when a job with the same dedupe key existed; `id` is that job's.
    pub created: bool,
}

/// Limits that apply per concurrency key while claiming.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeyLimits {
    /// Running jobs per key, at most.
    pub max_running: u32,
    /// Claims per key over time; `None` for no rate limit.
    pub rate: Option<RateLimit>,
}

/// A token bucket: `per_minute` claims a minute on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

impl RateLimit {
    /// Seconds between claims at the average rate.
    fn interval(self) -> f64 {
        60.0 / f64::from(self.per_minute.max(1))
    }

    /// How far ahead of `now` the bucket's arrival time may run: the burst.
    fn tolerance(self) -> f64 {
        f64::from(self.burst.max(1) - 1) * self.interval()
    }
}

/// What a worker asks for when it claims.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    /// The worker's name, written as the lease owner.
    pub worker: &'a str,
    /// The kinds this worker can run; other jobs stay for other workers.
    pub kinds: &'a [JobKind],
    /// How long the lease lasts without a heartbeat.
    pub lease: Duration,
    pub limits: KeyLimits,
}

/// A worker's hold on a running job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job_id: String,
    pub owner: String,
    pub attempt: u32,
}

impl Lease {
    /// The lease of a job as claimed; `None` when the job is not running.
    pub fn of(job: &Job) -> Option<Self> {
        Some(Self {
            job_id: job.id.clone(),
            owner: job.lease_owner.clone()?,
            attempt: job.attempts,
        })
    }
}

/// How a run ended, as the worker records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// Final: `succeeded` with the handler's result.
    Succeeded(Value),
    /// Final: `failed`.
    Failed(JobFailure),
    /// Back to `queued` until `at`; `failure` says why this run failed.
    Retry {
        at: DateTime<Utc>,
        failure: JobFailure,
    },
    /// Back to `queued` at once without using up an attempt: the worker is shutting down.
    Release,
}

/// A running job whose lease had expired, as [`Store::reap_expired`] left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaped {
    pub job_id: String,
    pub kind: String,
    /// `queued` to run again, or `failed` when no attempts were left.
    pub state: JobState,
}

/// The answer to a cancel or retry of a job that exists.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// Done; the job as it is now.
    Done(Box<Job>),
    /// Not possible from the job's state.
    NotAllowed(JobState),
}

/// Filters of [`Store::list_jobs`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub kind: Option<String>,
    pub state: Option<JobState>,
    pub concurrency_key: Option<String>,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    kind: String,
    payload: Json<Value>,
    priority: i32,
    state: String,
    attempts: i32,
    max_attempts: i32,
    run_at: DateTime<Utc>,
    lease_owner: Option<String>,
    lease_expires_at: Option<DateTime<Utc>>,
    concurrency_key: Option<String>,
    dedupe_key: Option<String>,
    installation_id: Option<i64>,
    delivery_id: Option<String>,
    result: Option<Json<Value>>,
    error: Option<String>,
    failure_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    event_seq: i32,
}

impl JobRow {
    fn into_job(self) -> Result<Job> {
        let state = self
            .state
            .parse::<JobState>()
            .map_err(|e| Error::Corrupt(format!("job {}: {e}", self.id)))?;
        let error = match (self.failure_reason, self.error) {
            (Some(reason), message) => Some(JobFailure {
                reason: serde_json::from_value(Value::String(reason.clone())).map_err(|_| {
                    Error::Corrupt(format!(
                        "job {}: unknown failure reason {reason:?}",
                        self.id
                    ))
                })?,
                message: message.unwrap_or_default(),
            }),
            (None, _) => None,
        };
        Ok(Job {
            id: self.id,
            kind: self.kind,
            payload: self.payload.0,
            priority: self.priority,
            state,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            max_attempts: u32::try_from(self.max_attempts).unwrap_or(0),
            run_at: self.run_at,
            lease_owner: self.lease_owner,
            lease_expires_at: self.lease_expires_at,
            concurrency_key: self.concurrency_key,
            dedupe_key: self.dedupe_key,
            installation_id: self.installation_id,
            delivery_id: self.delivery_id,
            result: self.result.map(|r| r.0),
            error,
            created_at: self.created_at,
            updated_at: self.updated_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
        })
    }
}

fn lease_until(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    ts(now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX))
}

/// The payload column of a spec: its fields without the `kind` tag (the kind has its column).
fn payload_of(spec: &JobSpec) -> Result<Value> {
    let mut value = serde_json::to_value(spec).map_err(|e| Error::Corrupt(e.to_string()))?;
    if let Value::Object(map) = &mut value {
        map.remove("kind");
    }
    Ok(value)
}

/// Parses a stored job back into its spec. The error names what is wrong, for the job's
/// failure message.
pub fn spec_of(job: &Job) -> std::result::Result<JobSpec, String> {
    let mut value = job.payload.clone();
    match &mut value {
        Value::Object(map) => {
            map.insert("kind".into(), Value::String(job.kind.clone()));
        }
        _ => {
            return Err(format!(
                "the payload of job {} is not a JSON object",
                job.id
            ));
        }
    }
    serde_json::from_value(value)
        .map_err(|e| format!("job {} ({}) cannot be read: {e}", job.id, job.kind))
}

const INSERT_JOB: &str = "INSERT INTO jobs (id, kind, payload, priority, state, max_attempts, \
     run_at, concurrency_key, dedupe_key, installation_id, delivery_id, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, $9, $10, $11, $11) \
     ON CONFLICT (dedupe_key) DO NOTHING RETURNING id";

const INSERT_EVENT: &str = "INSERT INTO job_events (job_id, seq, kind, data, created_at) \
     VALUES ($1, $2, $3, $4, $5)";

const FIND_BY_DEDUPE_KEY: &str = "SELECT id FROM jobs WHERE dedupe_key = $1";

/// Inserts one job on any connection of either backend (plain or in a transaction).
macro_rules! insert_job {
    ($conn:expr, $job:expr, $now:expr) => {{
        let job: &NewJob = $job;
        let now = ts($now);
        let id = uuid::Uuid::now_v7().to_string();
        let payload = payload_of(&job.spec)?;
        let inserted: Option<(String,)> = sqlx::query_as(INSERT_JOB)
            .bind(&id)
            .bind(job.spec.kind().as_str())
            .bind(Json(payload))
            .bind(job.priority)
            .bind(i32::try_from(job.max_attempts).unwrap_or(i32::MAX))
            .bind(ts(job.run_at.unwrap_or(now)))
            .bind(&job.concurrency_key)
            .bind(&job.dedupe_key)
            .bind(job.installation_id)
            .bind(&job.delivery_id)
            .bind(now)
            .fetch_optional(&mut *$conn)
            .await?;
        match inserted {
            Some((id,)) => Enqueued { id, created: true },
            None => {
                let (id,): (String,) = sqlx::query_as(FIND_BY_DEDUPE_KEY)
                    .bind(&job.dedupe_key)
                    .fetch_one(&mut *$conn)
                    .await?;
                Enqueued { id, created: false }
            }
        }
    }};
}

/// Appends an event with a number already taken from the job's `event_seq`.
macro_rules! insert_event {
    ($conn:expr, $job_id:expr, $seq:expr, $kind:expr, $data:expr, $now:expr) => {{
        sqlx::query(INSERT_EVENT)
            .bind($job_id)
            .bind($seq)
            .bind(JobEventKind::as_str($kind))
            .bind(Json($data))
            .bind(ts($now))
            .execute(&mut *$conn)
            .await?;
    }};
}

/// Binds a finish's columns, in this order: state, result, error message, failure reason,
/// run time (kept for a final job, moved for a retry), finish time, attempt given back.
macro_rules! bind_finish_values {
    ($query:expr, $values:expr) => {{
        let values: &FinishValues = $values;
        $query
            .bind(values.state.as_str())
            .bind(values.result.clone().map(Json))
            .bind(values.failure.as_ref().map(|f| f.message.clone()))
            .bind(values.failure.as_ref().map(|f| f.reason.as_str()))
            .bind(values.run_at)
            .bind(values.finished_at)
            .bind(values.give_back)
    }};
}

/// What a finish writes: the job's new state and columns, and its event.
struct FinishValues {
    state: JobState,
    result: Option<Value>,
    failure: Option<JobFailure>,
    /// The new run time of a job queued again; `None` keeps it.
    run_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    /// 1 to give the run's attempt back (a release), else 0.
    give_back: i32,
    event: JobEventKind,
    data: Value,
}

impl FinishValues {
    fn of(lease: &Lease, finish: &Finish, now: DateTime<Utc>) -> Self {
        let (state, result, failure, run_at, finished_at, give_back, event, data) = match finish {
            Finish::Succeeded(result) => (
                JobState::Succeeded,
                Some(result.clone()),
                None,
                None,
                Some(now),
                0,
                JobEventKind::Finished,
                json!({"state": "succeeded", "result": result}),
            ),
            Finish::Failed(failure) => (
                JobState::Failed,
                None,
                Some(failure.clone()),
                None,
                Some(now),
                0,
                JobEventKind::Finished,
                json!({"state": "failed", "error": failure}),
            ),
            Finish::Retry { at, failure } => (
                JobState::Queued,
                None,
                Some(failure.clone()),
                Some(ts(*at)),
                None,
                0,
                JobEventKind::Error,
                json!({"reason": failure.reason, "message": failure.message,
                       "attempt": lease.attempt, "retry_at": ts(*at)}),
            ),
            Finish::Release => (
                JobState::Queued,
                None,
                None,
                Some(now),
                None,
                1,
                JobEventKind::Log,
                json!({"message": format!("worker {} stopped; the job is queued again", lease.owner)}),
            ),
        };
        Self {
            state,
            result,
            failure,
            run_at,
            finished_at,
            give_back,
            event,
            data,
        }
    }
}

impl Tx {
    /// Enqueues a job inside this transaction; workers see it at commit.
    pub async fn enqueue(&mut self, job: &NewJob, now: DateTime<Utc>) -> Result<Enqueued> {
        let enqueued = on_tx!(self, |conn| insert_job!(conn, job, now));
        self.queued |= enqueued.created;
        Ok(enqueued)
    }
}

impl Store {
    /// Enqueues one job. With a dedupe key that exists already, returns that job instead.
    pub async fn enqueue(&self, job: &NewJob, now: DateTime<Utc>) -> Result<Enqueued> {
        let mut tx = self.begin().await?;
        let enqueued = tx.enqueue(job, now).await?;
        tx.commit().await?;
        Ok(enqueued)
    }

    /// Claims the next job this worker may run: queued, due, of one of its kinds, in priority
    /// then run-time order, skipping keys at their running limit or out of rate tokens (so one
    /// busy key never holds up the others). The job comes back `running`, with this worker's
    /// lease, its attempt counted and a `started` event recorded.
    pub async fn claim(
        &self,
        request: &ClaimRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>> {
        let now = ts(now);
        let claimed = match &self.inner {
            Inner::Sqlite { writer, .. } => {
                on_queue_writer!(self, writer, |conn| sqlite::claim(conn, request, now)
                    .await?)
            }
            Inner::Postgres(pool) => postgres::claim(pool, request, now).await?,
        };
        let Some((job, seq)) = claimed else {
            return Ok(None);
        };
        self.signal_local(Signal::JobEvent {
            job_id: job.id.clone(),
            seq,
            kind: JobEventKind::Started,
        });
        Ok(Some(job))
    }

    /// Extends a lease. `false` when the lease is gone (the job was cancelled, or claimed by
    /// another worker after this one's lease expired): the worker must stop the job.
    pub async fn heartbeat(
        &self,
        lease: &Lease,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        const SQL: &str = "UPDATE jobs SET lease_expires_at = $1, updated_at = $2 \
             WHERE id = $3 AND state = 'running' AND lease_owner = $4 AND attempts = $5";
        let attempt = i32::try_from(lease.attempt).unwrap_or(i32::MAX);
        macro_rules! renew {
            ($executor:expr) => {
                sqlx::query(SQL)
                    .bind(ts(until))
                    .bind(ts(now))
                    .bind(&lease.job_id)
                    .bind(&lease.owner)
                    .bind(attempt)
                    .execute($executor)
                    .await?
                    .rows_affected()
            };
        }
        let done = match &self.inner {
            Inner::Sqlite { writer, .. } => {
                on_queue_writer!(self, writer, |conn| renew!(&mut *conn))
            }
            Inner::Postgres(pool) => renew!(pool),
        };
        Ok(done == 1)
    }

    /// Records how a run ended. Returns the job's new state, or `None` when the lease was lost
    /// meanwhile (then nothing is written: whoever holds the job now decides).
    pub async fn finish(
        &self,
        lease: &Lease,
        finish: Finish,
        now: DateTime<Utc>,
    ) -> Result<Option<JobState>> {
        let now = ts(now);
        let values = FinishValues::of(lease, &finish, now);
        let attempt = i32::try_from(lease.attempt).unwrap_or(i32::MAX);
        // Binds `$1`…`$11` of `finish_update!`.
        macro_rules! bind_update {
            ($query:expr) => {
                bind_finish_values!($query, &values)
                    .bind(now)
                    .bind(&lease.job_id)
                    .bind(&lease.owner)
                    .bind(attempt)
            };
        }
        let updated = match &self.inner {
            // One statement on either backend, so no transaction of its own: one round trip.
            Inner::Sqlite { writer, .. } => {
                let row: Option<(i32,)> = on_queue_writer!(self, writer, |conn| {
                    bind_update!(sqlx::query_as(sqlite::FINISH))
                        .bind(JobEventKind::as_str(values.event))
                        .bind(Json(&values.data))
                        .fetch_optional(&mut *conn)
                        .await?
                });
                row.map(|(seq,)| i64::from(seq))
            }
            Inner::Postgres(pool) => {
                let row: Option<(i32,)> = bind_update!(sqlx::query_as(postgres::FINISH))
                    .bind(JobEventKind::as_str(values.event))
                    .bind(Json(&values.data))
                    .fetch_optional(pool)
                    .await?;
                row.map(|(seq,)| i64::from(seq))
            }
        };
        Ok(self.finished(lease, &values, updated))
    }

    /// [`Store::finish`], then [`Store::claim`] of the same worker's next job, for a worker that
    /// goes on working: the claim applies `next`'s kinds, per-key limits and rate limits exactly
    /// as `claim` does, after the finish (the finished job no longer counts against its key).
    /// Returns what each would: the finished job's state (`None` when its lease was lost) and
    /// the next job, running under a new lease of `next.worker`.
    ///
    /// On SQLite both are one statement, so one call to the connection's thread instead of two:
    /// a worker's finish and its next claim cost one round trip per job. On PostgreSQL the
    /// finish rides on the claim's first statement, inside the claim's transaction: the claim's
    /// four round trips and one commit per job instead of five and two.
    pub async fn finish_and_claim(
        &self,
        lease: &Lease,
        finish: Finish,
        next: &ClaimRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<(Option<JobState>, Option<Job>)> {
        let now = ts(now);
        let writer = match &self.inner {
            Inner::Sqlite { writer, .. } => writer,
            Inner::Postgres(pool) => {
                let values = FinishValues::of(lease, &finish, now);
                let Some((finished, claimed)) =
                    postgres::finish_and_claim(pool, lease, &values, next, now).await?
                else {
                    // Every try lost a race for a key and rolled back: the finish alone.
                    return Ok((self.finish(lease, finish, now).await?, None));
                };
                // PostgreSQL's triggers announce both; `finished` keeps the answer the same.
                let state = self.finished(lease, &values, finished);
                return Ok((state, claimed.map(|(job, _)| job)));
            }
        };
        let values = FinishValues::of(lease, &finish, now);
        let rows: Vec<JobRow> = on_queue_writer!(self, writer, |conn| {
            sqlite::finish_and_claim(conn, lease, &values, next, now).await?
        });
        // The claimed job is the one row left running; the finished one never is.
        let mut finished = None;
        let mut claimed = None;
        for row in rows {
            if row.state == JobState::Running.as_str() {
                let seq = i64::from(row.event_seq);
                claimed = Some((row.into_job()?, seq));
            } else {
                finished = Some(i64::from(row.event_seq));
            }
        }
        let state = self.finished(lease, &values, finished);
        let Some((job, seq)) = claimed else {
            return Ok((state, None));
        };
        self.signal_local(Signal::JobEvent {
            job_id: job.id.clone(),
            seq,
            kind: JobEventKind::Started,
        });
        Ok((state, Some(job)))
    }

    /// After a finish that wrote event `seq` (`None`: the lease was lost, nothing was written):
    /// signals it and answers the job's new state.
    fn finished(&self, lease: &Lease, values: &FinishValues, seq: Option<i64>) -> Option<JobState> {
        let seq = seq?;
        self.signal_local(Signal::JobEvent {
            job_id: lease.job_id.clone(),
            seq,
            kind: values.event,
        });
        if values.state == JobState::Queued {
            self.signal_local(Signal::JobsQueued);
        }
        Some(values.state)
    }

    /// Puts running jobs whose lease expired (their worker died or lost the database) back in
    /// the queue, or fails them when no attempts are left; records an `error` or `finished`
    /// event for each.
    pub async fn reap_expired(&self, now: DateTime<Utc>) -> Result<Vec<Reaped>> {
        const SQL: &str = "UPDATE jobs SET \
             state = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END, \
             finished_at = CASE WHEN attempts >= max_attempts THEN $1 ELSE NULL END, \
             failure_reason = 'lease_expired', \
             error = 'the worker running attempt ' || attempts || ' (' || lease_owner || ') stopped renewing its lease', \
             run_at = $1, updated_at = $1, lease_owner = NULL, lease_expires_at = NULL, \
             event_seq = event_seq + 1 \
             WHERE state = 'running' AND lease_expires_at <= $1 \
             RETURNING id, kind, state, attempts, error, event_seq";
        let now = ts(now);
        let reaped = in_transaction!(self, |tx| {
            let rows: Vec<(String, String, String, i32, String, i32)> =
                sqlx::query_as(SQL).bind(now).fetch_all(&mut *tx).await?;
            let mut reaped = Vec::with_capacity(rows.len());
            for (id, kind, state, attempts, message, seq) in rows {
                let state: JobState = state.parse().map_err(|e| Error::Corrupt(format!("{e}")))?;
                let failure = JobFailure {
                    reason: FailureReason::LeaseExpired,
                    message,
                };
                let (event, data) = if state == JobState::Failed {
                    (
                        JobEventKind::Finished,
                        json!({"state": "failed", "error": failure}),
                    )
                } else {
                    (
                        JobEventKind::Error,
                        json!({"reason": failure.reason, "message": failure.message, "attempt": attempts}),
                    )
                };
                insert_event!(&mut *tx, &id, i64::from(seq), event, data, now);
                reaped.push((
                    Reaped {
                        job_id: id,
                        kind,
                        state,
                    },
                    i64::from(seq),
                    event,
                ));
            }
            tx.commit().await?;
            reaped
        });
        let mut out = Vec::with_capacity(reaped.len());
        for (reaped, seq, kind) in reaped {
            self.signal_local(Signal::JobEvent {
                job_id: reaped.job_id.clone(),
                seq,
                kind,
            });
            out.push(reaped);
        }
        if out.iter().any(|r| r.state == JobState::Queued) {
            self.signal_local(Signal::JobsQueued);
        }
        Ok(out)
    }

    /// Cancels a queued or running job (a running job's worker sees its lease gone and stops
    /// the handler). `None` when there is no such job.
    pub async fn cancel_job(
        &self,
        id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Transition>> {
        const SQL: &str = concat!(
            "UPDATE jobs SET state = 'cancelled', failure_reason = 'cancelled', error = $1, \
             finished_at = $2, updated_at = $2, lease_owner = NULL, lease_expires_at = NULL, \
             event_seq = event_seq + 1 \
             WHERE id = $3 AND state IN ('queued', 'running') RETURNING ",
            job_columns!()
        );
        let now = ts(now);
        let failure = JobFailure {
            reason: FailureReason::Cancelled,
            message: reason.to_owned(),
        };
        let data = json!({"state": "cancelled", "error": failure});
        self.transition(SQL, id, Some(reason), JobEventKind::Finished, data, now)
            .await
    }

    /// Queues a failed or cancelled job again, with its attempts reset. `None` when there is
    /// no such job.
    pub async fn retry_job(&self, id: &str, now: DateTime<Utc>) -> Result<Option<Transition>> {
        const SQL: &str = concat!(
            "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $2, result = NULL, \
             error = $1, failure_reason = NULL, finished_at = NULL, updated_at = $2, \
             event_seq = event_seq + 1 \
             WHERE id = $3 AND state IN ('failed', 'cancelled') RETURNING ",
            job_columns!()
        );
        let data = json!({"message": "queued again by an operator"});
        let transition = self
            .transition(SQL, id, None, JobEventKind::Log, data, ts(now))
            .await?;
        if matches!(transition, Some(Transition::Done(_))) {
            self.signal_local(Signal::JobsQueued);
        }
        Ok(transition)
    }

    /// Runs a state change of one job (`$1` message, `$2` now, `$3` id, returning the job's
    /// columns) with its event.
    async fn transition(
        &self,
        sql: &'static str,
        id: &str,
        message: Option<&str>,
        event: JobEventKind,
        data: Value,
        now: DateTime<Utc>,
    ) -> Result<Option<Transition>> {
        let row: Option<JobRow> = in_transaction!(self, |tx| {
            let row: Option<JobRow> = sqlx::query_as(sql)
                .bind(message)
                .bind(now)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = &row {
                insert_event!(&mut *tx, id, i64::from(row.event_seq), event, data, now);
                tx.commit().await?;
            }
            row
        });
        match row {
            Some(row) => {
                let seq = i64::from(row.event_seq);
                let job = row.into_job()?;
                self.signal_local(Signal::JobEvent {
                    job_id: job.id.clone(),
                    seq,
                    kind: event,
                });
                Ok(Some(Transition::Done(Box::new(job))))
            }
            None => Ok(self
                .job(id)
                .await?
                .map(|job| Transition::NotAllowed(job.state))),
        }
    }

    /// Appends an event to a job's log. `None` when there is no such job.
    pub async fn record_event(
        &self,
        job_id: &str,
        kind: JobEventKind,
        data: Value,
        now: DateTime<Utc>,
    ) -> Result<Option<JobEvent>> {
        const NEXT_SEQ: &str =
            "UPDATE jobs SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq";
        let now = ts(now);
        let seq: Option<i64> = in_transaction!(self, |tx| {
            let row: Option<(i32,)> = sqlx::query_as(NEXT_SEQ)
                .bind(job_id)
                .fetch_optional(&mut *tx)
                .await?;
            match row {
                Some((seq,)) => {
                    insert_event!(&mut *tx, job_id, i64::from(seq), kind, data.clone(), now);
                    tx.commit().await?;
                    Some(i64::from(seq))
                }
                None => None,
            }
        });
        let Some(seq) = seq else {
            return Ok(None);
        };
        self.signal_local(Signal::JobEvent {
            job_id: job_id.to_owned(),
            seq,
            kind,
        });
        Ok(Some(JobEvent {
            job_id: job_id.to_owned(),
            seq,
            kind,
            data,
            created_at: now,
        }))
    }
}

mod postgres;
mod reads;
mod sqlite;

#[cfg(test)]
mod tests;
