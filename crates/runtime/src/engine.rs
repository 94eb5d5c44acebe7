//! The one door from configuration to a running agent. [`Engines`] is what every agent started
//! from one configuration shares (the native model chain with its recorder, or a CLI backend's
//! template: program, credential, `[mcp.servers]`, prices, the relay to the caller's own tools);
//! [`Engines::engine`] picks the model for one run; [`start`] runs an [`AgentSpec`] on it: the
//! workspace tools, the caller's own tools, the operator's MCP servers, the limits.
//!
//! `kodiai run`, `kodiai review` and the GitHub jobs all start their agents here, so a backend,
//! a model rule or a tool source is added once for all of them.

use std::path::PathBuf;
use std::sync::Arc;

use kodiai_agent::backends::{BackendKind, Cli, CliCredential, CliTask, RelayCommand};
use kodiai_agent::mcp::{McpClients, McpError};
use kodiai_agent::tools::{
    DynTool, RegistryError, ToolRegistry, ToolRouter, WorkspaceRoot, WorkspaceToolOptions,
};
use kodiai_agent::{AgentRun, Limits, RunOutcome, Task};
use kodiai_llm::{CallRecorder, CallScope, Llm, LlmSettings, ModelRef, ModelSettings, PriceTable};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, McpConfig};

/// The MCP server of the progress and comment tools.
pub const COMMENT_SERVER: &str = "github-comment";
/// The MCP server of `create_inline_comment`.
pub const INLINE_COMMENT_SERVER: &str = "github-inline-comment";
/// The MCP server of `get_ci_status`.
pub const CI_SERVER: &str = "github-ci";
/// The MCP server of `commit_and_push` and `create_pull_request`.
pub const FILES_SERVER: &str = "github-files";
/// kodiai's own MCP servers, through which a CLI backend reaches a caller's tools: no server of
/// `[mcp.servers]` may take these names.
pub const OWN_SERVERS: [&str; 4] = [
    COMMENT_SERVER,
    INLINE_COMMENT_SERVER,
    CI_SERVER,
    FILES_SERVER,
];

/// Which model a run takes.
#[derive(Debug, Clone, Copy)]
pub enum ModelChoice<'a> {
    /// The configured model and its fallbacks.
    Configured,
    /// This model alone (`kodiai run --model`): a bad name, or a model of another provider than
    /// a CLI's, is an error.
    Only(&'a str),
    /// This model first, the configured ones as fallbacks (a repository's `model:`); a CLI
    /// takes it only when it is of its provider.
    Preferred(&'a str),
}

/// Who runs an agent.
pub enum Engine {
    /// kodiai's loop over this model chain, with the prices its calls are costed by.
    Native { llm: Llm, prices: PriceTable },
    /// A CLI backend, its task with everything but the run's own parts.
    Cli(Box<CliTask>),
}

impl Engine {
    /// The model as results and prompt budgets name it: `provider/model`, or the CLI and "its
    /// default model" when it picks its own.
    pub fn model_name(&self) -> String {
        match self {
            Self::Native { llm, .. } => llm.model().to_string(),
            Self::Cli(task) => match &task.model {
                Some(model) => format!("{}/{model}", task.cli.provider()),
                None => format!("{} (its default model)", task.cli.name()),
            },
        }
    }
}

/// The native side of [`Engines`].
#[derive(Clone)]
struct Native {
    /// The configured chain.
    llm: Llm,
    /// To build another chain for a run's model.
    settings: LlmSettings,
    recorder: Arc<dyn CallRecorder>,
}

/// What every agent started from one configuration shares, or why none can start (a missing
/// key, a missing executable).
#[derive(Clone)]
pub struct Engines {
    engine: Result<Template, String>,
    mcp: McpConfig,
}

#[derive(Clone)]
enum Template {
    Native(Box<Native>),
    Cli(Box<CliTask>),
}

impl Engines {
    /// The engines of `backend` under `config`: for the native loop, the `[llm]` chain, its
    /// calls reported to `recorder`; for a CLI, its template ([`cli_template`]), with `relay`
    /// as the command that reaches the caller's own tools.
    pub fn new(
        config: &Config,
        backend: BackendKind,
        recorder: Arc<dyn CallRecorder>,
        relay: Option<RelayCommand>,
    ) -> Self {
        let engine = match config.agent.backend_config(backend, &config.llm).cli() {
            None => crate::llm::settings(&config.llm)
                .map_err(|e| format!("{e:#}"))
                .and_then(|settings| {
                    Llm::from_settings(&settings, Arc::clone(&recorder))
                        .map(|llm| {
                            Template::Native(Box::new(Native {
                                llm,
                                settings,
                                recorder,
                            }))
                        })
                        .map_err(|e| e.to_string())
                }),
            Some((cli, program)) => cli_template(config, cli, program).map(|mut task| {
                task.model = cli_model(cli, config.llm.model.as_deref());
                task.relay = relay;
                Template::Cli(Box::new(task))
            }),
        };
        Self {
            engine,
            mcp: config.mcp.clone(),
        }
    }

    /// None at all: every run fails with `why`.
    pub fn unavailable(why: impl Into<String>) -> Self {
        Self {
            engine: Err(why.into()),
            mcp: McpConfig::default(),
        }
    }

    /// Why no agent can start, if none can.
    pub fn unavailable_reason(&self) -> Option<&str> {
        self.engine.as_ref().err().map(String::as_str)
    }

    /// The CLI the agents run on, if one.
    pub fn cli(&self) -> Option<Cli> {
        match &self.engine {
            Ok(Template::Cli(task)) => Some(task.cli),
            _ => None,
        }
    }

    /// The prices the native model calls are costed with.
    pub fn prices(&self) -> PriceTable {
        match &self.engine {
            Ok(Template::Native(native)) => native.settings.prices.clone(),
            Ok(Template::Cli(task)) => task.prices.clone(),
            Err(_) => PriceTable::builtin(),
        }
    }

    /// The engine of one run: the model `choice` picks, its calls accounted to `scope`. The
    /// error says why there is none.
    pub fn engine(&self, choice: ModelChoice<'_>, scope: CallScope) -> Result<Engine, String> {
        match self.engine.as_ref().map_err(Clone::clone)? {
            Template::Native(native) => {
                let (llm, prices) = native_chain(native, choice)?;
                Ok(Engine::Native {
                    llm: llm.scoped(scope),
                    prices,
                })
            }
            Template::Cli(template) => {
                let mut task = template.clone();
                match choice {
                    ModelChoice::Configured => {}
                    ModelChoice::Preferred(model) => {
                        if let Some(model) = cli_model(task.cli, Some(model)) {
                            task.model = Some(model);
                        }
                    }
                    ModelChoice::Only(model) => task.model = Some(only_cli_model(task.cli, model)?),
                }
                Ok(Engine::Cli(task))
            }
        }
    }
}

/// The native chain of one run, and its prices.
fn native_chain(native: &Native, choice: ModelChoice<'_>) -> Result<(Llm, PriceTable), String> {
    let prices = native.settings.prices.clone();
    let (model, only) = match choice {
        ModelChoice::Configured => return Ok((native.llm.clone(), prices)),
        ModelChoice::Preferred(model) if model.trim().is_empty() => {
            return Ok((native.llm.clone(), prices));
        }
        ModelChoice::Preferred(model) => (model, false),
        ModelChoice::Only(model) => (model, true),
    };
    let parsed = ModelRef::parse(model).map_err(|e| {
        if only {
            format!("--model {model}: {e}")
        } else {
            format!("model {model:?}: {e}")
        }
    })?;
    let mut settings = native.settings.clone();
    if only {
        settings.models = vec![parsed];
    } else {
        settings.models.retain(|m| *m != parsed);
        settings.models.insert(0, parsed);
    }
    let llm =
        Llm::from_settings(&settings, Arc::clone(&native.recorder)).map_err(|e| e.to_string())?;
    Ok((llm, prices))
}

/// `--model` for `cli`: as given (with the CLI's provider or none); a model of another provider
/// is an error.
fn only_cli_model(cli: Cli, model: &str) -> Result<String, String> {
    match ModelRef::parse(model) {
        Ok(m) if m.provider == cli.provider() => Ok(m.model),
        Ok(m) => Err(format!(
            "--model {model}: the {} backend runs {} models, not {}",
            cli.name(),
            cli.provider(),
            m.provider
        )),
        Err(_) => Ok(model.trim().to_owned()),
    }
}

/// The model `cli` runs, as it names it: the first of `candidates` (`provider/model`) of the
/// CLI's provider, else `None` (the CLI's default).
pub fn cli_model<'a>(cli: Cli, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .filter_map(|m| ModelRef::parse(m).ok())
        .find(|m| m.provider == cli.provider())
        .map(|m| m.model)
}

/// What every run of `cli` from this configuration shares: the program, its credential from
/// `[llm]`, the servers of `[mcp.servers]`, its `PATH`, the prices (`[llm.prices]` over the
/// built-in ones), the provider's base URL when it is not the default; for the Gemini CLI its
/// scratch folders under `data_dir/cli` and, when `agent.gemini_trust_workspace` says so, a
/// trusted workspace. The error names the missing key.
fn cli_template(config: &Config, cli: Cli, program: PathBuf) -> Result<CliTask, String> {
    let credential = match cli {
        Cli::ClaudeCode => config
            .llm
            .anthropic_api_key
            .clone()
            .map(CliCredential::AnthropicApiKey)
            .or_else(|| {
                config
                    .llm
                    .claude_code_oauth_token
                    .clone()
                    .map(CliCredential::ClaudeCodeOauthToken)
            })
            .ok_or("the claude-code backend needs ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN")?,
        Cli::GeminiCli => config
            .llm
            .gemini_api_key
            .clone()
            .map(CliCredential::GeminiApiKey)
            .ok_or("the gemini-cli backend needs GEMINI_API_KEY")?,
    };
    let mut prices = PriceTable::builtin();
    for (name, price) in &config.llm.prices {
        prices.set(name.clone(), *price);
    }
    let mut task = CliTask::new(cli, program, PathBuf::new(), String::new());
    task.credential = Some(credential);
    for (name, server) in config.mcp.server_list() {
        let entry = server.cli_entry(&name).map_err(|e| e.to_string())?;
        task.mcp_servers.insert(name, entry);
    }
    task.path = config.agent.cli_search_path.clone();
    task.prices = prices;
    // A configured endpoint (a proxy, a gateway) is the CLI's too.
    let (variable, url, default) = match cli {
        Cli::ClaudeCode => (
            "ANTHROPIC_BASE_URL",
            &config.llm.anthropic_base_url,
            "https://api.anthropic.com/",
        ),
        Cli::GeminiCli => (
            "GOOGLE_GEMINI_BASE_URL",
            &config.llm.gemini_base_url,
            "https://generativelanguage.googleapis.com/",
        ),
    };
    if url.as_str() != default {
        task.env.push((
            variable.into(),
            url.as_str().trim_end_matches('/').to_owned(),
        ));
    }
    if cli == Cli::GeminiCli {
        // Its settings file is ignored below a folder others may write to (such as /tmp).
        let data = std::path::absolute(&config.data_dir)
            .map_err(|e| format!("data_dir {}: {e}", config.data_dir.display()))?;
        task.scratch_in = Some(data.join("cli"));
        if config.agent.gemini_trust_workspace {
            task.env
                .push(("GEMINI_CLI_TRUST_WORKSPACE".into(), "true".into()));
        }
    }
    Ok(task)
}

/// A caller's own tools, each under the MCP server that offers it to a CLI backend (one of
/// [`OWN_SERVERS`]); the native loop gets them all as they are.
#[derive(Default)]
pub struct ToolGroups {
    groups: Vec<(&'static str, Vec<Arc<dyn DynTool>>)>,
}

impl ToolGroups {
    /// Adds `tool` to the server `server`.
    pub fn add(&mut self, server: &'static str, tool: Arc<dyn DynTool>) -> &mut Self {
        match self.groups.iter_mut().find(|(name, _)| *name == server) {
            Some((_, tools)) => tools.push(tool),
            None => self.groups.push((server, vec![tool])),
        }
        self
    }

    /// Every tool, for the native loop.
    pub fn all(&self) -> Vec<Arc<dyn DynTool>> {
        self.groups
            .iter()
            .flat_map(|(_, tools)| tools.iter().cloned())
            .collect()
    }

    /// One registry per server, for a CLI backend.
    pub fn by_server(&self) -> Result<Vec<(String, ToolRegistry)>, RegistryError> {
        self.groups
            .iter()
            .map(|(name, tools)| {
                let mut registry = ToolRegistry::new();
                registry.register_all(tools.iter().cloned())?;
                Ok(((*name).to_owned(), registry))
            })
            .collect()
    }
}

/// One agent run, whatever the engine.
pub struct AgentSpec {
    /// The system prompt; a CLI's gets the names it shows the caller's tools under.
    pub system: String,
    /// The user's message: what to do.
    pub instructions: String,
    /// The folder the workspace tools are confined to.
    pub root: WorkspaceRoot,
    /// Whether the workspace shell (`run_command`, a CLI's own shell) is offered.
    pub run_command: bool,
    /// The caller's own tools.
    pub tools: ToolGroups,
    pub limits: Limits,
    /// Cancels the run.
    pub cancel: CancellationToken,
}

/// Why a run did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Two tools of one name; the caller's bug or a clash with an MCP server's tool.
    #[error("the tools: {0}")]
    Tools(#[from] RegistryError),
    /// An MCP server of `[mcp.servers]` did not start (its stderr in the message).
    #[error(transparent)]
    Mcp(#[from] McpError),
}

/// A running agent, with the MCP servers it started.
pub struct RunningAgent {
    pub run: AgentRun,
    mcp: Option<McpClients>,
}

impl RunningAgent {
    /// How the run ended; the MCP servers are stopped after it.
    pub async fn outcome(self) -> RunOutcome {
        let outcome = self.run.outcome().await;
        if let Some(mcp) = self.mcp {
            mcp.shutdown().await;
        }
        outcome
    }

    /// The run's events as they come, and a handle that stops the MCP servers after it
    /// ([`McpServers::shutdown`]).
    pub fn into_parts(self) -> (AgentRun, McpServers) {
        (self.run, McpServers(self.mcp))
    }
}

/// The MCP servers a run started, to stop after it.
pub struct McpServers(Option<McpClients>);

impl McpServers {
    pub async fn shutdown(self) {
        if let Some(mcp) = self.0 {
            mcp.shutdown().await;
        }
    }
}

/// Starts `spec` on `engine`: the workspace tools (a CLI's own matching ones), the caller's
/// tools (a CLI reaches them through its relay) and the servers of `[mcp.servers]` from
/// `engines`.
pub async fn start(
    engines: &Engines,
    engine: Engine,
    spec: AgentSpec,
) -> Result<RunningAgent, StartError> {
    match engine {
        Engine::Native { llm, prices } => {
            let options = WorkspaceToolOptions::with_run_command(spec.run_command);
            let mut registry = ToolRegistry::new();
            registry
                .register_all(kodiai_agent::tools::workspace_tools(&spec.root, &options).await)?;
            registry.register_all(spec.tools.all())?;
            let mcp = start_mcp(&engines.mcp, &mut registry, &spec.cancel).await?;
            let settings = ModelSettings::new(llm.model().model.clone());
            let mut task = Task::new(
                spec.instructions,
                Arc::new(llm),
                settings,
                ToolRouter::new(registry),
            );
            task.system = spec.system;
            task.prices = prices;
            task.limits = spec.limits;
            task.cancel = spec.cancel;
            Ok(RunningAgent {
                run: kodiai_agent::start(task),
                mcp,
            })
        }
        Engine::Cli(task) => {
            let mut task = *task;
            task.workdir = spec.root.path().to_owned();
            task.served = spec.tools.by_server()?;
            task.system = format!("{}{}", spec.system, cli_tool_names(&task));
            task.instructions = spec.instructions;
            task.allowed_tools = task.cli.workspace_tools(spec.run_command);
            task.limits = spec.limits;
            task.cancel = spec.cancel;
            Ok(RunningAgent {
                run: kodiai_agent::backends::start_cli(task),
                mcp: None,
            })
        }
    }
}

/// Starts the servers of `[mcp.servers]` and adds their tools (`server__tool`) to `registry`.
/// They stop with `cancel`; the caller shuts them down after the run.
async fn start_mcp(
    mcp: &McpConfig,
    registry: &mut ToolRegistry,
    cancel: &CancellationToken,
) -> Result<Option<McpClients>, StartError> {
    if mcp.servers.is_empty() {
        return Ok(None);
    }
    let clients = McpClients::start(&mcp.server_list(), cancel.clone()).await?;
    if let Err(e) = registry.register_all(clients.tools()) {
        clients.shutdown().await;
        return Err(e.into());
    }
    Ok(Some(clients))
}

/// What the prompts call the caller's tools, as the CLI of `task` names them (they reach it
/// over MCP).
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
