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
use kodiai_agent::backends::BackendKind;
use kodiai_agent::mcp::McpError;
use kodiai_agent::tools::WorkspaceRoot;
use kodiai_agent::{AgentRun, Limits};
use kodiai_llm::{CallScope, NoRecorder};
use kodiai_protocol::{AgentEvent, FinishReason};
use kodiai_runtime::config::Config;
use kodiai_runtime::engine::{
    self, AgentSpec, Engines, ModelChoice, RunningAgent, StartError, ToolGroups,
};
use tokio_util::sync::CancellationToken;

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

/// Starts the task `args` describe on its backend: the workspace tools (the shell only when
/// `agent.allowed_tools` names `run_command`), the configured model or `--model`, the servers of
/// `[mcp.servers]`.
pub async fn start(config: &Config, args: &RunArgs) -> Result<RunningAgent, RunError> {
    let root = check_args(args)?;
    let backend = args.backend.unwrap_or(config.agent.backend);
    let engines = Engines::new(config, backend, Arc::new(NoRecorder), None);
    let choice = args
        .model
        .as_deref()
        .map_or(ModelChoice::Configured, ModelChoice::Only);
    let engine = engines
        .engine(choice, CallScope::default())
        .map_err(RunError::Usage)?;
    let spec = AgentSpec {
        system: SYSTEM_PROMPT.to_owned(),
        instructions: args.instructions.clone(),
        root,
        run_command: config.agent.allows("run_command"),
        tools: ToolGroups::default(),
        limits: limits(args),
        cancel: CancellationToken::new(),
    };
    engine::start(&engines, engine, spec)
        .await
        .map_err(|e| match e {
            StartError::Mcp(e) => RunError::Mcp(e),
            StartError::Tools(e) => RunError::Usage(e.to_string()),
        })
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
        Ok(started) => started.into_parts(),
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
    mcp.shutdown().await;
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
