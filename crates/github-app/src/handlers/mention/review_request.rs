//! "@kodiai review this": a mention that asks for a review gets one from the review flow (SPEC
//! §9 → §8) instead of an agent run. The rule ([`asks_for_review`]): after lowercasing, folding
//! whitespace, dropping a leading politeness (`please`, `can you`, `could you`, `kindly`…) and a
//! trailing one (`please`, `thanks`, punctuation), the whole request is one of a few review
//! phrases (`review`, `review this`, `review it`, `review this pr`, `review the pull request`,
//! `do a review`, `code review`…). Anything longer ("review the error handling in foo.rs and
//! say…") is a question for the agent.
//!
//! On a pull request the review job is built from the pull request as the API shows it now (head
//! sha, draft, author), with the action `requested`, and queued with a dedupe key of the mention
//! job, so that a re-run finds the same review job. On an issue the answer is that reviews are
//! for pull requests. Either way the tracking comment says what happened.

use kodiai_protocol::{JobSpec, MentionJob, ReviewJob};
use kodiai_store::NewJob;
use serde_json::{Value, json};

use super::{answer, render, tracking};
use crate::handlers::{GithubWork, github_error};
use kodiai_runtime::jobs::{JobContext, JobError};

/// The step that records the queued review (or the answer on an issue).
const DONE: &str = "review_requested";

/// The action of a review job a mention asked for (ingress makes the pull-request actions).
pub const REQUESTED_ACTION: &str = "requested";

/// Politeness around a request, taken off before it is compared.
const LEADING: &[&str] = &[
    "please ",
    "pls ",
    "kindly ",
    "can you ",
    "could you ",
    "would you ",
    "can you please ",
    "could you please ",
    "would you please ",
];
const TRAILING: &[&str] = &[" please", " pls", " thanks", " thank you", " for me"];

/// Requests that ask for a review, whole.
const PHRASES: &[&str] = &[
    "review",
    "review this",
    "review it",
    "review this pr",
    "review the pr",
    "review this pull request",
    "review the pull request",
    "review the changes",
    "review these changes",
    "review my changes",
    "do a review",
    "give this a review",
    "code review",
    "a review",
];

/// Whether the whole request asks for a review (see the module comment for the rule).
pub fn asks_for_review(request: &str) -> bool {
    let mut text = request
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    loop {
        let before = text.len();
        text = text
            .trim_end_matches(['.', '!', '?', ',', ':', ';', ' '])
            .trim_start_matches([',', ':', ' '])
            .to_owned();
        // Longest first, so that "can you please " goes before "can you ".
        if let Some(rest) = longest_prefix(&text) {
            text = rest;
        }
        if let Some(rest) = TRAILING.iter().find_map(|p| text.strip_suffix(p)) {
            text = rest.to_owned();
        }
        if text.len() == before {
            break;
        }
    }
    PHRASES.contains(&text.as_str())
}

fn longest_prefix(text: &str) -> Option<String> {
    LEADING
        .iter()
        .filter(|p| text.starts_with(*p))
        .max_by_key(|p| p.len())
        .map(|p| text[p.len()..].to_owned())
}

/// Queues the review `job` asked for (the gates passed), or says why there is none.
pub async fn request_review(
    ctx: &JobContext,
    work: &GithubWork,
    client: kodiai_github::client::InstallationClient,
    job: &MentionJob,
) -> Result<Value, JobError> {
    if let Some(done) = ctx.step(DONE).await? {
        return Ok(done);
    }
    let scope = work.scope(client, &job.repository, job.number)?;
    answer::react(ctx, &scope, job).await?;
    let tracking = tracking::open(ctx, &scope, job, &render::queuing_review()).await?;
    let base = json!({
        "delivery_id": job.delivery_id,
        "sender": job.sender,
        "tracking_comment": answer::tracking_id(&tracking),
    });
    if !job.is_pull_request {
        tracking
            .update(&render::review_needs_a_pull_request())
            .await
            .map_err(github_error)?;
        let result = merged(base, json!({"decision": "not_a_pull_request"}));
        ctx.record_step(DONE, result.clone()).await?;
        return Ok(result);
    }
    let pull = scope
        .client
        .get_pull(&scope.owner, &scope.repo, job.number)
        .await
        .map_err(github_error)?;
    if pull.state != "open" {
        tracking
            .update(&render::review_of_a_closed_pull_request(&pull.state))
            .await
            .map_err(github_error)?;
        let result = merged(
            base,
            json!({"decision": "pull_request_not_open", "state": pull.state}),
        );
        ctx.record_step(DONE, result.clone()).await?;
        return Ok(result);
    }
    let review = ReviewJob {
        delivery_id: job.delivery_id.clone(),
        installation_id: job.installation_id,
        repository: job.repository.clone(),
        pull_number: pull.number,
        action: REQUESTED_ACTION.to_owned(),
        head_sha: pull.head.sha.clone(),
        head_ref: pull.head.name.clone(),
        base_ref: pull.base.name.clone(),
        draft: pull.draft,
        author: pull
            .user
            .as_ref()
            .map(|u| u.login.clone())
            .unwrap_or_default(),
        sender: job.sender.clone(),
    };
    let mut new = NewJob::new(JobSpec::Review(review))
        .delivery(&job.delivery_id)
        .max_attempts(ctx.job().max_attempts)
        // The mention job's own id: a re-run of this mention finds the review it queued.
        .dedupe_key(format!("review-requested-by:{}", ctx.job().id));
    if let Some(id) = job.installation_id {
        new = new
            .installation(id)
            .concurrency_key(format!("installation:{id}"));
    }
    let enqueued = ctx.store().enqueue(&new, ctx.now()).await?;
    ctx.log(&format!(
        "queued review job {} of {}#{} at {}",
        enqueued.id, job.repository, pull.number, pull.head.sha
    ))
    .await?;
    tracking
        .update(&render::review_queued(&enqueued.id, &pull.head.sha))
        .await
        .map_err(github_error)?;
    let result = merged(
        base,
        json!({
            "decision": "review_queued",
            "review_job": enqueued.id,
            "head_sha": pull.head.sha,
        }),
    );
    ctx.record_step(DONE, result.clone()).await?;
    Ok(result)
}

fn merged(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_for_a_review_is_one_whole_and_not_a_question_about_reviewing() {
        for yes in [
            "review",
            "Review this",
            "  review   this PR ",
            "please review",
            "please review.",
            "Could you please review this pull request?",
            "can you review it, thanks!",
            "do a review please",
            "review the changes",
        ] {
            assert!(asks_for_review(yes), "{yes:?} asks for a review");
        }
        for no in [
            "review the error handling in src/lib.rs and tell me if it leaks",
            "why did the review fail?",
            "fix it",
            "reviewing is slow here, why?",
            "don't review this",
            "",
        ] {
            assert!(!asks_for_review(no), "{no:?} is not a review request");
        }
    }
}
