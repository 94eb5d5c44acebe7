//! The comment a review job leaves when it fails for good (SPEC §4: never silence): what
//! happened, in the failure's words (never a stack trace: a panic's message says only that it
//! was one), and what was done. One per pull request and head, found again by its marker, so a
//! re-run that fails too updates it instead of adding another.

use kodiai_protocol::{FailureReason, JobFailure, JobSpec};
use serde_json::json;

use super::pipeline::POSTED;
use super::post::failure_marker;
use crate::github_tools::GithubScope;
use crate::handlers::{GithubWork, split_repository};
use kodiai_runtime::jobs::JobContext;

const STEP: &str = "failure_comment";

/// Posts (or updates) the failure comment of the review job in `ctx`. Errors are logged: the
/// job has failed already.
pub(crate) async fn report(ctx: JobContext, work: &GithubWork, failure: JobFailure) {
    if let Err(e) = try_report(&ctx, work, &failure).await {
        tracing::warn!(error = %e, "cannot post the review's failure comment");
    }
}

async fn try_report(
    ctx: &JobContext,
    work: &GithubWork,
    failure: &JobFailure,
) -> anyhow::Result<()> {
    let JobSpec::Review(job) = ctx.spec() else {
        return Ok(());
    };
    let (owner, repo) = split_repository(&job.repository).map_err(anyhow::Error::msg)?;
    let client = work
        .installation(job.installation_id)
        .map_err(anyhow::Error::msg)?;
    let scope = GithubScope {
        client,
        owner: owner.to_owned(),
        repo: repo.to_owned(),
        number: job.pull_number,
        own_handles: work.own_handles().to_vec(),
    };
    let posted = ctx.step(POSTED).await.map_err(anyhow::Error::msg)?;
    let what = match failure.reason {
        FailureReason::Timeout => format!("it took too long: {}", failure.message),
        FailureReason::Panic => "kodiai hit an internal error (the server log has it under this \
                                  job's id)"
            .to_owned(),
        _ => failure.message.clone(),
    };
    let done = match posted.as_ref().and_then(|p| p.get("review_id")) {
        Some(id) => format!("The review it had posted (id {id}) stays as it is."),
        None => "No review was posted.".to_owned(),
    };
    let marker = failure_marker(&job.repository, job.pull_number, &job.head_sha);
    let text = format!(
        "**kodiai could not finish reviewing `{}`.**\n\nWhat happened: {what}.\n\n{done} \
         Pushing a new commit starts a new review; an operator can also retry job `{}`.",
        &job.head_sha.get(..12).unwrap_or(&job.head_sha),
        ctx.job().id
    );
    let body = format!("{marker}\n{}", scope.gate(&text));
    let existing = scope
        .client
        .list_issue_comments(owner, repo, job.pull_number)
        .await?
        .into_iter()
        .find(|c| c.body.contains(&marker));
    let comment = match existing {
        Some(comment) if comment.body == body => comment,
        Some(comment) => {
            scope
                .client
                .update_issue_comment(owner, repo, comment.id, &body)
                .await?
        }
        None => {
            scope
                .client
                .create_issue_comment(owner, repo, job.pull_number, &body)
                .await?
        }
    };
    ctx.record_step(STEP, json!({"comment_id": comment.id}))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}
