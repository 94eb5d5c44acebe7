//! The job queue's storage: enqueue (alone or inside a [`Tx`] with other writes), claim with
//! per-key concurrency and rate limits, heartbeat, finish, reap expired leases, cancel, retry,
//! the event log, and the reads of the API.
//!
//! Every function takes `now` from the caller (the worker's clock), so that tests move time
//! by hand; timestamps are truncated to microseconds ([`ts`]).
//!
//! A worker owns a running job through its [`Lease`]: the owner name *and* the attempt number.
//! Every write of a worker checks both, so a worker that lost its job (lease expired and the job
//! was claimed again, or it was cancelled) changes nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kodiai_protocol::{
    FailureReason, Job, JobEvent, JobEventKind, JobFailure, JobKind, JobSpec, JobState, Page,
};
use serde_json::{Value, json};
use sqlx::pool::PoolConnection;
use sqlx::types::Json;

use crate::db::{self, epoch_secs, in_transaction, on_reader, on_tx, ts};
use crate::signals::Signal;
use crate::{Error, Inner, Result, Store, Tx};

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
struct Held {
    conn: Option<PoolConnection<sqlx::Sqlite>>,
    /// Writes since it was taken from the pool.
    uses: u32,
}

/// Queue writes in a row on one held connection before it goes back to the pool.
const HOLD_AT_MOST: u32 = 16;

impl QueueWriter {
    async fn lock(&self) -> tokio::sync::MutexGuard<'_, Held> {
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
    fn put_back(&self, held: &mut Held, conn: PoolConnection<sqlx::Sqlite>, ok: bool) {
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

#[derive(sqlx::FromRow)]
struct EventRow {
    job_id: String,
    seq: i64,
    kind: String,
    data: Json<Value>,
    created_at: DateTime<Utc>,
}

impl EventRow {
    fn into_event(self) -> Result<JobEvent> {
        Ok(JobEvent {
            kind: self.kind.parse().map_err(|e| {
                Error::Corrupt(format!("event {} of job {}: {e}", self.seq, self.job_id))
            })?,
            job_id: self.job_id,
            seq: self.seq,
            data: self.data.0,
            created_at: self.created_at,
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

    /// One job.
    pub async fn job(&self, id: &str) -> Result<Option<Job>> {
        const SQL: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1");
        let row: Option<JobRow> = on_reader!(self, |pool| sqlx::query_as(SQL)
            .bind(id)
            .fetch_optional(pool)
            .await?);
        row.map(JobRow::into_job).transpose()
    }

    /// A page of jobs, newest first. `cursor` is the `next_cursor` of the previous page.
    pub async fn list_jobs(
        &self,
        filter: &JobFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Job>> {
        const SQL: &str = concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE ($1 IS NULL OR kind = $1) AND ($2 IS NULL OR state = $2) \
             AND ($3 IS NULL OR concurrency_key = $3) AND ($4 IS NULL OR id < $4) \
             ORDER BY id DESC LIMIT $5"
        );
        let limit = limit.max(1);
        let rows: Vec<JobRow> = on_reader!(self, |pool| {
            sqlx::query_as(SQL)
                .bind(&filter.kind)
                .bind(filter.state.map(JobState::as_str))
                .bind(&filter.concurrency_key)
                .bind(cursor)
                .bind(i64::from(limit) + 1)
                .fetch_all(pool)
                .await?
        });
        let data = rows
            .into_iter()
            .map(JobRow::into_job)
            .collect::<Result<Vec<_>>>()?;
        Ok(db::page(data, limit, |job| job.id.clone()))
    }

    /// A job's events after `after` (0 for all), in order, at most `limit`.
    pub async fn events_after(
        &self,
        job_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<JobEvent>> {
        const SQL: &str = "SELECT job_id, CAST(seq AS BIGINT) AS seq, kind, data, created_at \
             FROM job_events WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
        let rows: Vec<EventRow> = on_reader!(self, |pool| {
            sqlx::query_as(SQL)
                .bind(job_id)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(EventRow::into_event).collect()
    }

    /// The `step` events of a job, in order: what earlier runs already did.
    pub async fn steps(&self, job_id: &str) -> Result<Vec<JobEvent>> {
        const SQL: &str = "SELECT job_id, CAST(seq AS BIGINT) AS seq, kind, data, created_at \
             FROM job_events WHERE job_id = $1 AND kind = 'step' ORDER BY seq";
        let rows: Vec<EventRow> = on_reader!(self, |pool| sqlx::query_as(SQL)
            .bind(job_id)
            .fetch_all(pool)
            .await?);
        rows.into_iter().map(EventRow::into_event).collect()
    }

    /// How many jobs there are per kind and state.
    pub async fn job_counts(&self) -> Result<Vec<(String, JobState, i64)>> {
        const SQL: &str = "SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state";
        let rows: Vec<(String, String, i64)> =
            on_reader!(self, |pool| sqlx::query_as(SQL).fetch_all(pool).await?);
        rows.into_iter()
            .map(|(kind, state, count)| {
                let state = state.parse().map_err(|e| Error::Corrupt(format!("{e}")))?;
                Ok((kind, state, count))
            })
            .collect()
    }

    /// When the next queued job of these kinds falls due (now, if one is due already).
    pub async fn next_run_at(&self, kinds: &[JobKind]) -> Result<Option<DateTime<Utc>>> {
        // Few kinds: filtering after the MIN per kind keeps the SQL one string for both backends.
        const SQL: &str = "SELECT kind, MIN(run_at) FROM jobs WHERE state = 'queued' GROUP BY kind";
        let rows: Vec<(String, Option<DateTime<Utc>>)> =
            on_reader!(self, |pool| sqlx::query_as(SQL).fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .filter(|(kind, _)| kinds.iter().any(|k| k.as_str() == kind))
            .filter_map(|(_, at)| at)
            .min())
    }
}

/// SQLite: one writer, so a claim is one statement on it that picks the job while applying every
/// limit and starts it; nothing can slip in between the check and the start.
///
/// The pick walks `jobs_queued` in claim order (`INDEXED BY`) and stops at the first job whose
/// key has room. Left to itself the planner (which has no statistics: nothing runs `ANALYZE`)
/// prefers `jobs_state_kind`, which makes it check the key limits of *every* queued job and sort
/// them all, on every claim: 1.8 ms instead of 0.2 ms with 5,000 jobs queued.
mod sqlite {
    use super::*;

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
}

/// PostgreSQL: many claimers at once. The candidate is locked with `FOR UPDATE SKIP LOCKED`
/// (others skip it) and, in the same statement, a keyed job locks its key's row in
/// `job_rate_limits`; the next statement, whose snapshot is taken once that lock is held,
/// recounts the key's running jobs and starts the job only if there is room, so the per-key
/// limit holds exactly. A claim is four round trips: begin, candidate and key lock, start, commit;
/// a finish together with the claim adds none (it is part of the candidate's statement).
mod postgres {
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
                    let row: Option<(String, Option<String>, Option<f64>)> =
                        sqlx::query_as(CANDIDATE)
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
}

#[cfg(test)]
mod tests;
