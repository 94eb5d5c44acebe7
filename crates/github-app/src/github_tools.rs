//! The GitHub tools the agent is given per job (SPEC §7), shared by the mention and review flows:
//! `update_progress` (the tracking comment's checklist), `post_comment`, `get_ci_status`,
//! `commit_and_push` (the write policy and a secret scan of what is staged, then a commit as
//! kodiai with the requester as co-author, pushed with the installation token) and
//! `create_pull_request` (from kodiai's branch, linking the issue it fixes), and the review
//! tools ([`review`]: `create_inline_comment`, a review's `update_progress`). Each implements
//! [`kodiai_agent::tools::Tool`]; the agent crate knows nothing of GitHub, so they live here.
//!
//! Everything a tool writes to GitHub passes [`GithubScope::gate`] first: kodiai's own handles
//! are neutralized and a body with a secret in it is replaced by a notice.
//!
//! A job collects its tools in a [`kodiai_runtime::engine::ToolGroups`], by the MCP server that offers them to the CLI
//! backends (SPEC §7: `github-comment`, `github-inline-comment`, `github-ci`, `github-files`);
//! the native loop gets them all as they are.

mod ci;
pub mod comments;
mod push;
pub mod review;

use std::sync::{Arc, Mutex};

use kodiai_github::client::InstallationClient;
use kodiai_github::sanitize::{Outgoing, gate_outgoing};

pub use ci::GetCiStatus;
pub use comments::{PostComment, UpdateProgress};
pub use push::{CommitAndPush, CreatePullRequest, PushTarget, WriteAccess};
pub use review::{CreateInlineComment, Finding, JobProgress, SharedFindings, findings_of};

pub use kodiai_runtime::engine::{
    CI_SERVER, COMMENT_SERVER, FILES_SERVER, INLINE_COMMENT_SERVER, OWN_SERVERS,
};

/// Where a job's tools act: one issue or pull request of one repository, as one installation.
#[derive(Debug, Clone)]
pub struct GithubScope {
    pub client: InstallationClient,
    pub owner: String,
    pub repo: String,
    /// The issue or pull request.
    pub number: u64,
    /// kodiai's own handles, without `@` (see `GithubWork`).
    pub own_handles: Vec<String>,
}

impl GithubScope {
    /// `body` as it may leave for GitHub: own handles neutralized; when it carries a secret,
    /// the notice that replaces it (the event is logged and counted, the secret never is).
    pub fn gate(&self, body: &str) -> String {
        let handles: Vec<&str> = self.own_handles.iter().map(String::as_str).collect();
        match gate_outgoing(body, &handles) {
            Outgoing::Clean(text) => text,
            Outgoing::Blocked { notice, kinds } => {
                let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                tracing::warn!(repository = %format!("{}/{}", self.owner, self.repo),
                    number = self.number, kinds = ?kinds, "an outgoing body carried a secret; withheld");
                metrics::counter!("kodiai_outgoing_withheld_total").increment(1);
                notice
            }
        }
    }

    /// Whether `body` would be withheld by [`GithubScope::gate`].
    pub fn carries_secret(&self, body: &str) -> bool {
        matches!(gate_outgoing(body, &[]), Outgoing::Blocked { .. })
    }
}

/// Where a tracking comment lives: in the conversation, or as a reply in a review thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentPlace {
    Issue { comment_id: u64 },
    ReviewThread { comment_id: u64 },
}

/// The comment a job keeps its progress and, at the end, its answer in. Every body carries the
/// job's hidden marker, so that a re-run finds the comment instead of posting another.
#[derive(Debug, Clone)]
pub struct TrackingComment {
    pub scope: GithubScope,
    pub place: CommentPlace,
    /// `<!-- kodiai:KIND:KEY -->`.
    pub marker: String,
}

impl TrackingComment {
    /// Replaces the comment's text with `text` (gated), under the marker.
    pub async fn update(&self, text: &str) -> Result<(), kodiai_github::client::Error> {
        let body = format!("{}\n{}", self.marker, self.scope.gate(text));
        let s = &self.scope;
        match self.place {
            CommentPlace::Issue { comment_id } => {
                s.client
                    .update_issue_comment(&s.owner, &s.repo, comment_id, &body)
                    .await?;
            }
            CommentPlace::ReviewThread { comment_id } => {
                s.client
                    .update_review_comment(&s.owner, &s.repo, comment_id, &body)
                    .await?;
            }
        }
        Ok(())
    }
}

/// What a job changed, as its tools did it: for the final comment and the job's result.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Changes {
    /// Commits pushed, oldest first.
    pub commits: Vec<String>,
    /// The branch they were pushed to.
    pub branch: Option<String>,
    /// The pull request opened, `(number, url)`.
    pub pull_request: Option<(u64, String)>,
    /// Extra comments posted.
    pub comments: Vec<String>,
}

/// [`Changes`] shared between a job and its tools.
pub type SharedChanges = Arc<Mutex<Changes>>;

/// A copy of the changes so far.
pub fn changes_of(shared: &SharedChanges) -> Changes {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn github_failure(what: &str, e: &kodiai_github::client::Error) -> kodiai_agent::tools::ToolError {
    if e.is_transient() {
        kodiai_agent::tools::ToolError::respond(format!("{what} failed for now ({e}); try again"))
    } else {
        kodiai_agent::tools::ToolError::respond(format!("{what} failed: {e}"))
    }
}
