//! The `review` job: a pull request that was opened, reopened, marked ready or pushed to.

use kodiai_protocol::JobSpec;
use serde_json::{Value, json};

use crate::jobs::{JobContext, JobError};

/// Runs a review job. Today it reports what ingress decided from the payload (the action was
/// one that is reviewed, neither kodiai nor a disallowed bot caused it) and which pull request
/// at which head the review is for.
pub async fn run(ctx: JobContext) -> Result<Value, JobError> {
    let JobSpec::Review(job) = ctx.spec() else {
        return Err(JobError::permanent(
            "the review handler got another kind of job",
        ));
    };
    ctx.log(&format!(
        "review of {}#{} at {} ({})",
        job.repository, job.pull_number, job.head_sha, job.action
    ))
    .await?;
    Ok(json!({
        "decision": "review",
        "decided_by": "payload",
        "delivery_id": job.delivery_id,
        "repository": job.repository,
        "pull_number": job.pull_number,
        "head_sha": job.head_sha,
        "action": job.action,
        "draft": job.draft,
    }))
}
