//! The review after its gates: the context (`crate::context`), a worktree at the head, the
//! agent with the workspace tools and the review tools, then one review.
//!
//! Idempotence, in order: the job's own `review_posted` step (a re-run of a job that posted),
//! then a review on the pull request carrying this head's marker (a crash between the post and
//! the step, or another job for the same head); both are checked before any model call and
//! again right before posting. The step is recorded right after the post, then the store's
//! record (last reviewed head, fingerprints), which a re-run writes again from the step.
//!
//! A review a mention asked for (`requested`) is one more review of its head: its marker is
//! keyed by the mention's delivery too (so "review this" on a reviewed head reviews again),
//! findings earlier reviews posted are not repeated, and a clean result is an APPROVE whose
//! body carries the marker.
//!
//! Incremental (`synchronize` with `review.incremental`): the prompt shows the diff from the
//! last reviewed commit to the head (real git in the worktree) instead of the whole pull
//! request; anchors are still checked against the pull request's diff, which is what GitHub
//! accepts comments on. With `review.incremental`, findings posted by an earlier review of the
//! pull request (same fingerprint) are dropped before posting, whatever the action.

use std::path::Path;
use std::sync::Arc;

use kodiai_agent::tools::WorkspaceRoot;
use kodiai_agent::workspace::{Checkout, CheckoutRequest, Remote, Target};
use kodiai_github::client::InstallationClient;
use kodiai_github::diff::Diff;
use kodiai_github::rest::PullFile;
use kodiai_protocol::{FinishReason, ReviewJob};
use kodiai_store::{PostedFinding, ReviewRecord};
use serde_json::{Value, json};

use super::post;
use crate::context::git::{self, GitConfig};
use crate::context::{PromptBudget, ReviewInput, build_review_prompt, fetch_review_input};
use crate::github_tools::{
    CI_SERVER, COMMENT_SERVER, CreateInlineComment, Finding, GetCiStatus, GithubScope,
    INLINE_COMMENT_SERVER, JobProgress, SharedFindings, findings_of,
};
use crate::handlers::{GithubWork, JobRun, github_error};
use crate::repo_config::RepoConfig;
use kodiai_runtime::engine::{Engine, ToolGroups};
use kodiai_runtime::jobs::{JobContext, JobError};

/// The step that records the posted review.
pub(crate) const POSTED: &str = "review_posted";

/// How the agent's run ended, and what it left.
struct AgentReport {
    reason: FinishReason,
    error: Option<String>,
    summary: String,
    turns: u32,
    cost_usd: f64,
    model: String,
    findings: Vec<Finding>,
}

/// Where the prompt's patches came from.
#[derive(Debug, Clone)]
enum Scope {
    Whole,
    /// From the last reviewed commit to the head.
    Since(String),
}

/// Reviews pull request `job` (the gates passed).
pub(crate) async fn review(
    ctx: &JobContext,
    work: &GithubWork,
    client: InstallationClient,
    job: &ReviewJob,
    config: &RepoConfig,
) -> Result<Value, JobError> {
    let scope = work.scope(client, &job.repository, job.pull_number)?;
    let marker = if requested(job) {
        post::requested_review_marker(
            &job.repository,
            job.pull_number,
            &job.head_sha,
            &job.delivery_id,
        )
    } else {
        post::review_marker(&job.repository, job.pull_number, &job.head_sha)
    };
    if let Some(done) = already_posted(ctx, &scope, job, &marker).await? {
        return Ok(done);
    }

    let workspaces = work
        .workspaces()
        .ok_or_else(|| JobError::permanent("this worker has no workspaces configured"))?;
    let engine = work
        .engine(config.model.as_deref(), &ctx.job().id)
        .map_err(|e| JobError::permanent(format!("no model is available ({e})")))?;
    let input = fetch_review_input(
        &scope.client,
        &scope.owner,
        &scope.repo,
        job.pull_number,
        &config.review,
    )
    .await
    .map_err(|e| failed("reading the pull request from GitHub", &e))?;
    let repository = scope
        .client
        .get_repository(&scope.owner, &scope.repo)
        .await
        .map_err(|e| failed("reading the repository from GitHub", &e))?;
    let url_text = repository
        .clone_url
        .clone()
        .unwrap_or_else(|| format!("https://github.com/{}.git", repository.full_name));
    let url = url::Url::parse(&url_text)
        .map_err(|e| JobError::permanent(format!("clone URL {url_text:?}: {e}")))?;
    let token = scope
        .client
        .git_token()
        .await
        .map_err(|e| failed("getting a token for git", &e))?;
    let remote = Remote::new(url, token).map_err(|e| JobError::permanent(e.to_string()))?;
    let checkout = workspaces
        .checkout(CheckoutRequest {
            job: ctx.job().id.clone(),
            remote,
            target: Target::PullRequest {
                number: job.pull_number,
                head_sha: Some(job.head_sha.clone()),
            },
            also_fetch: vec![input.base.name.clone()],
            size_hint_bytes: None,
        })
        .await
        .map_err(|e| {
            let message = format!("checking out the pull request: {e}");
            match e {
                kodiai_agent::workspace::WorkspaceError::RepositoryTooLarge { .. }
                | kodiai_agent::workspace::WorkspaceError::InvalidInput(_) => {
                    JobError::permanent(message)
                }
                _ => JobError::transient(message),
            }
        })?;
    let checkout = Arc::new(checkout);
    let run = ReviewRun {
        ctx,
        work,
        scope: &scope,
        job,
        config,
        checkout: &checkout,
        marker: &marker,
    };
    let outcome = review_in(run, input, engine).await;
    // The tools hold the worktree too; whoever drops it last removes it.
    if let Ok(checkout) = Arc::try_unwrap(checkout)
        && let Err(e) = checkout.remove().await
    {
        tracing::warn!(error = %e, "removing the worktree failed");
    }
    outcome
}

/// The job's `review_posted` step, or a review of this head already on the pull request:
/// what a re-run returns without doing anything else.
async fn already_posted(
    ctx: &JobContext,
    scope: &GithubScope,
    job: &ReviewJob,
    marker: &str,
) -> Result<Option<Value>, JobError> {
    if let Some(done) = ctx.step(POSTED).await? {
        remember(ctx, job, &done).await?;
        return Ok(Some(done));
    }
    let Some(review_id) = post::find_posted(scope, marker, &job.head_sha, !requested(job))
        .await
        .map_err(github_error)?
    else {
        return Ok(None);
    };
    ctx.log(&format!(
        "review {review_id} of this head is already on the pull request; not posting another"
    ))
    .await?;
    let done = json!({
        "decision": "reviewed",
        "review_id": review_id,
        "found_posted": true,
        "delivery_id": job.delivery_id,
        "pull_number": job.pull_number,
        "head_sha": job.head_sha,
        "fingerprints": [],
    });
    ctx.record_step(POSTED, done.clone()).await?;
    remember(ctx, job, &done).await?;
    Ok(Some(done))
}

/// Writes the store's record of a posted review from its step's result (idempotent).
async fn remember(ctx: &JobContext, job: &ReviewJob, done: &Value) -> Result<(), JobError> {
    let Some(review_id) = done.get("review_id").and_then(Value::as_u64) else {
        return Ok(());
    };
    let findings = done
        .get("fingerprints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Some(PostedFinding {
                fingerprint: f.get("fingerprint")?.as_str()?.to_owned(),
                path: f.get("path")?.as_str()?.to_owned(),
                line: f.get("line")?.as_u64()?,
            })
        })
        .collect();
    let record = ReviewRecord {
        repository: job.repository.clone(),
        pull_number: job.pull_number,
        head_sha: job.head_sha.clone(),
        review_id,
        findings,
    };
    ctx.store().record_review(&record, ctx.now()).await?;
    Ok(())
}

/// Whether a mention asked for this review (it is one more review of its head).
fn requested(job: &ReviewJob) -> bool {
    job.action == crate::handlers::mention::REQUESTED_ACTION
}

fn failed(what: &str, e: &kodiai_github::client::Error) -> JobError {
    let message = format!("{what}: {e}");
    if e.is_transient() {
        JobError::transient(message)
    } else {
        JobError::permanent(message)
    }
}

/// One review's parts once its worktree is there, passed down the pipeline together.
#[derive(Clone, Copy)]
struct ReviewRun<'a> {
    ctx: &'a JobContext,
    work: &'a GithubWork,
    scope: &'a GithubScope,
    job: &'a ReviewJob,
    config: &'a RepoConfig,
    checkout: &'a Arc<Checkout>,
    /// The hidden marker of this review (its head, or the request it answers).
    marker: &'a str,
}

/// The review once the worktree is there.
async fn review_in(
    run: ReviewRun<'_>,
    mut input: ReviewInput,
    engine: Engine,
) -> Result<Value, JobError> {
    let ReviewRun {
        ctx,
        job,
        config,
        checkout,
        scope,
        marker,
        ..
    } = run;
    // Anchors are checked against the pull request's diff as GitHub has it.
    let diff = Arc::new(Diff::from_pull_files(&input.files));
    let (review_scope, files) = incremental_files(ctx, job, config, checkout.path()).await?;
    if let Some(files) = files {
        if files.is_empty() {
            ctx.log("nothing changed since the last reviewed commit")
                .await?;
            return Ok(json!({
                "decision": "nothing_new",
                "delivery_id": job.delivery_id,
                "pull_number": job.pull_number,
                "head_sha": job.head_sha,
            }));
        }
        input.changed_files = files.len() as u64;
        input.files = files;
    }
    let model_name = engine.model_name();
    let prompt = build_review_prompt(&input, &PromptBudget::for_model(&model_name));
    let mut user = prompt.user;
    if let Scope::Since(last) = &review_scope {
        user.push_str(&format!(
            "\n## This review\n\nThe pull request was reviewed before, at `{last}`. The \
             patches above are only what changed since then; comment only on those changes \
             (anchors are lines of the pull request's new version, as numbered above).\n"
        ));
    }
    let _ = ctx
        .progress(json!({
            "message": "the agent is reviewing",
            "model": model_name,
            "files_in_prompt": prompt.included.len(),
            "files_skipped": prompt.skipped.len(),
        }))
        .await;
    let report = run_agent(run, engine, Arc::clone(&diff), prompt.system, user).await?;

    // A review asked for again does not repeat what earlier reviews said either.
    let posted_before = if config.review.incremental || requested(job) {
        ctx.store()
            .posted_fingerprints(&job.repository, job.pull_number)
            .await?
    } else {
        Default::default()
    };
    let prepared = post::prepare(
        &diff,
        &report.findings,
        &posted_before,
        Some(checkout.path()),
    );
    if report.reason == FinishReason::Cancelled {
        // Shutdown or a cancel through the API: the job runs again or was stopped on purpose;
        // half a review would then stand for the whole one.
        return Err(JobError::permanent("the review was cancelled"));
    }
    let stopped = stop_reason(&report, config);
    if stopped.is_some() && prepared.comments.is_empty() && prepared.unplaced.is_empty() {
        // Nothing to keep: the failure comment says what happened.
        return Err(JobError::permanent(format!(
            "{}; no review was posted",
            stopped.unwrap_or_default()
        )));
    }
    // Another run may have posted while this one worked.
    if let Some(done) = already_posted(ctx, scope, job, marker).await? {
        return Ok(done);
    }
    let clean = report.findings.is_empty() && stopped.is_none();
    let (event, body) = if clean && config.review.approve_when_clean && !requested(job) {
        ("APPROVE", None)
    } else if clean && config.review.approve_when_clean {
        // Its marker tells a re-run that this approval is the one it posted.
        (
            "APPROVE",
            Some(format!("{marker}\nkodiai found nothing to comment on.")),
        )
    } else {
        let mut text = scope.gate(report.summary.trim());
        if text.is_empty() {
            text = if clean {
                "kodiai found nothing to comment on.".to_owned()
            } else {
                "kodiai's review.".to_owned()
            };
        }
        if prepared.repeats > 0 {
            text.push_str(&format!(
                "\n\n<sub>{} finding(s) already posted in an earlier review are not repeated.</sub>",
                prepared.repeats
            ));
        }
        if let Some(why) = &stopped {
            text.push_str(&format!(
                "\n\n**This review is incomplete:** {why}. The comments below are what it found \
                 until then."
            ));
        }
        ("COMMENT", Some(format!("{marker}\n{text}")))
    };
    let posted = post::post(scope, &job.head_sha, event, body, &prepared)
        .await
        .map_err(|e| failed("posting the review", &e))?;
    let fingerprints: Vec<Value> = prepared
        .comments
        .iter()
        .map(|(c, f)| json!({"fingerprint": f, "path": c.path, "line": c.line}))
        .chain(
            prepared
                .unplaced
                .iter()
                .map(|(u, f)| json!({"fingerprint": f, "path": u.path, "line": u.line})),
        )
        .collect();
    let done = json!({
        "decision": "reviewed",
        "review_id": posted.review.id,
        "event": event,
        "outcome": report.reason.as_str(),
        "comments": posted.posted.len(),
        "moved": prepared.moved,
        "in_summary": prepared.unplaced.len() + posted.dropped.len(),
        "refused_by_github": posted.dropped.len(),
        "repeats_dropped": prepared.repeats,
        "incremental_from": match &review_scope { Scope::Since(s) => json!(s), Scope::Whole => Value::Null },
        "turns": report.turns,
        "cost_usd": report.cost_usd,
        "model": report.model,
        "delivery_id": job.delivery_id,
        "pull_number": job.pull_number,
        "head_sha": job.head_sha,
        "fingerprints": fingerprints,
    });
    ctx.record_step(POSTED, done.clone()).await?;
    remember(ctx, job, &done).await?;
    if let Some(why) = stopped {
        return Err(JobError::permanent(format!(
            "{why}; a partial review with {} comment(s) was posted",
            prepared.comments.len() + prepared.unplaced.len()
        )));
    }
    Ok(done)
}

/// Why the agent's run did not finish its review, if it did not.
fn stop_reason(report: &AgentReport, config: &RepoConfig) -> Option<String> {
    match report.reason {
        FinishReason::Completed => None,
        FinishReason::MaxTurns => Some(format!(
            "the review used all {} turns it may take (`settings.max_turns`)",
            config.settings.max_turns
        )),
        FinishReason::Budget => Some("the review reached its cost budget".to_owned()),
        FinishReason::Timeout => Some(format!(
            "the review ran out of time ({} s, `settings.timeout_seconds`)",
            config.settings.timeout_seconds
        )),
        FinishReason::Cancelled => Some("the review was cancelled".to_owned()),
        FinishReason::Error => Some(format!(
            "the model failed after {} turn(s): {}",
            report.turns,
            report.error.as_deref().unwrap_or("an error")
        )),
    }
}

/// For an incremental review, the files changed since the last reviewed commit (`None`: review
/// the whole pull request).
async fn incremental_files(
    ctx: &JobContext,
    job: &ReviewJob,
    config: &RepoConfig,
    worktree: &Path,
) -> Result<(Scope, Option<Vec<PullFile>>), JobError> {
    if job.action != "synchronize" || !config.review.incremental {
        return Ok((Scope::Whole, None));
    }
    let Some(last) = ctx
        .store()
        .last_reviewed_head(&job.repository, job.pull_number)
        .await?
    else {
        return Ok((Scope::Whole, None));
    };
    if last.head_sha == job.head_sha {
        return Ok((Scope::Whole, None));
    }
    if !git::has_commit(worktree, GitConfig::Isolated, &last.head_sha).await {
        ctx.log(&format!(
            "the last reviewed commit {} is gone (a force push?); reviewing the whole pull request",
            last.head_sha
        ))
        .await?;
        return Ok((Scope::Whole, None));
    }
    match git::diff_files(worktree, GitConfig::Isolated, &last.head_sha, &job.head_sha).await {
        Ok(files) => {
            ctx.log(&format!(
                "incremental review: {} file(s) changed since {}",
                files.len(),
                last.head_sha
            ))
            .await?;
            Ok((Scope::Since(last.head_sha), Some(files)))
        }
        Err(e) => {
            ctx.log(&format!("{e}; reviewing the whole pull request"))
                .await?;
            Ok((Scope::Whole, None))
        }
    }
}

async fn run_agent(
    run: ReviewRun<'_>,
    engine: Engine,
    diff: Arc<Diff>,
    system: String,
    user: String,
) -> Result<AgentReport, JobError> {
    let ReviewRun {
        ctx,
        work,
        scope,
        job,
        config,
        checkout,
        ..
    } = run;
    let root = WorkspaceRoot::new(checkout.path())
        .map_err(|e| JobError::permanent(format!("the worktree is unusable: {e}")))?;
    let findings = SharedFindings::default();
    let mut tools = ToolGroups::default();
    tools
        .add(
            INLINE_COMMENT_SERVER,
            Arc::new(CreateInlineComment::new(diff, Arc::clone(&findings))),
        )
        .add(COMMENT_SERVER, Arc::new(JobProgress::new(ctx.clone())))
        .add(
            CI_SERVER,
            Arc::new(GetCiStatus::new(scope.clone(), job.head_sha.clone())),
        );
    let model_name = engine.model_name();
    let job_run = JobRun {
        root,
        github: tools,
        system,
        instructions: user,
    };
    let run = work
        .start_agent(ctx, config, engine, job_run)
        .await
        .map_err(JobError::permanent)?;
    let outcome = run.outcome().await;
    Ok(AgentReport {
        reason: outcome.reason,
        error: outcome.error,
        summary: outcome.text,
        turns: outcome.turns,
        cost_usd: outcome.cost_usd,
        model: model_name,
        findings: findings_of(&findings),
    })
}
