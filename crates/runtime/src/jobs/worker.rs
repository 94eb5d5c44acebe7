//! Workers: claim a job, run its handler under a lease, record how it ended.
//!
//! [`Worker::try_execute_job`] is one step (claim, run, finish) that tests call directly and that
//! reports [`Outcome::EmptyQueue`] when nothing can be claimed. [`WorkerPool`] runs
//! [`Worker::try_execute_job_and_claim_next`] in a loop per worker: the same step, but its finish
//! also claims the worker's next job in the same call to the database
//! ([`Store::finish_and_claim`]), held for the next step, so that a busy worker costs one round
//! trip per job instead of two. When the queue is empty it waits for a signal (PostgreSQL
//! `NOTIFY`, an in-process channel on SQLite) or the poll interval, whichever comes first; when
//! it stops, it puts a held job back in the queue without using an attempt.
//!
//! While a handler runs, the worker renews the job's lease every third of the lease and watches
//! for the end of the job from outside (cancel through the API, or the lease taken over after
//! it expired): then, as on timeout and at shutdown, the handler's token fires and the handler
//! gets the cancel grace to return before it is dropped. A run that fails the job for good
//! calls the handler's failure hook before the failure is recorded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kodiai_protocol::{FailureReason, Job, JobEventKind, JobFailure, JobKind, JobSpec, JobState};
use kodiai_store::jobs::spec_of;
use kodiai_store::{ClaimRequest, Finish, KeyLimits, Lease, RateLimit, Signal, Store};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::{Clock, Handlers, JobContext, JobError, JobHandler, kind_label};
use crate::config::JobsConfig;

/// The longest a handler's failure hook ([`JobHandler::on_failed`]) may take.
const FAILURE_HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// What one [`Worker::try_execute_job`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A job was claimed and its run has ended; `state` is where it is now (`queued` again for
    /// a retry or a release at shutdown).
    Completed { job_id: String, state: JobState },
    /// Nothing could be claimed: no job due, or every due job's key is at its limit.
    EmptyQueue,
}

/// How workers behave; from [`JobsConfig`], or built directly by tests.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub lease: Duration,
    /// How often a running job's lease is renewed (a third of the lease by default).
    pub heartbeat: Duration,
    pub limits: KeyLimits,
    pub poll_interval: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub default_timeout: Duration,
    pub timeouts: HashMap<JobKind, Duration>,
    pub cancel_grace: Duration,
}

impl WorkerSettings {
    pub fn from_config(config: &JobsConfig) -> Self {
        let lease = config.lease();
        Self {
            lease,
            heartbeat: lease / 3,
            limits: KeyLimits {
                max_running: config.per_key_concurrency,
                rate: (config.per_key_rate_per_minute > 0).then_some(RateLimit {
                    per_minute: config.per_key_rate_per_minute,
                    burst: config.per_key_burst,
                }),
            },
            poll_interval: config.poll_interval(),
            backoff_base: Duration::from_secs(config.backoff_base_secs),
            backoff_max: Duration::from_secs(config.backoff_max_secs),
            default_timeout: Duration::from_secs(config.timeout_secs),
            timeouts: JobKind::ALL
                .iter()
                .map(|kind| (*kind, config.timeout(*kind)))
                .collect(),
            cancel_grace: config.cancel_grace(),
        }
    }

    pub fn timeout(&self, kind: JobKind) -> Duration {
        self.timeouts
            .get(&kind)
            .copied()
            .unwrap_or(self.default_timeout)
    }

    /// The wait before run `attempt + 1` after run `attempt` failed transiently: base × 2^(attempt-1),
    /// at most the maximum, then a random part of its second half taken off ("equal jitter"), so
    /// that jobs failing together do not retry together.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let full = self
            .backoff_base
            .saturating_mul(1 << exponent)
            .min(self.backoff_max);
        full.mul_f64(1.0 - 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// One worker: claims one job at a time and runs it.
pub struct Worker {
    name: String,
    store: Store,
    handlers: Handlers,
    kinds: Vec<JobKind>,
    settings: Arc<WorkerSettings>,
    clock: Clock,
    /// Fires when the shutdown grace is over: running handlers are cancelled and their jobs
    /// released to the queue.
    abort: CancellationToken,
    /// When this worker last put expired leases back in the queue.
    last_reap: tokio::sync::Mutex<Option<DateTime<Utc>>>,
    /// The job claimed together with the last finish, running under this worker's lease and
    /// not started yet: the next step runs it instead of claiming.
    held: std::sync::Mutex<Option<Job>>,
}

impl Worker {
    pub fn new(
        store: Store,
        handlers: Handlers,
        settings: Arc<WorkerSettings>,
        clock: Clock,
    ) -> Self {
        let kinds = handlers.kinds();
        Self {
            name: worker_name(),
            store,
            handlers,
            kinds,
            settings,
            clock,
            abort: CancellationToken::new(),
            last_reap: tokio::sync::Mutex::new(None),
            held: std::sync::Mutex::new(None),
        }
    }

    /// The lease owner this worker writes: host, process and a unique part.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Cancelling this token ends the running job's handler and releases the job.
    pub fn abort_token(&self) -> CancellationToken {
        self.abort.clone()
    }

    /// Claims one job and runs it to its end (success, failure, retry scheduled, cancelled,
    /// timed out, or released at shutdown). Errors are the database's; a handler's errors are
    /// recorded on its job. A job held from an earlier
    /// [`Worker::try_execute_job_and_claim_next`] runs instead of a new claim.
    pub async fn try_execute_job(&self) -> kodiai_store::Result<Outcome> {
        self.step(None).await
    }

    /// [`Worker::try_execute_job`] for a worker that goes on working: the finish also claims
    /// this worker's next job, in the same call to the database ([`Store::finish_and_claim`];
    /// on SQLite one round trip per job instead of two), with the same kinds and limits as a
    /// claim. That job is held, under this worker's lease, for the next call, which runs it.
    /// Nothing is claimed ahead once `stop` or the abort token is cancelled, nor with a release.
    /// A worker that stops calling this must call [`Worker::release_held`]; a worker dropped
    /// with a held job leaves it to the reaper once its lease expires, like a dead process.
    pub async fn try_execute_job_and_claim_next(
        &self,
        stop: &CancellationToken,
    ) -> kodiai_store::Result<Outcome> {
        self.step(Some(stop)).await
    }

    /// Puts the job held for the next step (if any) back in the queue without using up its
    /// attempt, as a release at shutdown does. Returns its id.
    pub async fn release_held(&self) -> kodiai_store::Result<Option<String>> {
        let Some(job) = self.held_slot().take() else {
            return Ok(None);
        };
        let Some(lease) = Lease::of(&job) else {
            return Ok(None);
        };
        let state = self
            .store
            .finish(&lease, Finish::Release, self.clock.now())
            .await?;
        tracing::info!(job_id = %job.id, released = state.is_some(),
            "the job claimed ahead is queued again: its worker stops");
        Ok(Some(job.id))
    }

    /// The id of the job held for the next step, if any.
    pub fn held_job(&self) -> Option<String> {
        self.held_slot().as_ref().map(|job| job.id.clone())
    }

    fn held_slot(&self) -> std::sync::MutexGuard<'_, Option<Job>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn request(&self) -> ClaimRequest<'_> {
        ClaimRequest {
            worker: &self.name,
            kinds: &self.kinds,
            lease: self.settings.lease,
            limits: self.settings.limits,
        }
    }

    /// One claim (or the held job), run and finish; with `ahead`, the finish claims the next
    /// job unless `ahead` is cancelled.
    async fn step(&self, ahead: Option<&CancellationToken>) -> kodiai_store::Result<Outcome> {
        // Busy workers look for dead workers' jobs now and then; an idle one every time it
        // finds nothing to claim, so that an expired lease is noticed at the next wake-up.
        self.reap(false).await?;
        let mut claimed = self.take_held().await?;
        if claimed.is_none() {
            claimed = self.store.claim(&self.request(), self.clock.now()).await?;
        }
        if claimed.is_none() && self.reap(true).await? > 0 {
            claimed = self.store.claim(&self.request(), self.clock.now()).await?;
        }
        let Some(job) = claimed else {
            return Ok(Outcome::EmptyQueue);
        };
        let span = tracing::info_span!("job", job_id = %job.id, kind = %job.kind, attempt = job.attempts,
            delivery_id = job.delivery_id.as_deref().unwrap_or(""));
        let state = tracing::Instrument::instrument(self.execute(job.clone(), ahead), span).await?;
        Ok(Outcome::Completed {
            job_id: job.id,
            state,
        })
    }

    /// The held job, ready to run: its lease is renewed first once a heartbeat period has
    /// passed since it was claimed (as a running job's would have been). `None` when no job is
    /// held or the lease was lost meanwhile (cancelled, or reaped after it expired).
    async fn take_held(&self) -> kodiai_store::Result<Option<Job>> {
        let Some(mut job) = self.held_slot().take() else {
            return Ok(None);
        };
        let Some(lease) = Lease::of(&job) else {
            return Ok(None);
        };
        let now = self.clock.now();
        let lease_time =
            chrono::Duration::from_std(self.settings.lease).unwrap_or(chrono::Duration::MAX);
        let period =
            chrono::Duration::from_std(self.settings.heartbeat).unwrap_or(chrono::Duration::MAX);
        // The claim set the lease to end a lease after the claim.
        let claimed_at = job.lease_expires_at.map(|until| until - lease_time);
        if claimed_at.is_some_and(|at| now - at < period) {
            return Ok(Some(job));
        }
        let until = now + lease_time;
        match self.store.heartbeat(&lease, until, now).await {
            Ok(true) => {
                job.lease_expires_at = Some(until);
                Ok(Some(job))
            }
            Ok(false) => {
                tracing::info!(job_id = %job.id,
                    "the job claimed ahead ended elsewhere before it ran (cancelled, or its lease was taken over)");
                Ok(None)
            }
            Err(e) => {
                // Kept for the next step, which tries again.
                *self.held_slot() = Some(job);
                Err(e)
            }
        }
    }

    async fn execute(
        &self,
        job: Job,
        ahead: Option<&CancellationToken>,
    ) -> kodiai_store::Result<JobState> {
        let started = Instant::now();
        let Some(lease) = Lease::of(&job) else {
            return Ok(job.state);
        };
        let kind = job.kind.parse::<JobKind>().ok();
        let handler = kind.and_then(|k| self.handlers.get(k));
        let (kind, handler, spec) = match (kind, handler, spec_of(&job)) {
            (Some(kind), Some(handler), Ok(spec)) => (kind, handler, spec),
            (_, _, spec) => {
                let message = spec
                    .err()
                    .unwrap_or_else(|| format!("no handler for kind {}", job.kind));
                let failure = JobFailure {
                    reason: FailureReason::InvalidJob,
                    message,
                };
                tracing::warn!(error = %failure.message, "job cannot run");
                return self
                    .finish(&job, &lease, Finish::Failed(failure), started, ahead)
                    .await;
            }
        };

        let mut signals = self.store.subscribe().await?;
        let token = CancellationToken::new();
        let spec_copy = spec.clone();
        let ctx = JobContext::new(
            job.clone(),
            spec,
            token.clone(),
            self.store.clone(),
            self.clock.clone(),
        );
        // Aborted when this run is dropped (its worker's task was aborted), like a dead process.
        // The handler's log lines carry the job's span (id, kind, attempt, delivery).
        let mut task = AbortOnDropHandle::new(tokio::spawn(tracing::Instrument::instrument(
            handler.run(ctx),
            tracing::Span::current(),
        )));
        tracing::info!("job started");

        let timeout = tokio::time::sleep(self.settings.timeout(kind));
        tokio::pin!(timeout);
        // The first renewal is one period away. (`interval`'s immediate first tick would cost a
        // timer step, about a millisecond, on every job.)
        let every = self.settings.heartbeat.max(Duration::from_millis(10));
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        // Set once the handler must stop, with the reason; the grace runs from then.
        let mut stop: Option<Stop> = None;
        let grace = tokio::time::sleep(Duration::MAX);
        tokio::pin!(grace);

        let joined = loop {
            tokio::select! {
                joined = &mut task => break Some(joined),
                () = &mut timeout, if stop.is_none() => {
                    stop = Some(Stop::Timeout);
                }
                () = self.abort.cancelled(), if stop.is_none() => {
                    stop = Some(Stop::Shutdown);
                }
                _ = heartbeat.tick() => {
                    let until = self.clock.now() + chrono::Duration::from_std(self.settings.lease).unwrap_or(chrono::Duration::MAX);
                    match self.store.heartbeat(&lease, until, self.clock.now()).await {
                        Ok(true) => {}
                        Ok(false) => { stop.get_or_insert(Stop::Lost); }
                        Err(e) => tracing::warn!(error = %e, "cannot renew the lease; trying again at the next heartbeat"),
                    }
                }
                signal = signals.recv() => {
                    let concerns_us = match &signal {
                        Signal::JobEvent { job_id, kind, .. } => *job_id == job.id && *kind == JobEventKind::Finished,
                        Signal::Resync => true,
                        Signal::JobsQueued => false,
                    };
                    if concerns_us && stop.is_none() && !self.still_ours(&lease).await {
                        stop = Some(Stop::Lost);
                    }
                }
                () = &mut grace => {
                    tracing::warn!(grace_secs = self.settings.cancel_grace.as_secs_f64(), "the handler did not return within the cancel grace; dropping it");
                    task.abort();
                    break None;
                }
            }
            if stop.is_some() && !token.is_cancelled() {
                token.cancel();
                grace
                    .as_mut()
                    .reset(tokio::time::Instant::now() + self.settings.cancel_grace);
            }
        };

        let finish = match (stop, joined) {
            (Some(Stop::Lost), _) => {
                tracing::info!(
                    "job ended elsewhere (cancelled, or its lease was taken over); its run stopped"
                );
                record_duration(&job.kind, "lost", started);
                return self.current_state(&job.id).await;
            }
            (Some(Stop::Shutdown), _) => Finish::Release,
            (Some(Stop::Timeout), _) => Finish::Failed(JobFailure {
                reason: FailureReason::Timeout,
                message: format!(
                    "ran longer than the {kind} timeout of {} s and was cancelled; what it recorded is kept",
                    self.settings.timeout(kind).as_secs_f64()
                ),
            }),
            (None, Some(Ok(Ok(result)))) => Finish::Succeeded(result),
            (None, Some(Ok(Err(JobError::Permanent { message })))) => Finish::Failed(JobFailure {
                reason: FailureReason::Permanent,
                message,
            }),
            (
                None,
                Some(Ok(Err(JobError::Transient {
                    message,
                    retry_after,
                }))),
            ) => {
                if job.attempts >= job.max_attempts {
                    Finish::Failed(JobFailure {
                        reason: FailureReason::AttemptsExhausted,
                        message: format!(
                            "{message} (attempt {} of {})",
                            job.attempts, job.max_attempts
                        ),
                    })
                } else {
                    let wait = retry_after
                        .map(|d| d.min(self.settings.backoff_max))
                        .unwrap_or_else(|| self.settings.backoff(job.attempts, fastrand::f64()));
                    metrics::counter!("job_retries_total", "kind" => kind.as_str()).increment(1);
                    Finish::Retry {
                        at: self.clock.now()
                            + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX),
                        failure: JobFailure {
                            reason: FailureReason::Transient,
                            message,
                        },
                    }
                }
            }
            (None, Some(Err(join_error))) => {
                tracing::error!(error = %join_error, "job handler panicked");
                Finish::Failed(JobFailure {
                    reason: FailureReason::Panic,
                    message:
                        "the handler panicked; the server log has the details under this job id"
                            .into(),
                })
            }
            // The grace sleep only runs after a stop.
            (None, None) => Finish::Release,
        };
        if let Finish::Failed(failure) = &finish {
            self.report_failure(&job, &spec_copy, handler.as_ref(), failure)
                .await;
        }
        self.finish(&job, &lease, finish, started, ahead).await
    }

    /// Runs the handler's [`JobHandler::on_failed`] hook on a fresh context, bounded by
    /// [`FAILURE_HOOK_TIMEOUT`] (and half the lease, which nothing renews meanwhile).
    async fn report_failure(
        &self,
        job: &Job,
        spec: &JobSpec,
        handler: &dyn JobHandler,
        failure: &JobFailure,
    ) {
        let ctx = JobContext::new(
            job.clone(),
            spec.clone(),
            CancellationToken::new(),
            self.store.clone(),
            self.clock.clone(),
        );
        let limit = FAILURE_HOOK_TIMEOUT.min(self.settings.lease / 2);
        if tokio::time::timeout(limit, handler.on_failed(ctx, failure.clone()))
            .await
            .is_err()
        {
            tracing::warn!(
                limit_secs = limit.as_secs_f64(),
                "the failure hook did not finish in time"
            );
        }
    }

    async fn finish(
        &self,
        job: &Job,
        lease: &Lease,
        finish: Finish,
        started: Instant,
        ahead: Option<&CancellationToken>,
    ) -> kodiai_store::Result<JobState> {
        let label = match &finish {
            Finish::Succeeded(_) => "succeeded",
            Finish::Failed(failure) => failure.reason.as_str(),
            Finish::Retry { .. } => "retry",
            Finish::Release => "released",
        };
        if let Finish::Failed(failure) = &finish {
            tracing::warn!(reason = failure.reason.as_str(), error = %failure.message, "job failed");
        }
        record_duration(&job.kind, label, started);
        let claim_next = ahead.is_some_and(|stop| !stop.is_cancelled())
            && !self.abort.is_cancelled()
            && !matches!(finish, Finish::Release);
        let finished = if claim_next {
            let (state, next) = self
                .store
                .finish_and_claim(lease, finish, &self.request(), self.clock.now())
                .await?;
            *self.held_slot() = next;
            state
        } else {
            self.store.finish(lease, finish, self.clock.now()).await?
        };
        match finished {
            Some(state) => {
                tracing::info!(state = state.as_str(), outcome = label, "job run ended");
                Ok(state)
            }
            None => {
                tracing::info!(
                    "job ended elsewhere while it ran (cancelled, or its lease was taken over)"
                );
                self.current_state(&job.id).await
            }
        }
    }

    /// The state of a job this worker lost (a deleted job counts as cancelled).
    async fn current_state(&self, job_id: &str) -> kodiai_store::Result<JobState> {
        Ok(self
            .store
            .job(job_id)
            .await?
            .map_or(JobState::Cancelled, |job| job.state))
    }

    /// Whether this worker still holds the lease (one read; only on a signal that the job may
    /// have ended elsewhere).
    async fn still_ours(&self, lease: &Lease) -> bool {
        match self.store.job(&lease.job_id).await {
            Ok(Some(job)) => {
                job.state == JobState::Running
                    && job.lease_owner.as_deref() == Some(lease.owner.as_str())
                    && job.attempts == lease.attempt
            }
            Ok(None) => false,
            // Unknown: keep running; the next heartbeat finds out.
            Err(_) => true,
        }
    }

    /// Puts jobs with expired leases back in the queue (or fails them when their attempts are
    /// used up); unless `now_anyway`, at most every quarter lease. Returns how many it found.
    async fn reap(&self, now_anyway: bool) -> kodiai_store::Result<usize> {
        let now = self.clock.now();
        let every =
            chrono::Duration::from_std(self.settings.lease / 4).unwrap_or(chrono::Duration::MAX);
        let mut last = self.last_reap.lock().await;
        if !now_anyway && last.is_some_and(|at| now - at < every) {
            return Ok(0);
        }
        *last = Some(now);
        let reaped = self.store.reap_expired(now).await?;
        for job in &reaped {
            tracing::warn!(job_id = %job.job_id, kind = %job.kind, state = job.state.as_str(),
                "a job's lease expired (its worker stopped); it is queued again unless its attempts are used up");
            metrics::counter!("job_lease_expiries_total", "kind" => kind_label(&job.kind))
                .increment(1);
        }
        Ok(reaped.len())
    }
}

/// Why a handler was told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Timeout,
    Shutdown,
    /// The job is no longer this worker's: cancelled, or taken over after a lease expiry.
    Lost,
}

fn record_duration(kind: &str, outcome: &'static str, started: Instant) {
    metrics::histogram!("job_duration_seconds", "kind" => kind_label(kind), "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
}

fn worker_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    let unique = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}/{}/{}", std::process::id(), &unique[..8])
}

/// Workers running in loops until shut down.
pub struct WorkerPool {
    stop: CancellationToken,
    aborts: Vec<CancellationToken>,
    tasks: JoinSet<()>,
}

impl WorkerPool {
    /// Starts `size` workers. Each claims jobs while there are any, then waits for a signal or
    /// the poll interval.
    pub fn start(
        store: Store,
        handlers: Handlers,
        settings: WorkerSettings,
        clock: Clock,
        size: u32,
    ) -> Self {
        let settings = Arc::new(settings);
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut aborts = Vec::new();
        for _ in 0..size {
            let worker = Worker::new(
                store.clone(),
                handlers.clone(),
                Arc::clone(&settings),
                clock.clone(),
            );
            aborts.push(worker.abort_token());
            tasks.spawn(run_loop(
                worker,
                store.clone(),
                settings.poll_interval,
                stop.clone(),
            ));
        }
        Self {
            stop,
            aborts,
            tasks,
        }
    }

    /// Stops claiming, lets running jobs finish within `grace`, then cancels the rest and puts
    /// their jobs back in the queue (without using up an attempt).
    pub async fn shutdown(mut self, grace: Duration) {
        self.stop.cancel();
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "jobs still running after the shutdown grace; cancelling them and queueing them again"
            );
            for abort in &self.aborts {
                abort.cancel();
            }
            while self.tasks.join_next().await.is_some() {}
        }
    }
}

async fn run_loop(worker: Worker, store: Store, poll: Duration, stop: CancellationToken) {
    let mut signals = match store.subscribe().await {
        Ok(signals) => Some(signals),
        Err(e) => {
            tracing::warn!(error = %e, "cannot subscribe to queue signals; polling only");
            None
        }
    };
    while !stop.is_cancelled() {
        if let Some(signals) = signals.as_mut() {
            signals.drain();
        }
        let wait = match worker.try_execute_job_and_claim_next(&stop).await {
            Ok(Outcome::Completed { .. }) => continue,
            Ok(Outcome::EmptyQueue) => poll,
            Err(e) => {
                tracing::warn!(worker = worker.name(), error = %e, "claiming a job failed; trying again");
                poll.max(Duration::from_secs(1))
            }
        };
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
            () = wait_for_work(signals.as_mut()) => {}
        }
    }
    if let Err(e) = worker.release_held().await {
        tracing::warn!(worker = worker.name(), error = %e,
            "cannot queue the job claimed ahead again; it runs again once its lease expires");
    }
}

async fn wait_for_work(signals: Option<&mut kodiai_store::Subscription>) {
    let Some(signals) = signals else {
        return std::future::pending().await;
    };
    loop {
        match signals.recv().await {
            Signal::JobsQueued | Signal::Resync => return,
            // A job that finished frees a slot of its key.
            Signal::JobEvent {
                kind: JobEventKind::Finished | JobEventKind::Error,
                ..
            } => return,
            Signal::JobEvent { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum_less_up_to_half_for_jitter() {
        let config = crate::Config::from_sources(None, &Default::default()).unwrap();
        let mut settings = WorkerSettings::from_config(&config.jobs);
        settings.backoff_base = Duration::from_secs(10);
        settings.backoff_max = Duration::from_secs(60);
        let secs = |attempt, jitter| settings.backoff(attempt, jitter).as_secs_f64();
        assert_eq!(
            [1, 2, 3, 4, 5, 40].map(|attempt| secs(attempt, 0.0)),
            [10.0, 20.0, 40.0, 60.0, 60.0, 60.0]
        );
        assert_eq!(
            [1, 2, 3, 4].map(|attempt| secs(attempt, 1.0)),
            [5.0, 10.0, 20.0, 30.0]
        );
        assert_eq!(secs(2, 0.5), 15.0);
    }

    #[test]
    fn settings_follow_the_configuration() {
        let env = [
            ("KODIAI_JOBS_LEASE_SECS", "30"),
            ("KODIAI_JOBS_PER_KEY_RATE_PER_MINUTE", "0"),
            ("KODIAI_JOB_TIMEOUT_SECS", "100"),
            ("KODIAI_JOB_TIMEOUT_NOOP_SECS", "7"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into_iter()
        .collect();
        let config = crate::Config::from_sources(None, &env).unwrap();
        let settings = WorkerSettings::from_config(&config.jobs);
        assert_eq!(settings.lease, Duration::from_secs(30));
        assert_eq!(settings.heartbeat, Duration::from_secs(10));
        assert_eq!(settings.limits.rate, None);
        assert_eq!(settings.limits.max_running, 2);
        assert_eq!(settings.timeout(JobKind::Noop), Duration::from_secs(7));
        assert_eq!(settings.default_timeout, Duration::from_secs(100));
    }
}
