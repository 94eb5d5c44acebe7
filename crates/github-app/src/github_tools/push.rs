//! `commit_and_push` and `create_pull_request`: the only way the agent's changes leave the
//! workspace. A commit is made only when every staged path passes the repository's write policy
//! (`write.enabled`, `write.denyPaths`, `write.allowPaths`) and the lines it adds carry nothing
//! that looks like a secret; it is kodiai's, with the requester as `Co-authored-by`, and pushed
//! (never forced) with the installation token to the branch the job decided on.

use std::sync::Arc;

use kodiai_agent::tools::{Tool, ToolContext, ToolError, ToolOutput, ToolResult};
use kodiai_agent::workspace::{Checkout, Identity, Remote, WorkspaceError};
use kodiai_github::sanitize::find_secrets;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{GithubScope, SharedChanges, github_failure};
use crate::repo_config::WritePolicy;

/// Where a job's commits go.
#[derive(Debug, Clone)]
pub struct PushTarget {
    /// The branch pushed to.
    pub branch: String,
    /// A fork's remote (a fork pull request that allows maintainer edits); `None`: the
    /// repository itself.
    pub remote: Option<Remote>,
    /// When the branch is kodiai's own: the branch a pull request from it goes into.
    pub pull_request_base: Option<String>,
}

/// What the write tools share: the worktree, the policy, the target, who asked.
pub struct WriteAccess {
    pub scope: GithubScope,
    pub checkout: Arc<Checkout>,
    pub policy: WritePolicy,
    pub target: PushTarget,
    /// The requester, as a commit trailer.
    pub co_author: Identity,
    /// The issue a pull request closes (the work started from an issue).
    pub closes_issue: Option<u64>,
    /// The pull request a new one builds on (kodiai could not push to its fork's branch).
    pub builds_on_pull: Option<u64>,
    pub changes: SharedChanges,
}

impl WriteAccess {
    fn refuse(&self, message: String) -> ToolResult {
        Ok(ToolOutput::failure(message))
    }
}

/// The lines a diff adds (without their `+`).
fn added_lines(diff: &str) -> String {
    diff.lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
        .map(|l| &l[1..])
        .collect::<Vec<_>>()
        .join("\n")
}

fn workspace_failure(e: WorkspaceError) -> ToolError {
    match e {
        WorkspaceError::PushRejected { .. } | WorkspaceError::InvalidInput(_) => {
            ToolError::respond(e.to_string())
        }
        other => ToolError::respond(format!("git failed: {other}")),
    }
}

pub struct CommitAndPush {
    access: Arc<WriteAccess>,
}

impl CommitAndPush {
    pub fn new(access: Arc<WriteAccess>) -> Self {
        Self { access }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CommitAndPushArgs {
    /// The commit message: a short summary line, a blank line, then why.
    pub message: String,
}

impl Tool for CommitAndPush {
    type Args = CommitAndPushArgs;

    fn name(&self) -> &str {
        "commit_and_push"
    }

    fn description(&self) -> String {
        format!(
            "Commit every change in the workspace and push it to `{}`. Paths the repository's \
             write policy denies and anything that looks like a credential are refused.",
            self.access.target.branch
        )
    }

    fn writes(&self) -> bool {
        true
    }

    async fn call(&self, args: CommitAndPushArgs, _ctx: &ToolContext) -> ToolResult {
        let a = &self.access;
        if !a.policy.enabled {
            return a.refuse(
                "write mode is off for this repository (`write.enabled` in .kodiai.yml): \
                 describe the change instead of committing it"
                    .into(),
            );
        }
        if args.message.trim().is_empty() {
            return a.refuse("the commit message is empty".into());
        }
        if a.scope.carries_secret(&args.message) {
            return a.refuse("the commit message looks like it contains a credential".into());
        }
        let staged = a.checkout.stage_all().await.map_err(workspace_failure)?;
        if staged.paths.is_empty() {
            return a.refuse("there is nothing to commit".into());
        }
        let refused: Vec<String> = staged
            .paths
            .iter()
            .filter_map(|p| a.policy.check(p).err().map(|e| e.to_string()))
            .collect();
        if !refused.is_empty() {
            a.checkout.unstage_all().await.map_err(workspace_failure)?;
            return a.refuse(format!(
                "nothing was committed; the write policy refuses: {}. Undo those changes and \
                 try again.",
                refused.join("; ")
            ));
        }
        let secrets = find_secrets(&added_lines(&staged.diff));
        if !secrets.is_empty() {
            a.checkout.unstage_all().await.map_err(workspace_failure)?;
            let mut kinds: Vec<&str> = secrets.iter().map(|f| f.kind.as_str()).collect();
            kinds.dedup();
            return a.refuse(format!(
                "nothing was committed: the changes add what looks like a credential ({}). \
                 Remove it and try again.",
                kinds.join(", ")
            ));
        }
        let message = a.scope.gate(&args.message);
        let Some(commit) = a
            .checkout
            .commit_staged(&message, std::slice::from_ref(&a.co_author))
            .await
            .map_err(workspace_failure)?
        else {
            return a.refuse("there is nothing to commit".into());
        };
        let report = a
            .checkout
            .push(&a.target.branch, a.target.remote.as_ref())
            .await
            .map_err(workspace_failure)?;
        {
            let mut changes = a
                .changes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for c in &report.commits {
                if !changes.commits.contains(c) {
                    changes.commits.push(c.clone());
                }
            }
            changes.branch = Some(report.branch.clone());
        }
        let short: String = commit.chars().take(12).collect();
        Ok(ToolOutput::text(format!(
            "committed {short} and pushed {} commit(s) to {}",
            report.commits.len(),
            report.branch
        )))
    }
}

pub struct CreatePullRequest {
    access: Arc<WriteAccess>,
}

impl CreatePullRequest {
    pub fn new(access: Arc<WriteAccess>) -> Self {
        Self { access }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreatePullRequestArgs {
    /// The pull request's title.
    pub title: String,
    /// What changed and why, in markdown.
    pub body: String,
}

impl Tool for CreatePullRequest {
    type Args = CreatePullRequestArgs;

    fn name(&self) -> &str {
        "create_pull_request"
    }

    fn description(&self) -> String {
        "Open a pull request from the branch commit_and_push pushed to. Call it once, after \
         the last push."
            .into()
    }

    fn writes(&self) -> bool {
        true
    }

    async fn call(&self, args: CreatePullRequestArgs, _ctx: &ToolContext) -> ToolResult {
        let a = &self.access;
        let Some(base) = &a.target.pull_request_base else {
            return a.refuse(format!(
                "the commits go straight to `{}`; no pull request is needed",
                a.target.branch
            ));
        };
        let changes = super::changes_of(&a.changes);
        if let Some((number, url)) = &changes.pull_request {
            return Ok(ToolOutput::text(format!(
                "pull request #{number} is already open: {url}"
            )));
        }
        if changes.commits.is_empty() {
            return a.refuse("push a commit with commit_and_push first".into());
        }
        if args.title.trim().is_empty() {
            return a.refuse("the title is empty".into());
        }
        let mut body = args.body.trim().to_owned();
        if let Some(pull) = a.builds_on_pull {
            let link = format!("#{pull}");
            if !body.contains(&link) {
                body = format!(
                    "{body}\n\nBuilds on {link}: its branch is in a fork that kodiai may not push to."
                );
            }
        }
        if let Some(issue) = a.closes_issue {
            let link = format!("Closes #{issue}");
            if !body.contains(&link) {
                body = format!("{body}\n\n{link}");
            }
        }
        let s = &a.scope;
        let pull = s
            .client
            .create_pull_request(
                &s.owner,
                &s.repo,
                &s.gate(args.title.trim()),
                &a.target.branch,
                base,
                &s.gate(&body),
            )
            .await
            .map_err(|e| github_failure("opening the pull request", &e))?;
        a.changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pull_request = Some((pull.number, pull.html_url.clone()));
        Ok(ToolOutput::text(format!(
            "opened pull request #{}: {}",
            pull.number, pull.html_url
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_added_lines_are_scanned() {
        let diff = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old secret\n+new line\n context\n";
        assert_eq!(added_lines(diff), "new line");
    }
}
