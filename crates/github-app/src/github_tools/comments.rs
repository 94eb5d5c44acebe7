//! `update_progress` (the tracking comment's checklist) and `post_comment` (one more comment on
//! the issue or pull request).

use std::sync::Arc;

use kodiai_agent::tools::{Tool, ToolContext, ToolOutput, ToolResult};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{GithubScope, SharedChanges, TrackingComment, github_failure};

/// The heading of a tracking comment while the work goes on.
pub const WORKING_HEADING: &str = "**kodiai is working on it…**";

/// Rewrites the tracking comment with the agent's checklist.
pub struct UpdateProgress {
    tracking: Arc<TrackingComment>,
}

impl UpdateProgress {
    pub fn new(tracking: Arc<TrackingComment>) -> Self {
        Self { tracking }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct UpdateProgressArgs {
    /// The progress as a markdown checklist (`- [x] done`, `- [ ] next`), replacing the last one.
    pub checklist: String,
}

impl Tool for UpdateProgress {
    type Args = UpdateProgressArgs;

    fn name(&self) -> &str {
        "update_progress"
    }

    fn description(&self) -> String {
        "Show your progress to the people waiting: replaces the checklist in kodiai's tracking \
         comment. Call it when you start a step or finish one. Your final answer goes in your \
         last message, not here."
            .into()
    }

    fn writes(&self) -> bool {
        true
    }

    async fn call(&self, args: UpdateProgressArgs, _ctx: &ToolContext) -> ToolResult {
        if args.checklist.trim().is_empty() {
            return Ok(ToolOutput::failure("the checklist is empty"));
        }
        let text = format!("{WORKING_HEADING}\n\n{}", args.checklist.trim());
        self.tracking
            .update(&text)
            .await
            .map_err(|e| github_failure("updating the progress comment", &e))?;
        Ok(ToolOutput::text("progress updated"))
    }
}

/// Posts a new comment on the issue or pull request.
pub struct PostComment {
    scope: GithubScope,
    changes: SharedChanges,
}

impl PostComment {
    pub fn new(scope: GithubScope, changes: SharedChanges) -> Self {
        Self { scope, changes }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct PostCommentArgs {
    /// The comment, in GitHub markdown.
    pub body: String,
}

impl Tool for PostComment {
    type Args = PostCommentArgs;

    fn name(&self) -> &str {
        "post_comment"
    }

    fn description(&self) -> String {
        "Post one more comment on the issue or pull request. Rarely needed: your final answer \
         is posted for you in the tracking comment."
            .into()
    }

    fn writes(&self) -> bool {
        true
    }

    async fn call(&self, args: PostCommentArgs, _ctx: &ToolContext) -> ToolResult {
        if args.body.trim().is_empty() {
            return Ok(ToolOutput::failure("the comment is empty"));
        }
        let s = &self.scope;
        let comment = s
            .client
            .create_issue_comment(&s.owner, &s.repo, s.number, &s.gate(&args.body))
            .await
            .map_err(|e| github_failure("posting the comment", &e))?;
        self.changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .comments
            .push(comment.html_url.clone());
        Ok(ToolOutput::text(format!("posted {}", comment.html_url)))
    }
}
