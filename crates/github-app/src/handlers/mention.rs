//! The `mention` job: someone called kodiai in a comment, a review or an issue. Ingress made
//! the job from the payload alone (a mention with a request, not an edit, not from kodiai itself
//! or a disallowed bot); here come the checks that need GitHub, before anything else is done:
//! the repository's `.kodiai.yml` (mentions on, bots, allowed users) and the sender's permission
//! (write, maintain or admin, or listed in `permissions.allowed_users`). Then the work:
//! [`answer`] (👀, the tracking comment, the agent), [`context`] (what the agent is told, with
//! the TOCTOU cut-off), [`tracking`] (the one tracking comment and its marker), [`render`] (its
//! texts); or, when the request asks for a review, [`review_request`] (a review job queued).

mod answer;
mod context;
mod render;
mod review_request;

pub use review_request::REQUESTED_ACTION;
mod tracking;

use std::sync::Arc;

use kodiai_github::client::InstallationClient;
use kodiai_github::permissions::TriggerDecision;
use kodiai_protocol::{JobSpec, MentionJob};
use serde_json::{Value, json};

use super::{GithubWork, github_error, repository_config, split_repository};
use kodiai_runtime::jobs::{JobContext, JobError};

/// The hidden marker of kodiai's reply to a caller it refused, one per thread and caller.
fn refusal_marker(login: &str) -> String {
    format!("<!-- kodiai:refused:{} -->", login.to_lowercase())
}

/// Runs a mention job: the gate, then the answer ([`answer`]).
pub async fn run(ctx: JobContext, github: Arc<GithubWork>) -> Result<Value, JobError> {
    let JobSpec::Mention(job) = ctx.spec() else {
        return Err(JobError::permanent(
            "the mention handler got another kind of job",
        ));
    };
    if job.request.trim().is_empty() {
        // Ingress never enqueues these; a hand-made job gets the same answer.
        return Ok(ignored(job, "nothing was asked"));
    }
    let client = github.installation(job.installation_id)?;
    let (owner, repo) = split_repository(&job.repository)?;
    let config = repository_config(&ctx, &client, owner, repo, job.number).await?;
    if !config.mention.enabled {
        return Ok(ignored(job, "mentions are turned off in .kodiai.yml"));
    }
    if job.sender_is_bot && !config.permissions.allow_bots {
        return Ok(ignored(
            job,
            "the sender is a bot and .kodiai.yml does not allow bots",
        ));
    }
    let decision = client
        .may_trigger(owner, repo, &job.sender, &config.permissions.allowed_users)
        .await
        .map_err(github_error)?;
    let permission = match decision {
        TriggerDecision::Refused { reason, .. } => {
            ctx.log(&format!("refused: {reason}")).await?;
            let replied = if config.permissions.reply_when_refused {
                reply_to_refused(&ctx, &client, job, owner, repo).await?
            } else {
                false
            };
            return Ok(json!({
                "decision": "refused",
                "reason": reason,
                "replied": replied,
                "delivery_id": job.delivery_id,
                "sender": job.sender,
            }));
        }
        TriggerDecision::AllowedUser => "allowed_users".to_owned(),
        TriggerDecision::Permitted(permission) => permission.as_str().to_owned(),
    };
    ctx.log(&format!(
        "{} ({permission}) asked {} on {}#{}",
        job.sender, job.trigger, job.repository, job.number
    ))
    .await?;
    let mut result = if review_request::asks_for_review(&job.request) {
        review_request::request_review(&ctx, &github, client, job).await?
    } else {
        answer::answer(&ctx, &github, client, job, &config).await?
    };
    if let Some(object) = result.as_object_mut() {
        object.insert("permission".into(), json!(permission));
    }
    Ok(result)
}

fn ignored(job: &MentionJob, reason: &str) -> Value {
    json!({
        "decision": "ignored",
        "reason": reason,
        "delivery_id": job.delivery_id,
        "sender": job.sender,
    })
}

/// One polite reply per thread and refused caller (SPEC §2): none when kodiai already replied
/// to this caller on this thread, found through the hidden marker. Says whether it posted.
async fn reply_to_refused(
    ctx: &JobContext,
    client: &InstallationClient,
    job: &MentionJob,
    owner: &str,
    repo: &str,
) -> Result<bool, JobError> {
    if ctx.step("refusal_reply").await?.is_some() {
        return Ok(false);
    }
    let marker = refusal_marker(&job.sender);
    let already = client
        .list_issue_comments(owner, repo, job.number)
        .await
        .map_err(github_error)?
        .iter()
        .any(|c| c.body.contains(&marker));
    if already {
        return Ok(false);
    }
    // The login is written as code so that the reply does not notify or trigger anyone.
    let body = format!(
        "{marker}\nSorry, `{}`: kodiai acts only for people with write access to this \
         repository (or listed in `permissions.allowed_users` of `.kodiai.yml`).",
        job.sender
    );
    let comment = client
        .create_issue_comment(owner, repo, job.number, &body)
        .await
        .map_err(github_error)?;
    ctx.record_step("refusal_reply", json!({"comment_id": comment.id}))
        .await?;
    Ok(true)
}
