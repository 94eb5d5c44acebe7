//! The `mention` job: someone called kodiai in a comment, a review or an issue.

use kodiai_protocol::JobSpec;
use serde_json::{Value, json};

use crate::jobs::{JobContext, JobError};

/// Runs a mention job. Today it reports what ingress decided from the payload (a mention with
/// a request, not an edit, not from kodiai itself or a disallowed bot) and what was asked where.
pub async fn run(ctx: JobContext) -> Result<Value, JobError> {
    let JobSpec::Mention(job) = ctx.spec() else {
        return Err(JobError::permanent(
            "the mention handler got another kind of job",
        ));
    };
    if job.request.trim().is_empty() {
        // Ingress never enqueues these; a hand-made job gets the same answer.
        return Ok(json!({"decision": "ignored", "reason": "nothing was asked"}));
    }
    ctx.log(&format!(
        "{} asked {} on {}#{}",
        job.sender, job.trigger, job.repository, job.number
    ))
    .await?;
    Ok(json!({
        "decision": "answer",
        "decided_by": "payload",
        "delivery_id": job.delivery_id,
        "repository": job.repository,
        "number": job.number,
        "source": job.source,
        "sender": job.sender,
        "trigger": job.trigger,
        "request": job.request,
        "reply_to": job.reply_to,
    }))
}
