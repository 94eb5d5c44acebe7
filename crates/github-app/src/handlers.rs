//! The job handlers of the GitHub work: [`review`] (a pull request to review) and [`mention`]
//! (a mention to answer). Ingress decided from the payload alone (fast, before the 202); these
//! start with the slow checks it could not make: the repository's `.kodiai.yml` from the default
//! branch and, for mentions, the sender's permission. The work itself (the review, the answer)
//! joins them with the review and mention flows. [`GithubWork`] is what they share: the client,
//! the workspaces, the model.

pub mod mention;
pub mod review;

use std::sync::Arc;

use anyhow::Context as _;
use kodiai_agent::backends::RelayCommand;
use kodiai_agent::tools::WorkspaceRoot;
use kodiai_agent::workspace::Workspaces;
use kodiai_github::client::{GithubClient, InstallationClient};
use kodiai_github::contents::RepoFile;
use kodiai_llm::CallScope;
use kodiai_protocol::JobKind;
use kodiai_runtime::config::Config;
use kodiai_runtime::engine::{
    self, AgentSpec, Engine, Engines, ModelChoice, RunningAgent, ToolGroups,
};
use kodiai_runtime::jobs::{Clock, Handlers, JobContext, JobError};
use kodiai_store::Store;
use serde_json::json;

use crate::client::build_client;
use crate::github_tools::GithubScope;
use crate::repo_config::{self, RepoConfig};

/// What the GitHub handlers share: the process's one GitHub client (if one is configured), the
/// git workspaces jobs check out into, the engines the agent runs on, and kodiai's own handles.
pub struct GithubWork {
    client: Option<GithubClient>,
    /// `None` in [`GithubWork::new`] (gate-only handlers, for tests of the gates).
    workspaces: Option<Workspaces>,
    /// The configured backend and model, or why there is none (a missing key): a job that needs
    /// the model says so in its tracking comment. A CLI reaches a job's GitHub tools through
    /// `kodiai mcp github-*` relays.
    engines: Engines,
    /// The handles kodiai answers to and writes as (without `@`): neutralized in what it
    /// writes, so that it never triggers itself.
    own_handles: Vec<String>,
}

impl GithubWork {
    /// Only the client: the gates run, the work after them fails for want of a workspace.
    pub fn new(client: Option<GithubClient>) -> Self {
        Self {
            client,
            workspaces: None,
            engines: Engines::unavailable("no model is configured for this worker"),
            own_handles: Vec::new(),
        }
    }

    /// Everything the jobs need, from the configuration: the client, the workspaces under the
    /// data folder, the engines (the model's calls recorded in `store` at `clock`'s time).
    pub async fn for_config(config: &Config, store: &Store, clock: &Clock) -> anyhow::Result<Self> {
        let client = build_client(&config.github)?.map(|c| {
            c.with_own_handles(crate::client::own_handles(&config.github, &config.mentions))
        });
        let workspaces = Workspaces::open(config.workspaces.settings(&config.data_dir))
            .await
            .context("opening the workspaces folder")?;
        let recorder = Arc::new(kodiai_runtime::llm::StoreRecorder {
            store: store.clone(),
            clock: clock.clone(),
        });
        let on_cli = config
            .agent
            .backend_config(config.agent.backend, &config.llm)
            .cli()
            .is_some();
        let engines = match on_cli.then(|| relay(config)).transpose() {
            Ok(relay) => Engines::new(config, config.agent.backend, recorder, relay),
            Err(why) => Engines::unavailable(why),
        };
        if let Some(reason) = engines.unavailable_reason() {
            tracing::warn!(%reason, "no model for mentions and reviews");
        }
        let mut own_handles: Vec<String> = std::iter::once(config.mentions.trigger.as_str())
            .chain(config.mentions.aliases.iter().map(String::as_str))
            .map(|h| h.trim_start_matches('@').to_owned())
            .chain(config.github.own_logins())
            .chain(config.github.app_slug.iter().cloned())
            .filter(|h| !h.is_empty())
            .collect();
        own_handles.sort();
        own_handles.dedup();
        Ok(Self {
            client,
            workspaces: Some(workspaces),
            engines,
            own_handles,
        })
    }

    /// The client for a job's installation; a job that needs GitHub fails at once (and says
    /// why) when the server has neither an App nor a token configured.
    pub(crate) fn installation(
        &self,
        installation_id: Option<i64>,
    ) -> Result<InstallationClient, JobError> {
        let client = self.client.as_ref().ok_or_else(|| {
            JobError::permanent(
                "GitHub is not configured: set GITHUB_APP_ID and GITHUB_PRIVATE_KEY, or GITHUB_TOKEN",
            )
        })?;
        Ok(client.installation(installation_id.and_then(|id| u64::try_from(id).ok())))
    }

    pub(crate) fn workspaces(&self) -> Option<&Workspaces> {
        self.workspaces.as_ref()
    }

    /// Who runs a job's agent: the configured CLI backend, or the native loop over the
    /// configured chain. `repo_model` is the repository's `model:` (tried first; for a CLI, only
    /// when it is the CLI's provider's); the calls are accounted to `job_id`. The error says
    /// why there is none.
    pub(crate) fn engine(&self, repo_model: Option<&str>, job_id: &str) -> Result<Engine, String> {
        let choice = repo_model.map_or(ModelChoice::Configured, ModelChoice::Preferred);
        let scope = CallScope {
            job_id: Some(job_id.to_owned()),
            session_id: None,
        };
        self.engines.engine(choice, scope)
    }

    /// Starts a job's agent on `engine`: `instructions` under `system`, in the worktree `root`
    /// with the workspace tools (`run_command` when the repository allows it), the job's
    /// `github` tools and those of `[mcp.servers]`, within the repository's turn and time
    /// limits, ending when the job is cancelled. A server that does not start fails the start,
    /// with its stderr.
    pub(crate) async fn start_agent(
        &self,
        ctx: &JobContext,
        config: &RepoConfig,
        engine: Engine,
        job_run: JobRun,
    ) -> Result<RunningAgent, String> {
        let spec = AgentSpec {
            system: job_run.system,
            instructions: job_run.instructions,
            root: job_run.root,
            run_command: config.settings.allows("run_command"),
            tools: job_run.github,
            limits: kodiai_agent::Limits {
                max_turns: config.settings.max_turns,
                timeout: Some(std::time::Duration::from_secs(u64::from(
                    config.settings.timeout_seconds,
                ))),
                budget_usd: None,
            },
            cancel: ctx.token().child_token(),
        };
        engine::start(&self.engines, engine, spec)
            .await
            .map_err(|e| e.to_string())
    }

    pub(crate) fn own_handles(&self) -> &[String] {
        &self.own_handles
    }

    /// Where a job's tools act: issue or pull request `number` of `repository` (`owner/name`),
    /// as `client`.
    pub(crate) fn scope(
        &self,
        client: InstallationClient,
        repository: &str,
        number: u64,
    ) -> Result<GithubScope, JobError> {
        let (owner, repo) = split_repository(repository)?;
        Ok(GithubScope {
            client,
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            number,
            own_handles: self.own_handles.clone(),
        })
    }
}

/// A job's own parts of its agent run.
pub(crate) struct JobRun {
    pub(crate) root: WorkspaceRoot,
    /// The job's GitHub tools, by the `kodiai mcp github-*` server a CLI reaches them through.
    pub(crate) github: ToolGroups,
    pub(crate) system: String,
    pub(crate) instructions: String,
}

/// `kodiai mcp` (`agent.tool_server`, else this executable): how a CLI backend reaches a job's
/// GitHub tools.
fn relay(config: &Config) -> Result<RelayCommand, String> {
    let program = match config.agent.tool_server.clone() {
        Some(path) => path,
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find kodiai's own executable for `kodiai mcp`: {e}"))?,
    };
    Ok(RelayCommand {
        program,
        args: vec!["mcp".to_owned()],
    })
}

/// kodiai's handlers for this configuration: [`Handlers::builtin`] plus the GitHub work
/// ([`GithubWork::for_config`]).
pub async fn for_config(config: &Config, store: &Store, clock: &Clock) -> anyhow::Result<Handlers> {
    let work = Arc::new(GithubWork::for_config(config, store, clock).await?);
    Ok(with_github(work))
}

/// [`Handlers::builtin`] plus the review and mention handlers over `work`.
pub fn with_github(work: Arc<GithubWork>) -> Handlers {
    let for_mentions = Arc::clone(&work);
    Handlers::builtin()
        .with(JobKind::Review, review::ReviewHandler { work })
        .with(JobKind::Mention, move |ctx: JobContext| {
            mention::run(ctx, Arc::clone(&for_mentions))
        })
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
