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
use kodiai_agent::backends::{CliTask, RelayCommand};
use kodiai_agent::mcp::McpClients;
use kodiai_agent::tools::{ToolRegistry, ToolRouter, WorkspaceRoot, WorkspaceToolOptions};
use kodiai_agent::workspace::Workspaces;
use kodiai_agent::{AgentRun, RunOutcome};
use kodiai_github::client::{GithubClient, InstallationClient};
use kodiai_github::contents::RepoFile;
use kodiai_llm::{CallScope, Llm, LlmSettings, ModelRef, PriceTable};
use kodiai_protocol::JobKind;
use kodiai_store::Store;
use serde_json::json;

use crate::config::{Config, McpConfig};
use crate::github::build_client;
use crate::github_tools::{GithubScope, GithubTools};
use crate::jobs::{Clock, Handlers, JobContext, JobError};
use crate::repo_config::{self, RepoConfig};

/// What the GitHub handlers share: the process's one GitHub client (if one is configured), the
/// git workspaces jobs check out into, the model the agent talks to, and kodiai's own handles.
pub struct GithubWork {
    client: Option<GithubClient>,
    /// `None` in [`GithubWork::new`] (gate-only handlers, for tests of the gates).
    workspaces: Option<Workspaces>,
    /// The configured model chain, or why there is none (a missing key): a job that needs the
    /// model says so in its tracking comment.
    llm: Result<LlmWork, String>,
    /// The handles kodiai answers to and writes as (without `@`): neutralized in what it
    /// writes, so that it never triggers itself.
    own_handles: Vec<String>,
    /// `None`: the agent is the native loop over `llm`. Else a CLI backend: what every job's
    /// run shares (program, credential, model, the relay to the job's GitHub tools), or why
    /// there is none (a missing key).
    cli: Option<Result<CliTask, String>>,
    /// The operator's MCP servers (`[mcp.servers]`), whose tools every job's agent gets.
    mcp: McpConfig,
}

/// A job's running agent, with the MCP servers it started.
pub(crate) struct JobAgent {
    run: AgentRun,
    mcp: Option<McpClients>,
}

impl JobAgent {
    /// How the run ended; the MCP servers are stopped after it.
    pub(crate) async fn outcome(self) -> RunOutcome {
        let outcome = self.run.outcome().await;
        if let Some(mcp) = self.mcp {
            mcp.shutdown().await;
        }
        outcome
    }
}

/// Who runs a job's agent.
pub(crate) enum Engine {
    /// kodiai's loop over this model chain.
    Native(Llm),
    /// A CLI backend, its task with everything but the job's own parts.
    Cli(Box<CliTask>),
}

impl Engine {
    /// The model as the job's result and the prompt's budget name it: `provider/model`, or the
    /// CLI and "its default model" when it picks its own.
    pub(crate) fn model_name(&self) -> String {
        match self {
            Self::Native(llm) => llm.model().to_string(),
            Self::Cli(task) => match &task.model {
                Some(model) => format!("{}/{model}", task.cli.provider()),
                None => format!("{} (its default model)", task.cli.name()),
            },
        }
    }
}

/// The model side of [`GithubWork`].
#[derive(Clone)]
pub(crate) struct LlmWork {
    /// The default chain.
    pub(crate) llm: Llm,
    /// To build another chain for a repository's `model:`.
    pub(crate) settings: LlmSettings,
    pub(crate) recorder: Arc<dyn kodiai_llm::CallRecorder>,
}

impl GithubWork {
    /// Only the client: the gates run, the work after them fails for want of a workspace.
    pub fn new(client: Option<GithubClient>) -> Self {
        Self {
            client,
            workspaces: None,
            llm: Err("no model is configured for this worker".into()),
            own_handles: Vec::new(),
            cli: None,
            mcp: McpConfig::default(),
        }
    }

    /// Everything the jobs need, from the configuration: the client, the workspaces under the
    /// data folder, the model (its calls recorded in `store` at `clock`'s time).
    pub async fn for_config(config: &Config, store: &Store, clock: &Clock) -> anyhow::Result<Self> {
        let client = build_client(&config.github)?.map(|c| {
            c.with_own_handles(crate::github::own_handles(&config.github, &config.mentions))
        });
        let workspaces = Workspaces::open(config.workspaces.settings(&config.data_dir))
            .await
            .context("opening the workspaces folder")?;
        let cli = cli_backend(config);
        let llm = match &cli {
            // The CLI is the model; no chain of kodiai's own is built or used.
            Some(Err(why)) => Err(why.clone()),
            Some(Ok(task)) => Err(format!("the agent runs on the {} CLI", task.cli.name())),
            None => crate::llm::settings(&config.llm)
                .map_err(|e| format!("{e:#}"))
                .and_then(|settings| {
                    let recorder: Arc<dyn kodiai_llm::CallRecorder> =
                        Arc::new(crate::llm::StoreRecorder {
                            store: store.clone(),
                            clock: clock.clone(),
                        });
                    Llm::from_settings(&settings, Arc::clone(&recorder))
                        .map(|llm| LlmWork {
                            llm,
                            settings,
                            recorder,
                        })
                        .map_err(|e| e.to_string())
                }),
        };
        if !matches!(cli, Some(Ok(_)))
            && let Err(reason) = &llm
        {
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
            llm,
            own_handles,
            cli,
            mcp: config.mcp.clone(),
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

    /// The model for a job: the repository's `model:` when it names one, else the default
    /// chain; its calls are accounted to `job_id`.
    pub(crate) fn model(&self, repo_model: Option<&str>, job_id: &str) -> Result<Llm, String> {
        let work = self.llm.as_ref().map_err(Clone::clone)?;
        let llm = match repo_model.filter(|m| !m.trim().is_empty()) {
            Some(model) => {
                let mut settings = work.settings.clone();
                let model = ModelRef::parse(model).map_err(|e| format!("model {model:?}: {e}"))?;
                settings.models.retain(|m| *m != model);
                settings.models.insert(0, model);
                Llm::from_settings(&settings, Arc::clone(&work.recorder))
                    .map_err(|e| e.to_string())?
            }
            None => work.llm.clone(),
        };
        Ok(llm.scoped(CallScope {
            job_id: Some(job_id.to_owned()),
            session_id: None,
        }))
    }

    /// The prices the model calls are costed with.
    pub(crate) fn prices(&self) -> PriceTable {
        self.llm
            .as_ref()
            .map(|w| w.settings.prices.clone())
            .unwrap_or_else(|_| PriceTable::builtin())
    }

    /// Who runs a job's agent: the configured CLI backend, or the native loop over
    /// [`GithubWork::model`]. `repo_model` is the repository's `model:` (for a CLI, only when
    /// it is the CLI's provider's). The error says why there is none.
    pub(crate) fn engine(&self, repo_model: Option<&str>, job_id: &str) -> Result<Engine, String> {
        match &self.cli {
            None => self.model(repo_model, job_id).map(Engine::Native),
            Some(Err(why)) => Err(why.clone()),
            Some(Ok(template)) => {
                let mut task = template.clone();
                if let Some(model) = crate::run::cli_model(task.cli, repo_model) {
                    task.model = Some(model);
                }
                Ok(Engine::Cli(Box::new(task)))
            }
        }
    }

    /// Starts a job's agent on `engine`: `user` under `system`, in the worktree `root` with the
    /// workspace tools (`run_command` when the repository allows it; a CLI's own matching
    /// tools), the job's `github` tools (a CLI reaches them through `kodiai mcp github-*`) and
    /// those of `[mcp.servers]`, within the repository's turn and time limits, ending when the
    /// job is cancelled. A server that does not start fails the start, with its stderr.
    #[allow(clippy::too_many_arguments, reason = "one job's parts, passed once")]
    pub(crate) async fn start_agent(
        &self,
        ctx: &JobContext,
        config: &RepoConfig,
        engine: Engine,
        root: &WorkspaceRoot,
        github: GithubTools,
        system: String,
        user: String,
    ) -> Result<JobAgent, String> {
        let run_command = config.settings.allows("run_command");
        let limits = kodiai_agent::Limits {
            max_turns: config.settings.max_turns,
            timeout: Some(std::time::Duration::from_secs(u64::from(
                config.settings.timeout_seconds,
            ))),
            budget_usd: None,
        };
        let cancel = ctx.token().child_token();
        match engine {
            Engine::Native(model) => {
                let options = WorkspaceToolOptions::with_run_command(run_command);
                let mut registry = ToolRegistry::new();
                registry
                    .register_all(kodiai_agent::tools::workspace_tools(root, &options).await)
                    .and_then(|()| registry.register_all(github.all()))
                    .map_err(|e| format!("the tools: {e}"))?;
                let mcp = if self.mcp.servers.is_empty() {
                    None
                } else {
                    let clients = McpClients::start(&self.mcp.server_list(), cancel.clone())
                        .await
                        .map_err(|e| e.to_string())?;
                    if let Err(e) = registry.register_all(clients.tools()) {
                        clients.shutdown().await;
                        return Err(format!("the tools: {e}"));
                    }
                    Some(clients)
                };
                let settings = kodiai_llm::ModelSettings::new(model.model().model.clone());
                let mut task = kodiai_agent::Task::new(
                    user,
                    Arc::new(model),
                    settings,
                    ToolRouter::new(registry),
                );
                task.system = system;
                task.prices = self.prices();
                task.limits = limits;
                task.cancel = cancel;
                Ok(JobAgent {
                    run: kodiai_agent::start(task),
                    mcp,
                })
            }
            Engine::Cli(task) => {
                let mut task = *task;
                task.workdir = root.path().to_owned();
                task.served = github.by_server().map_err(|e| format!("the tools: {e}"))?;
                task.system = format!("{system}{}", cli_tool_names(&task));
                task.instructions = user;
                task.allowed_tools = task.cli.workspace_tools(run_command);
                task.limits = limits;
                task.cancel = cancel;
                Ok(JobAgent {
                    run: kodiai_agent::backends::start_cli(task),
                    mcp: None,
                })
            }
        }
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

/// What the prompts call kodiai's tools, as the CLI of `task` names them (they reach it over
/// MCP).
fn cli_tool_names(task: &CliTask) -> String {
    let renamed: Vec<String> = task
        .served
        .iter()
        .flat_map(|(server, registry)| {
            registry.names().into_iter().filter_map(move |tool| {
                let shown = task.cli.mcp_tool_name(server, &tool);
                (shown != tool).then(|| format!("`{tool}` is `{shown}`"))
            })
        })
        .collect();
    if renamed.is_empty() {
        return String::new();
    }
    format!(
        "\n\nkodiai's tools reach you over MCP, under these names: {}.",
        renamed.join(", ")
    )
}

/// The CLI backend of `config` (`None` for the native loop) as the template of every job's
/// run: its program, credential and model, and `kodiai mcp` (`agent.tool_server`, else this
/// executable) as the relay to the job's GitHub tools. The error says what is missing.
fn cli_backend(config: &Config) -> Option<Result<CliTask, String>> {
    let (cli, program) = config
        .agent
        .backend_config(config.agent.backend, &config.llm)
        .cli()?;
    let relay = match config.agent.tool_server.clone() {
        Some(path) => Ok(path),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find kodiai's own executable for `kodiai mcp`: {e}")),
    };
    Some(relay.and_then(|relay| {
        let mut task = crate::run::cli_template(config, cli, program)?;
        task.model = crate::run::cli_model(cli, config.llm.model.as_deref());
        task.relay = Some(RelayCommand {
            program: relay,
            args: vec!["mcp".to_owned()],
        });
        Ok(task)
    }))
}

impl Handlers {
    /// kodiai's handlers for this configuration: [`Handlers::builtin`] plus the GitHub work
    /// ([`GithubWork::for_config`]).
    pub async fn for_config(config: &Config, store: &Store, clock: &Clock) -> anyhow::Result<Self> {
        let work = Arc::new(GithubWork::for_config(config, store, clock).await?);
        Ok(Self::with_github(work))
    }

    /// [`Handlers::builtin`] plus the review and mention handlers over `work`.
    pub fn with_github(work: Arc<GithubWork>) -> Self {
        let for_mentions = Arc::clone(&work);
        Self::builtin()
            .with(JobKind::Review, review::ReviewHandler { work })
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
