//! `get_ci_status`: the check runs and commit statuses of a commit (default: the pull request's
//! head), summarized for the model.

use std::fmt::Write as _;

use kodiai_agent::tools::{Tool, ToolContext, ToolOutput, ToolResult};
use kodiai_github::sanitize::sanitize_untrusted;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{GithubScope, github_failure};

pub struct GetCiStatus {
    scope: GithubScope,
    /// The commit asked about when the model names none.
    default_ref: String,
}

impl GetCiStatus {
    pub fn new(scope: GithubScope, default_ref: String) -> Self {
        Self { scope, default_ref }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetCiStatusArgs {
    /// A commit sha or branch; default: the pull request's head (or the default branch).
    #[serde(default)]
    pub git_ref: Option<String>,
}

impl Tool for GetCiStatus {
    type Args = GetCiStatusArgs;

    fn name(&self) -> &str {
        "get_ci_status"
    }

    fn description(&self) -> String {
        "The CI state of a commit: each check run and commit status with its conclusion.".into()
    }

    fn writes(&self) -> bool {
        false
    }

    async fn call(&self, args: GetCiStatusArgs, _ctx: &ToolContext) -> ToolResult {
        let git_ref = args
            .git_ref
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| self.default_ref.clone());
        let s = &self.scope;
        let runs = s
            .client
            .list_check_runs(&s.owner, &s.repo, &git_ref)
            .await
            .map_err(|e| github_failure("reading the check runs", &e))?;
        let status = s
            .client
            .combined_status(&s.owner, &s.repo, &git_ref)
            .await
            .map_err(|e| github_failure("reading the commit statuses", &e))?;
        let mut out = format!("CI of {git_ref}: combined status {}\n", status.state);
        for run in &runs.check_runs {
            let _ = writeln!(
                out,
                "- check {}: {} {}",
                sanitize_untrusted(&run.name),
                run.status,
                run.conclusion.as_deref().unwrap_or("")
            );
        }
        for st in &status.statuses {
            let _ = writeln!(
                out,
                "- status {}: {} {}",
                sanitize_untrusted(&st.context),
                st.state,
                sanitize_untrusted(st.description.as_deref().unwrap_or(""))
            );
        }
        if runs.check_runs.is_empty() && status.statuses.is_empty() {
            out.push_str("(no checks or statuses)\n");
        }
        Ok(ToolOutput::text(out))
    }
}
