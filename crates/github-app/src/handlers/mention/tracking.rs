//! The tracking comment of a mention: posted at once (a reply in the thread for a review
//! comment, else on the conversation), carrying `<!-- kodiai:mention:KEY -->`. A re-run finds
//! it through its job step, else through the marker, and keeps using it: one per mention.

use kodiai_protocol::{MentionJob, MentionSource};
use serde_json::{Value, json};

use crate::github_tools::{CommentPlace, GithubScope, TrackingComment};
use crate::handlers::github_error;
use kodiai_runtime::jobs::{JobContext, JobError};

const STEP: &str = "tracking_comment";

/// The hidden marker of the mention's tracking comment. The key is the triggering comment or
/// review (so a replayed delivery finds the same comment), or the delivery for an issue body.
pub fn marker(job: &MentionJob) -> String {
    let key = match job.comment_id {
        Some(id) => format!("{}-{id}", source_key(job.source)),
        None => format!("issue-{}-{}", job.number, job.delivery_id),
    };
    format!("<!-- kodiai:mention:{key} -->")
}

fn source_key(source: MentionSource) -> &'static str {
    match source {
        MentionSource::IssueComment => "comment",
        MentionSource::ReviewComment => "review-comment",
        MentionSource::Review => "review",
        MentionSource::Issue => "issue",
    }
}

fn place_json(place: CommentPlace) -> Value {
    match place {
        CommentPlace::Issue { comment_id } => json!({"place": "issue", "comment_id": comment_id}),
        CommentPlace::ReviewThread { comment_id } => {
            json!({"place": "review_thread", "comment_id": comment_id})
        }
    }
}

fn place_of(step: &Value) -> Option<CommentPlace> {
    let comment_id = step.get("comment_id")?.as_u64()?;
    match step.get("place")?.as_str()? {
        "issue" => Some(CommentPlace::Issue { comment_id }),
        "review_thread" => Some(CommentPlace::ReviewThread { comment_id }),
        _ => None,
    }
}

/// The mention's tracking comment: the one an earlier run made, or a new one saying `text`.
pub async fn open(
    ctx: &JobContext,
    scope: &GithubScope,
    job: &MentionJob,
    text: &str,
) -> Result<TrackingComment, JobError> {
    let marker = marker(job);
    let tracking = |place| TrackingComment {
        scope: scope.clone(),
        place,
        marker: marker.clone(),
    };
    if let Some(place) = ctx.step(STEP).await?.as_ref().and_then(place_of) {
        return Ok(tracking(place));
    }
    let (client, owner, repo) = (&scope.client, &scope.owner, &scope.repo);
    let thread = job
        .reply_to
        .filter(|_| job.source == MentionSource::ReviewComment);
    // A crash between posting and recording the step: the marker finds the comment.
    let found = if thread.is_some() {
        client
            .list_review_comments(owner, repo, job.number)
            .await
            .map_err(github_error)?
            .into_iter()
            .find(|c| c.body.contains(&marker))
            .map(|c| CommentPlace::ReviewThread { comment_id: c.id })
    } else {
        client
            .list_issue_comments(owner, repo, job.number)
            .await
            .map_err(github_error)?
            .into_iter()
            .find(|c| c.body.contains(&marker))
            .map(|c| CommentPlace::Issue { comment_id: c.id })
    };
    let place = match found {
        Some(place) => place,
        None => {
            let body = format!("{marker}\n{}", scope.gate(text));
            match thread {
                Some(root) => {
                    let reply = client
                        .reply_to_review_comment(owner, repo, job.number, root, &body)
                        .await
                        .map_err(github_error)?;
                    CommentPlace::ReviewThread {
                        comment_id: reply.id,
                    }
                }
                None => {
                    let comment = client
                        .create_issue_comment(owner, repo, job.number, &body)
                        .await
                        .map_err(github_error)?;
                    CommentPlace::Issue {
                        comment_id: comment.id,
                    }
                }
            }
        }
    };
    ctx.record_step(STEP, place_json(place)).await?;
    Ok(tracking(place))
}
