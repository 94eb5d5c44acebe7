//! `kodiai run`: one headless agent task in a directory, on the configured backend: the native
//! loop with the workspace tools and the configured model (the `[llm]` configuration, so the
//! same keys and environment variables pick the model), or the Claude Code or Gemini CLI
//! (`--backend`, default `agent.backend`) with their own tools. `run_command` (the CLIs' shell)
//! is offered only when `agent.allowed_tools` names it. Events are printed as they happen, as
//! text for a person or, with `--json`, one JSON object per line (the [`AgentEvent`] wire
//! format), the same for every backend.
//!
//! Exit codes: 0 the task completed; 1 it ended otherwise (error, timeout, budget, max turns,
//! cancelled by a signal); 2 bad usage (a missing directory, a bad model name, a missing key).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kodiai_agent::backends::{BackendKind, Cli, CliCredential, CliTask};
use kodiai_agent::tools::{ToolRegistry, ToolRouter, WorkspaceRoot, WorkspaceToolOptions};
use kodiai_agent::{AgentRun, Limits, Task};
use kodiai_llm::{Llm, ModelRef, ModelSettings, NoRecorder, PriceTable};
use kodiai_protocol::{AgentEvent, FinishReason};

use crate::config::{Config, McpConfig};
use kodiai_agent::mcp::{McpClients, McpError};

/// The arguments of `kodiai run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The directory to work in; the tools cannot leave it.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The model, provider/model (default: the configured model and its fallbacks). For the
    /// CLI backends, the CLI's model name, with or without its provider (`anthropic/`,
    /// `gemini/`).
    #[arg(long, value_name = "PROVIDER/MODEL")]
    pub model: Option<String>,
    /// Who runs the task: native, claude-code or gemini-cli (default: `agent.backend`).
    #[arg(long, value_name = "BACKEND", value_parser = parse_backend)]
    pub backend: Option<BackendKind>,
    /// Model calls at most.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_turns: u32,
    /// Seconds the whole task may take.
    #[arg(long, value_name = "SECS", default_value_t = 1800,
        value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
    /// USD the model calls may cost at most (built-in list prices and `[llm.prices]`).
    #[arg(long, value_name = "USD")]
    pub budget: Option<f64>,
    /// Print the events as JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// What to do.
    pub instructions: String,
}

fn parse_backend(text: &str) -> Result<BackendKind, String> {
    text.parse()
}

/// Why `kodiai run` could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A bad argument or configuration; exit 2.
    #[error("{0}")]
    Usage(String),
    /// Writing the events failed (a closed pipe); exit 1.
    #[error("cannot write the events: {0}")]
    Output(#[from] std::io::Error),
    /// An MCP server of `[mcp.servers]` did not start (its stderr in the message); exit 1.
    #[error(transparent)]
    Mcp(#[from] McpError),
}

const SYSTEM_PROMPT: &str = "You are kodiai, a careful software engineer. You work in a \
repository whose root is the workspace; every path you give a tool is relative to it. Read and \
search before you change anything, make the smallest change that does the task, and keep the \
code's style. When the task is done, answer with a short summary of what you changed and call \
no more tools.";

fn check_args(args: &RunArgs) -> Result<WorkspaceRoot, RunError> {
    if args.instructions.trim().is_empty() {
        return Err(RunError::Usage("the instructions are empty".into()));
    }
    if let Some(budget) = args.budget
        && !(budget.is_finite() && budget > 0.0)
    {
        return Err(RunError::Usage(format!(
            "--budget {budget}: expected a positive number of USD"
        )));
    }
    WorkspaceRoot::new(&args.dir)
        .map_err(|e| RunError::Usage(format!("--dir {}: {e}", args.dir.display())))
}

fn limits(args: &RunArgs) -> Limits {
    Limits {
        max_turns: args.max_turns,
        timeout: Some(Duration::from_secs(args.timeout)),
        budget_usd: args.budget,
    }
}

/// Starts the task `args` describe on its backend.
pub async fn start(
    config: &Config,
    args: &RunArgs,
) -> Result<(AgentRun, Option<McpClients>), RunError> {
    let backend = args.backend.unwrap_or(config.agent.backend);
    match config.agent.backend_config(backend, &config.llm).cli() {
        None => {
            let mut task = task(config, args).await?;
            let mcp = add_mcp_tools(&mut task, &config.mcp).await?;
            Ok((kodiai_agent::start(task), mcp))
        }
        Some((cli, program)) => Ok((
            kodiai_agent::backends::start_cli(cli_task(config, args, cli, program)?),
            None,
        )),
    }
}

/// The native task `args` describe, with the model of `config`.
pub async fn task(config: &Config, args: &RunArgs) -> Result<Task, RunError> {
    let root = check_args(args)?;
    let mut settings =
        crate::llm::settings(&config.llm).map_err(|e| RunError::Usage(format!("{e:#}")))?;
    if let Some(model) = &args.model {
        let model = ModelRef::parse(model).map_err(|e| RunError::Usage(format!("--model: {e}")))?;
        settings.models = vec![model];
    }
    let llm = Llm::from_settings(&settings, Arc::new(NoRecorder))
        .map_err(|e| RunError::Usage(e.to_string()))?;
    let options = WorkspaceToolOptions::with_run_command(config.agent.allows("run_command"));
    let mut registry = ToolRegistry::new();
    registry
        .register_all(kodiai_agent::tools::workspace_tools(&root, &options).await)
        .map_err(|e| RunError::Usage(e.to_string()))?;
    let model_settings = ModelSettings::new(llm.model().model.clone());
    let mut task = Task::new(
        args.instructions.clone(),
        Arc::new(llm),
        model_settings,
        ToolRouter::new(registry),
    );
    task.system = SYSTEM_PROMPT.to_owned();
    task.prices = settings.prices;
    task.limits = limits(args);
    Ok(task)
}

/// The CLI task `args` describe: the CLI's workspace tools (its shell only when `run_command`
/// is allowed), its credential from `[llm]`, the model named for its provider, the servers of
/// `[mcp.servers]` ([`cli_template`]).
pub fn cli_task(
    config: &Config,
    args: &RunArgs,
    cli: Cli,
    program: PathBuf,
) -> Result<CliTask, RunError> {
    let root = check_args(args)?;
    // `--model` as given (with the CLI's provider or none); the configured model only when
    // it is the CLI's provider's.
    let model = match &args.model {
        Some(model) => match ModelRef::parse(model) {
            Ok(m) if m.provider == cli.provider() => Some(m.model),
            Ok(m) => {
                return Err(RunError::Usage(format!(
                    "--model {model}: the {} backend runs {} models, not {}",
                    cli.name(),
                    cli.provider(),
                    m.provider
                )));
            }
            Err(_) => Some(model.trim().to_owned()),
        },
        None => cli_model(cli, config.llm.model.as_deref()),
    };
    let mut task = cli_template(config, cli, program).map_err(RunError::Usage)?;
    task.workdir = root.path().to_owned();
    task.instructions = args.instructions.clone();
    task.system = SYSTEM_PROMPT.to_owned();
    task.model = model;
    task.allowed_tools = cli.workspace_tools(config.agent.allows("run_command"));
    task.limits = limits(args);
    Ok(task)
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
/// `[llm]`, the servers of `[mcp.servers]`, its `PATH`, the prices (`[llm.prices]` over the built-in ones), the provider's base
/// URL when it is not the default; for the Gemini CLI its scratch folders under `data_dir/cli`
/// and, when `agent.gemini_trust_workspace` says so, a trusted workspace. The error names the
/// missing key.
pub fn cli_template(config: &Config, cli: Cli, program: PathBuf) -> Result<CliTask, String> {
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

/// Starts the MCP servers of `[mcp.servers]` and adds their tools (`server__tool`) to `task`.
/// The servers stop with the task's token; the caller shuts them down after the run. A server
/// that cannot start fails the command (its stderr in the message).
pub async fn add_mcp_tools(
    task: &mut Task,
    mcp: &McpConfig,
) -> Result<Option<McpClients>, McpError> {
    if mcp.servers.is_empty() {
        return Ok(None);
    }
    let clients = McpClients::start(&mcp.server_list(), task.cancel.clone()).await?;
    let mut registry = task.tools.registry().clone();
    if let Err(e) = registry.register_all(clients.tools()) {
        clients.shutdown().await;
        return Err(McpError::Config {
            server: "mcp".into(),
            message: e.to_string(),
        });
    }
    task.tools = ToolRouter::new(registry);
    Ok(Some(clients))
}

/// Prints the events of `run` to `out` as they come; stops it when `stop` resolves (a
/// signal). Returns how it ended.
pub async fn run(
    mut run: AgentRun,
    json: bool,
    out: &mut (dyn Write + Send),
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<FinishReason, RunError> {
    let cancel = run.cancel_token();
    let watcher = tokio::spawn(async move {
        stop.await;
        cancel.cancel();
    });
    let mut printer = Printer::default();
    let mut reason = FinishReason::Error;
    while let Some(event) = run.next().await {
        if let AgentEvent::Finished { reason: r, .. } = &event {
            reason = *r;
        }
        let text = if json {
            let mut line = serde_json::to_string(&event)
                .map_err(|e| RunError::Output(std::io::Error::other(e)))?;
            line.push('\n');
            line
        } else {
            printer.render(&event)
        };
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }
    watcher.abort();
    Ok(reason)
}

/// The whole command: 0 completed, 1 any other end (an MCP server that does not start, too),
/// 2 bad usage.
pub async fn command(config: &Config, args: RunArgs) -> ExitCode {
    let (agent, mcp) = match start(config, &args).await {
        Ok(started) => started,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "kodiai: {e}");
            return match e {
                RunError::Usage(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            };
        }
    };
    let mut stdout = std::io::stdout();
    let result = run(
        agent,
        args.json,
        &mut stdout,
        crate::server::shutdown_signal(),
    )
    .await;
    if let Some(mcp) = mcp {
        mcp.shutdown().await;
    }
    match result {
        Ok(FinishReason::Completed) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "kodiai: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The most of a tool call's arguments or result shown on one line.
const SHOWN_CHARS: usize = 160;

fn shorten(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    let mut shown: String = line.chars().take(SHOWN_CHARS).collect();
    if shown.len() < line.len() || text.lines().nth(1).is_some() {
        shown.push('…');
    }
    shown
}

/// Renders events as text for a person: the model's text as it streams, one line per tool call
/// and result, a summary at the end.
#[derive(Debug, Default)]
pub struct Printer {
    /// The last output ended inside a line of streamed text.
    in_text: bool,
}

impl Printer {
    pub fn render(&mut self, event: &AgentEvent) -> String {
        let mut out = String::new();
        if self.in_text && !matches!(event, AgentEvent::TextDelta { .. }) {
            out.push('\n');
            self.in_text = false;
        }
        match event {
            AgentEvent::TurnStarted { turn } => out.push_str(&format!("── turn {turn}\n")),
            AgentEvent::TextDelta { text, .. } => {
                out.push_str(text);
                self.in_text = !text.ends_with('\n');
            }
            AgentEvent::ToolCall { call, .. } => {
                out.push_str(&format!(
                    "→ {} {}\n",
                    call.name,
                    shorten(&call.arguments.to_string())
                ));
            }
            AgentEvent::ToolResult {
                name,
                content,
                is_error,
                ..
            } => {
                let lines = content.lines().count();
                if *is_error {
                    out.push_str(&format!("← {name}: error: {}\n", shorten(content)));
                } else {
                    out.push_str(&format!("← {name}: ok, {lines} lines\n"));
                }
            }
            AgentEvent::Usage {
                usage,
                cost_usd,
                total_cost_usd,
                model,
                ..
            } => out.push_str(&format!(
                "  {model}: {} input + {} output tokens, ${cost_usd:.4} (run: ${total_cost_usd:.4})\n",
                usage.total_input(),
                usage.output_tokens
            )),
            AgentEvent::Error { message } => out.push_str(&format!("error: {message}\n")),
            AgentEvent::Finished {
                reason,
                turns,
                usage,
                cost_usd,
                ..
            } => out.push_str(&format!(
                "finished: {reason} after {turns} turns, {} input + {} output tokens, ${cost_usd:.4}\n",
                usage.total_input(),
                usage.output_tokens
            )),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kodiai_protocol::{TokenUsage, ToolCall};

    #[test]
    fn the_printer_keeps_streamed_text_on_its_line_and_summarizes_tools() {
        let mut printer = Printer::default();
        let events = [
            AgentEvent::TurnStarted { turn: 1 },
            AgentEvent::TextDelta {
                turn: 1,
                text: "Let me ".into(),
            },
            AgentEvent::TextDelta {
                turn: 1,
                text: "look.".into(),
            },
            AgentEvent::ToolCall {
                turn: 1,
                call: ToolCall {
                    id: "c1".into(),
                    name: "read_file".into(),
                    arguments: serde_json::json!({"path": "a.rs"}),
                },
            },
            AgentEvent::ToolResult {
                turn: 1,
                call_id: "c1".into(),
                name: "read_file".into(),
                content: "1\tfn a() {}\n2\t".into(),
                is_error: false,
            },
            AgentEvent::ToolResult {
                turn: 1,
                call_id: "c2".into(),
                name: "read_file".into(),
                content: "`../x` is outside the workspace".into(),
                is_error: true,
            },
            AgentEvent::Finished {
                reason: FinishReason::Completed,
                turns: 1,
                usage: TokenUsage {
                    input_tokens: 10,
                    output_tokens: 5,
                    ..TokenUsage::default()
                },
                cost_usd: 0.0,
                text: "Let me look.".into(),
            },
        ];
        let text: String = events.iter().map(|e| printer.render(e)).collect();
        assert_eq!(
            text,
            "── turn 1\nLet me look.\n→ read_file {\"path\":\"a.rs\"}\n← read_file: ok, 2 lines\n\
             ← read_file: error: `../x` is outside the workspace\n\
             finished: completed after 1 turns, 10 input + 5 output tokens, $0.0000\n"
        );
    }
}
