//! The job handlers of the GitHub work: [`review`] (a pull request to review) and [`mention`]
//! (a mention to answer). Ingress decided from the payload alone (fast, before the 202); these
//! start with the slow checks it could not make: the repository's `.kodiai.yml` from the default
//! branch and, for mentions, the sender's permission. The work itself (the review, the answer)
//! joins them with the review and mention flows.

pub mod mention;
pub mod review;

use std::sync::Arc;

use kodiai_github::client::{GithubClient, InstallationClient};
use kodiai_github::contents::RepoFile;
use kodiai_protocol::JobKind;
use serde_json::json;

use crate::config::Config;
use crate::github::{GithubSetupError, build_client};
use crate::jobs::{Handlers, JobContext, JobError};
use crate::repo_config::{self, RepoConfig};

/// What the GitHub handlers share: the process's one GitHub client, if one is configured.
pub struct GithubWork {
    client: Option<GithubClient>,
}

impl GithubWork {
    pub fn new(client: Option<GithubClient>) -> Self {
        Self { client }
    }

    /// The client for a job's installation; a job that needs GitHub fails at once (and says
    /// why) when the server has neither an App nor a token configured.
    fn installation(&self, installation_id: Option<i64>) -> Result<InstallationClient, JobError> {
        let client = self.client.as_ref().ok_or_else(|| {
            JobError::permanent(
                "GitHub is not configured: set GITHUB_APP_ID and GITHUB_PRIVATE_KEY, or GITHUB_TOKEN",
            )
        })?;
        Ok(client.installation(installation_id.and_then(|id| u64::try_from(id).ok())))
    }
}

impl Handlers {
    /// kodiai's handlers for this configuration: [`Handlers::builtin`] plus the GitHub work,
    /// with the GitHub client the configuration describes.
    pub fn for_config(config: &Config) -> Result<Self, GithubSetupError> {
        let work = Arc::new(GithubWork::new(build_client(&config.github)?));
        Ok(Self::with_github(work))
    }

    /// [`Handlers::builtin`] plus the review and mention handlers over `work`.
    pub fn with_github(work: Arc<GithubWork>) -> Self {
        let for_mentions = Arc::clone(&work);
        Self::builtin()
            .with(JobKind::Review, move |ctx: JobContext| {
                review::run(ctx, Arc::clone(&work))
            })
            .with(JobKind::Mention, move |ctx: JobContext| {
                mention::run(ctx, Arc::clone(&for_mentions))
            })
    }
}

/// A GitHub failure as the queue sees it: rate limits, 5xx and transport errors are worth a
/// retry; anything else (404, 403, a bad answer) is not.
fn github_error(error: kodiai_github::client::Error) -> JobError {
    if error.is_transient() {
        JobError::transient(error.to_string())
    } else {
        JobError::permanent(error.to_string())
    }
}

/// `owner/name` as its two parts.
fn split_repository(full_name: &str) -> Result<(&str, &str), JobError> {
    full_name
        .split_once('/')
        .filter(|(owner, name)| !owner.is_empty() && !name.is_empty() && !name.contains('/'))
        .ok_or_else(|| JobError::permanent(format!("not an owner/name repository: {full_name:?}")))
}

/// The repository's `.kodiai.yml` from its default branch (SPEC §3): the defaults when it is
/// missing; the defaults and one comment on `number` (created once, then kept up to date through
/// its hidden marker) when it is invalid or unreadable.
async fn repository_config(
    ctx: &JobContext,
    client: &InstallationClient,
    owner: &str,
    repo: &str,
    number: u64,
) -> Result<RepoConfig, JobError> {
    let text = match client
        .fetch_repo_config(owner, repo)
        .await
        .map_err(github_error)?
    {
        RepoFile::Missing => return Ok(RepoConfig::default()),
        RepoFile::Found { text, .. } => text,
        RepoFile::Unreadable { reason, .. } => {
            let body = format!(
                "{}\nkodiai could not read `.kodiai.yml` on the default branch ({reason}), so it \
                 works with the default settings.",
                repo_config::COMMENT_MARKER
            );
            post_config_comment(ctx, client, owner, repo, number, &body).await?;
            return Ok(RepoConfig::default());
        }
    };
    let parsed = repo_config::parse(&text);
    if parsed.is_invalid() {
        // Only now is the branch's name worth a call: the comment names it.
        let branch = client
            .get_repository(owner, repo)
            .await
            .map_err(github_error)?
            .default_branch;
        if let Some(body) = repo_config::render_comment(&parsed, &branch) {
            post_config_comment(ctx, client, owner, repo, number, &body).await?;
        }
    } else {
        // A usable file's warnings (unknown keys) go to the job's log, not to the thread.
        for warning in &parsed.diagnostics {
            ctx.log(&format!(".kodiai.yml: {warning}")).await?;
        }
    }
    Ok(parsed.config)
}

/// Posts the configuration-error comment on the thread, or updates the one kodiai posted there
/// before (found by its marker), so that the thread holds one such comment however many events
/// come.
async fn post_config_comment(
    ctx: &JobContext,
    client: &InstallationClient,
    owner: &str,
    repo: &str,
    number: u64,
    body: &str,
) -> Result<(), JobError> {
    if ctx.step("config_comment").await?.is_some() {
        return Ok(());
    }
    let existing = client
        .list_issue_comments(owner, repo, number)
        .await
        .map_err(github_error)?
        .into_iter()
        .find(|c| c.body.contains(repo_config::COMMENT_MARKER));
    let comment = match existing {
        Some(comment) if comment.body == body => comment,
        Some(comment) => client
            .update_issue_comment(owner, repo, comment.id, body)
            .await
            .map_err(github_error)?,
        None => client
            .create_issue_comment(owner, repo, number, body)
            .await
            .map_err(github_error)?,
    };
    ctx.record_step("config_comment", json!({"comment_id": comment.id}))
        .await
}
