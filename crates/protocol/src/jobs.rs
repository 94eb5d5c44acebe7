//! Jobs on the wire: what can be queued ([`JobSpec`], one variant per kind of work), a job as the
//! API shows it ([`Job`]), its event log ([`JobEvent`]) and why it failed ([`JobFailure`]).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `Display` and `FromStr` for a fieldless enum with `ALL` and `as_str`: its wire names, and an
/// [`UnknownName`] error that lists them.
macro_rules! named {
    ($type:ty, $what:literal) => {
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $type {
            type Err = UnknownName;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str() == text)
                    .ok_or_else(|| {
                        UnknownName::new($what, text, Self::ALL.iter().map(|v| v.as_str()))
                    })
            }
        }
    };
}

named!(JobKind, "job kind");
named!(JobState, "job state");
named!(JobEventKind, "job event kind");

/// A unit of work to queue: its kind is the tag, its fields are the job's payload. Each later kind
/// of work (review, mention, session turn, ticket command, task run, repository sync) is a variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobSpec {
    /// Does nothing and succeeds: for benchmarks, and for operators checking that workers run.
    Noop(NoopJob),
    /// Review a pull request (from a `pull_request` delivery).
    Review(ReviewJob),
    /// Answer a mention of the trigger (from a comment, review, or issue delivery).
    Mention(MentionJob),
}

impl JobSpec {
    pub fn kind(&self) -> JobKind {
        match self {
            Self::Noop(_) => JobKind::Noop,
            Self::Review(_) => JobKind::Review,
            Self::Mention(_) => JobKind::Mention,
        }
    }

    /// The webhook delivery the job was made from, if any.
    pub fn delivery_id(&self) -> Option<&str> {
        match self {
            Self::Noop(_) => None,
            Self::Review(job) => Some(&job.delivery_id),
            Self::Mention(job) => Some(&job.delivery_id),
        }
    }
}

/// The payload of a [`JobSpec::Noop`] job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NoopJob {
    /// Free text, kept with the job (for telling benchmark or test jobs apart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// The payload of a [`JobSpec::Review`] job: which pull request, at which head, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReviewJob {
    /// The webhook delivery (`X-GitHub-Delivery`) the job was made from.
    pub delivery_id: String,
    pub installation_id: Option<i64>,
    /// `owner/name`.
    pub repository: String,
    pub pull_number: u64,
    /// `opened`, `ready_for_review`, `reopened` or `synchronize`; `requested` when a mention
    /// asked for the review.
    pub action: String,
    pub head_sha: String,
    pub head_ref: String,
    pub base_ref: String,
    pub draft: bool,
    /// The pull request's author.
    pub author: String,
    /// Who caused the event.
    pub sender: String,
}

/// Where a mention was written, which decides where the answer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MentionSource {
    /// A comment on an issue or a pull request's conversation.
    IssueComment,
    /// A comment on a line of a pull request's diff: the answer goes in its thread.
    ReviewComment,
    /// The body of a submitted pull-request review.
    Review,
    /// The body of an issue.
    Issue,
}

/// The payload of a [`JobSpec::Mention`] job: who asked what, where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MentionJob {
    /// The webhook delivery (`X-GitHub-Delivery`) the job was made from.
    pub delivery_id: String,
    pub installation_id: Option<i64>,
    /// `owner/name`.
    pub repository: String,
    /// The issue or pull request number.
    pub number: u64,
    pub is_pull_request: bool,
    pub source: MentionSource,
    /// The event's action (`created`, `submitted`, `opened`, `edited`).
    pub action: String,
    /// The comment or review that holds the mention (none for an issue body).
    pub comment_id: Option<u64>,
    /// For a review comment: the thread's first comment, to reply to.
    pub reply_to: Option<u64>,
    /// Who wrote the mention.
    pub sender: String,
    /// Their numeric GitHub id, for the `ID+login@users.noreply.github.com` co-author address.
    /// Absent in jobs queued before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_id: Option<i64>,
    pub sender_is_bot: bool,
    /// The trigger or alias found.
    pub trigger: String,
    /// The text with the mention taken out.
    pub request: String,
}

/// The kinds of job, without their payloads: for filters, per-kind settings and metrics labels.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// See [`JobSpec::Noop`].
    Noop,
    /// See [`JobSpec::Review`].
    Review,
    /// See [`JobSpec::Mention`].
    Mention,
}

impl JobKind {
    /// Every kind, in declaration order.
    pub const ALL: &'static [JobKind] = &[JobKind::Noop, JobKind::Review, JobKind::Mention];

    /// The kind's name: the `kind` column, the tag of [`JobSpec`] and the metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Noop => "noop",
            Self::Review => "review",
            Self::Mention => "mention",
        }
    }
}

/// Where a job is in its life. `queued` and `running` are live; the other three are final
/// (until an operator retries a `failed` or `cancelled` job).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker, from `run_at` on.
    Queued,
    /// Claimed by a worker that holds its lease.
    Running,
    /// The handler finished; `result` holds what it returned.
    Succeeded,
    /// The handler failed for good; `error` says why.
    Failed,
    /// Cancelled through the API before it finished.
    Cancelled,
}

impl JobState {
    pub const ALL: &'static [JobState] = &[
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the job has stopped (nothing runs it or will, unless it is retried).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// A name that is not one of a fixed set; displays as one line listing the accepted names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
    pub expected: String,
}

impl UnknownName {
    fn new<'a>(what: &'static str, value: &str, accepted: impl Iterator<Item = &'a str>) -> Self {
        Self {
            what,
            value: value.chars().take(100).collect(),
            expected: accepted.collect::<Vec<_>>().join(", "),
        }
    }
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?}; expected one of: {}",
            self.what, self.value, self.expected
        )
    }
}

impl std::error::Error for UnknownName {}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// UUID v7: ids sort by creation time.
    pub id: String,
    /// The kind of work (see [`JobKind`]); a plain string so that a newer kind stays readable.
    pub kind: String,
    /// The kind's fields (see [`JobSpec`]).
    pub payload: serde_json::Value,
    /// Lower runs first.
    pub priority: i32,
    pub state: JobState,
    /// Runs started so far, this one included.
    pub attempts: u32,
    pub max_attempts: u32,
    /// Not run before this time (a delayed job, or a retry's backoff).
    pub run_at: DateTime<Utc>,
    /// The worker holding the job while it runs.
    pub lease_owner: Option<String>,
    /// Without a heartbeat by then, the worker is taken for dead and the job runs again.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Jobs sharing a key (`installation:<id>`, `user:<id>`) share a concurrency and rate limit.
    pub concurrency_key: Option<String>,
    /// A second enqueue with the same key returns the first job instead of a new one.
    pub dedupe_key: Option<String>,
    /// The GitHub installation the work is for.
    pub installation_id: Option<i64>,
    /// The webhook delivery that caused the job.
    pub delivery_id: Option<String>,
    /// What the handler returned, once it succeeded.
    pub result: Option<serde_json::Value>,
    /// Why the last run failed (also set while a transient failure waits for its retry).
    pub error: Option<JobFailure>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the first run started.
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Why a job (or its last run) failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobFailure {
    pub reason: FailureReason,
    /// What happened, in words. Never holds a secret.
    pub message: String,
}

/// The cause of a failure, for programs; the message is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The last run failed with a transient error; the job runs again at `run_at`.
    Transient,
    /// Every attempt failed with a transient error.
    AttemptsExhausted,
    /// The handler reported an error that retrying cannot fix.
    Permanent,
    /// The job ran longer than its kind's timeout and was cancelled.
    Timeout,
    /// The worker running it stopped heartbeating and no attempts were left.
    LeaseExpired,
    /// Cancelled through the API.
    Cancelled,
    /// The handler panicked (a bug in kodiai; the log has the details).
    Panic,
    /// No worker of this version knows the job's kind or can read its payload.
    InvalidJob,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::AttemptsExhausted => "attempts_exhausted",
            Self::Permanent => "permanent",
            Self::Timeout => "timeout",
            Self::LeaseExpired => "lease_expired",
            Self::Cancelled => "cancelled",
            Self::Panic => "panic",
            Self::InvalidJob => "invalid_job",
        }
    }
}

/// One entry of a job's event log. `seq` counts from 1 per job, in the order written; it is the
/// SSE event id, so a client resumes with `Last-Event-ID: <seq>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobEvent {
    pub job_id: String,
    pub seq: i64,
    pub kind: JobEventKind,
    /// Depends on the kind; see [`JobEventKind`].
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// What a [`JobEvent`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobEventKind {
    /// A worker started a run: `{attempt, worker}`.
    Started,
    /// The handler reports progress: free JSON, usually `{message}`.
    Progress,
    /// A log line of the handler: `{message}`.
    Log,
    /// A step finished, with its result: `{name, result}`. A re-run reads these to skip what
    /// was already done (never post a review twice).
    Step,
    /// A run failed and the job will run again, or its lease expired: `{reason, message, attempt}`.
    Error,
    /// The job reached a final state: `{state, result?, error?}`. Nothing follows until a retry.
    Finished,
}

impl JobEventKind {
    pub const ALL: &'static [JobEventKind] = &[
        JobEventKind::Started,
        JobEventKind::Progress,
        JobEventKind::Log,
        JobEventKind::Step,
        JobEventKind::Error,
        JobEventKind::Finished,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Progress => "progress",
            Self::Log => "log",
            Self::Step => "step",
            Self::Error => "error",
            Self::Finished => "finished",
        }
    }
}

/// `GET /api/v1/jobs/{id}`: the job and its whole event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: Job,
    pub events: Vec<JobEvent>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_is_tagged_by_its_kind() {
        let spec = JobSpec::Noop(NoopJob {
            label: Some("x".into()),
        });
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "noop", "label": "x"}));
        assert_eq!(serde_json::from_value::<JobSpec>(json).unwrap(), spec);
        assert_eq!(
            serde_json::to_value(spec.kind()).unwrap(),
            serde_json::json!(spec.kind().as_str())
        );
    }

    #[test]
    fn a_mention_queued_before_sender_id_existed_still_parses() {
        let old = serde_json::json!({
            "kind": "mention", "delivery_id": "d", "installation_id": 1,
            "repository": "o/r", "number": 3, "is_pull_request": false,
            "source": "issue_comment", "action": "created", "comment_id": 7,
            "reply_to": null, "sender": "octocat", "sender_is_bot": false,
            "trigger": "@kodiai", "request": "fix it",
        });
        let JobSpec::Mention(job) = serde_json::from_value::<JobSpec>(old).unwrap() else {
            panic!("not a mention");
        };
        assert_eq!(job.sender_id, None);
        assert_eq!(job.sender, "octocat");
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_accepted_ones() {
        for kind in JobKind::ALL {
            assert_eq!(kind.as_str().parse::<JobKind>().unwrap(), *kind);
        }
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>().unwrap(), *state);
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        for kind in JobEventKind::ALL {
            assert_eq!(kind.as_str().parse::<JobEventKind>().unwrap(), *kind);
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        let error = "done".parse::<JobState>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown job state \"done\"; expected one of: queued, running, succeeded, failed, cancelled"
        );
    }
}
