//! Running jobs: what a handler is ([`JobHandler`]) and gets ([`JobContext`]), how it fails
//! ([`JobError`]), the registry of handlers by kind ([`Handlers`]), the queue's clock
//! ([`Clock`]), and the workers that claim and run jobs ([`worker`]).
//!
//! Every piece of work kodiai does is a job: HTTP handlers and the webhook enqueue, workers run.
//! A handler records what it has done as `step` events, so that a re-run (after a crash, a lease
//! expiry or a retry) can skip it: [`JobContext::step`] answers "was this done already?".

pub mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kodiai_protocol::{Job, JobEvent, JobEventKind, JobFailure, JobKind, JobSpec};
use kodiai_store::Store;
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

pub use worker::{Outcome, Worker, WorkerPool, WorkerSettings};

/// The time the queue goes by: when jobs are due, when leases expire. Timers inside a worker
/// (heartbeats, timeouts) run on tokio's clock; this clock is for what is written to the
/// database, and tests move it by hand to make leases expire and retries fall due.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system's wall clock (what every process on one database shares).
    #[default]
    System,
    /// A clock that moves only when told to ([`Clock::advance`]).
    Manual(Arc<Mutex<DateTime<Utc>>>),
}

impl Clock {
    /// A manual clock standing at `start`.
    pub fn manual(start: DateTime<Utc>) -> Self {
        Self::Manual(Arc::new(Mutex::new(start)))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Self::System => Utc::now(),
            Self::Manual(at) => *at.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        }
    }

    /// Moves a manual clock forward; the system clock ignores this.
    pub fn advance(&self, by: Duration) {
        if let Self::Manual(at) = self {
            let mut at = at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *at += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::zero());
        }
    }
}

/// How a handler failed. The worker decides what happens next from the variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Worth another try later (a network error, a 5xx, a rate limit): the job is queued again
    /// with exponential backoff and jitter, or after `retry_after` when the cause said how long,
    /// until its attempts run out.
    #[error("{message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (bad input, no permission, a missing repository): the job fails now.
    #[error("{message}")]
    Permanent { message: String },
}

impl JobError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self::Transient {
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: message.into(),
        }
    }

    /// A transient error that says when to try again.
    pub fn retry_after(message: impl Into<String>, after: Duration) -> Self {
        Self::Transient {
            message: message.into(),
            retry_after: Some(after),
        }
    }
}

impl From<kodiai_store::Error> for JobError {
    /// The database failing under a handler is worth a retry.
    fn from(error: kodiai_store::Error) -> Self {
        Self::transient(format!("database: {error}"))
    }
}

/// What a handler gets: the job, its typed spec, its cancellation token and its event log.
/// Cheap to clone.
#[derive(Clone)]
pub struct JobContext {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    job: Job,
    spec: JobSpec,
    token: CancellationToken,
    store: Store,
    clock: Clock,
    /// The `step` events of earlier runs, read on first use.
    earlier_steps: OnceCell<Vec<JobEvent>>,
}

impl JobContext {
    pub(crate) fn new(
        job: Job,
        spec: JobSpec,
        token: CancellationToken,
        store: Store,
        clock: Clock,
    ) -> Self {
        Self {
            inner: Arc::new(ContextInner {
                job,
                spec,
                token,
                store,
                clock,
                earlier_steps: OnceCell::new(),
            }),
        }
    }

    /// The job as claimed (state `running`, this run's attempt number).
    pub fn job(&self) -> &Job {
        &self.inner.job
    }

    pub fn spec(&self) -> &JobSpec {
        &self.inner.spec
    }

    /// This run's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.inner.job.attempts
    }

    /// Fires when the job must stop: timeout, cancel through the API, lost lease, shutdown.
    /// A handler passes it to everything slow it calls and returns soon after it fires.
    pub fn token(&self) -> &CancellationToken {
        &self.inner.token
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// Resolves when [`JobContext::token`] fires.
    pub async fn cancelled(&self) {
        self.inner.token.cancelled().await;
    }

    /// Records a `progress` event (free JSON, usually `{message}`), shown live to watchers.
    pub async fn progress(&self, data: Value) -> Result<(), JobError> {
        self.record(JobEventKind::Progress, data).await
    }

    /// Records a `log` event.
    pub async fn log(&self, message: &str) -> Result<(), JobError> {
        self.record(JobEventKind::Log, json!({"message": message}))
            .await
    }

    /// Records that step `name` is done, with its result. Record a step right after its effect
    /// (a posted review, a pushed commit), so that a re-run finds it with [`JobContext::step`].
    pub async fn record_step(&self, name: &str, result: Value) -> Result<(), JobError> {
        self.record(JobEventKind::Step, json!({"name": name, "result": result}))
            .await
    }

    /// The result of step `name` if an earlier run of this job recorded it.
    pub async fn step(&self, name: &str) -> Result<Option<Value>, JobError> {
        let steps = self
            .inner
            .earlier_steps
            .get_or_try_init(|| self.inner.store.steps(&self.inner.job.id))
            .await?;
        Ok(steps
            .iter()
            .find(|event| event.data.get("name").and_then(Value::as_str) == Some(name))
            .map(|event| event.data.get("result").cloned().unwrap_or(Value::Null)))
    }

    /// The database, for handlers that keep state of their own beyond the job (a review's
    /// findings).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The queue's time now.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    async fn record(&self, kind: JobEventKind, data: Value) -> Result<(), JobError> {
        let now = self.inner.clock.now();
        self.inner
            .store
            .record_event(&self.inner.job.id, kind, data, now)
            .await?;
        Ok(())
    }
}

/// A metrics label for a stored kind: known kinds by name, anything else (a newer version's
/// kind) as `unknown`, since labels must stay a small set.
pub fn kind_label(kind: &str) -> &'static str {
    kind.parse::<JobKind>().map_or("unknown", JobKind::as_str)
}

/// The boxed future a handler returns: the job's result, or why it failed.
pub type HandlerFuture = BoxFuture<'static, Result<Value, JobError>>;

/// Runs one kind of job. Any `Fn(JobContext) -> impl Future<Output = Result<Value, JobError>>`
/// is a handler.
pub trait JobHandler: Send + Sync + 'static {
    fn run(&self, ctx: JobContext) -> HandlerFuture;

    /// Called once when a run ends the job as failed for good (a permanent error, the kind's
    /// timeout, attempts used up, a panic), before the failure is recorded: where the job must
    /// tell someone (a comment on GitHub), so that a failure is never silent. `ctx` is a fresh
    /// context of the same job (its steps read anew, its own token); the worker bounds the
    /// hook's time. Default: nothing.
    fn on_failed(&self, ctx: JobContext, failure: JobFailure) -> BoxFuture<'static, ()> {
        let _ = (ctx, failure);
        Box::pin(async {})
    }
}

impl<F, Fut> JobHandler for F
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, JobError>> + Send + 'static,
{
    fn run(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin(self(ctx))
    }
}

/// The handlers of a process, by kind. A worker claims only the kinds it has a handler for, so
/// processes of different versions can share one database.
#[derive(Clone, Default)]
pub struct Handlers {
    by_kind: HashMap<JobKind, Arc<dyn JobHandler>>,
}

impl Handlers {
    /// The handlers that need nothing from the configuration (`noop`); a server's full set,
    /// with the GitHub work, is `kodiai_github_app::handlers::for_config`.
    pub fn builtin() -> Self {
        Self::default().with(JobKind::Noop, |_ctx: JobContext| async { Ok(Value::Null) })
    }

    /// Adds or replaces the handler of `kind`.
    pub fn with(mut self, kind: JobKind, handler: impl JobHandler) -> Self {
        self.by_kind.insert(kind, Arc::new(handler));
        self
    }

    pub fn get(&self, kind: JobKind) -> Option<Arc<dyn JobHandler>> {
        self.by_kind.get(&kind).cloned()
    }

    /// The kinds with a handler, in a stable order.
    pub fn kinds(&self) -> Vec<JobKind> {
        let mut kinds: Vec<JobKind> = self.by_kind.keys().copied().collect();
        kinds.sort();
        kinds
    }
}
