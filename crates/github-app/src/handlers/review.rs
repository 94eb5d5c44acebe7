//! The `review` job: a pull request that was opened, reopened, marked ready or pushed to.
//! Ingress made the job from the payload alone (a reviewed action, neither kodiai nor a
//! disallowed bot caused it); here the repository's `.kodiai.yml` decides whether this pull
//! request is reviewed now (`review.enabled`, `review.on`, `skip_drafts`, `skip_authors`).
//! Then the review: [`pipeline`] (context, worktree, agent, one review, idempotence,
//! incremental), [`post`] (placing, de-duplicating and posting the findings, the markers),
//! [`failure`] (the one comment a failed review leaves, from [`ReviewHandler`]'s failure hook);
//! the diffs between commits are [`crate::context::git`]'s, also for `kodiai review`.

mod failure;
mod pipeline;
mod post;

use std::sync::Arc;

use futures::future::BoxFuture;
use kodiai_protocol::{JobFailure, JobSpec, ReviewJob};
use serde_json::{Value, json};

use super::{GithubWork, repository_config, split_repository};
use crate::repo_config::{RepoConfig, ReviewAction};
use kodiai_runtime::jobs::{HandlerFuture, JobContext, JobError, JobHandler};

/// The review job's handler: [`run`], and a comment on the pull request when a review fails
/// for good.
pub struct ReviewHandler {
    pub work: Arc<GithubWork>,
}

impl JobHandler for ReviewHandler {
    fn run(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin(run(ctx, Arc::clone(&self.work)))
    }

    fn on_failed(&self, ctx: JobContext, failure: JobFailure) -> BoxFuture<'static, ()> {
        let work = Arc::clone(&self.work);
        Box::pin(async move { failure::report(ctx, &work, failure).await })
    }
}

/// Runs a review job: the gate, then the review ([`pipeline`]).
pub async fn run(ctx: JobContext, github: Arc<GithubWork>) -> Result<Value, JobError> {
    let JobSpec::Review(job) = ctx.spec() else {
        return Err(JobError::permanent(
            "the review handler got another kind of job",
        ));
    };
    let client = github.installation(job.installation_id)?;
    let (owner, repo) = split_repository(&job.repository)?;
    let config = repository_config(&ctx, &client, owner, repo, job.pull_number).await?;
    if let Some(reason) = skip_reason(&config, job) {
        ctx.log(&format!(
            "not reviewing {}#{}: {reason}",
            job.repository, job.pull_number
        ))
        .await?;
        return Ok(json!({
            "decision": "skipped",
            "reason": reason,
            "delivery_id": job.delivery_id,
            "pull_number": job.pull_number,
        }));
    }
    ctx.log(&format!(
        "review of {}#{} at {} ({})",
        job.repository, job.pull_number, job.head_sha, job.action
    ))
    .await?;
    pipeline::review(&ctx, &github, client, job, &config).await
}

/// Why `.kodiai.yml` says not to review this pull request now, if it does.
fn skip_reason(config: &RepoConfig, job: &ReviewJob) -> Option<String> {
    let review = &config.review;
    if !review.enabled {
        return Some("reviews are turned off in .kodiai.yml".into());
    }
    // Someone allowed to ask for it asked (`@kodiai review this`): review.on, skip_drafts and
    // skip_authors say which pull requests are reviewed unasked, not which may be.
    if job.action == super::mention::REQUESTED_ACTION {
        return None;
    }
    let action = serde_json::from_value::<ReviewAction>(Value::String(job.action.clone())).ok();
    if !action.is_some_and(|a| review.on.contains(&a)) {
        return Some(format!(
            "`{}` is not in review.on of .kodiai.yml",
            job.action
        ));
    }
    if job.draft && review.skip_drafts {
        return Some("the pull request is a draft (review.skip_drafts)".into());
    }
    if !review.wants_author(&job.author) {
        return Some(format!(
            "pull requests by {} are skipped (review.skip_authors)",
            job.author
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(action: &str, draft: bool, author: &str) -> ReviewJob {
        ReviewJob {
            delivery_id: "d1".into(),
            installation_id: Some(1),
            repository: "o/r".into(),
            pull_number: 2,
            action: action.into(),
            head_sha: "a".repeat(40),
            head_ref: "feature".into(),
            base_ref: "main".into(),
            draft,
            author: author.into(),
            sender: "asker".into(),
        }
    }

    #[test]
    fn an_asked_for_review_passes_the_gates_of_unasked_ones_but_not_a_turned_off_review() {
        let mut config = RepoConfig::default();
        config.review.skip_drafts = true;
        config.review.skip_authors = vec!["dependabot[bot]".into()];
        for (action, draft, author) in [
            ("requested", true, "someone"),
            ("requested", false, "dependabot[bot]"),
        ] {
            assert_eq!(skip_reason(&config, &job(action, draft, author)), None);
        }
        assert!(skip_reason(&config, &job("opened", true, "someone")).is_some());
        assert!(skip_reason(&config, &job("opened", false, "dependabot[bot]")).is_some());
        assert!(skip_reason(&config, &job("labeled", false, "someone")).is_some());
        config.review.enabled = false;
        assert!(skip_reason(&config, &job("requested", false, "someone")).is_some());
    }
}
