//! The agent's backends: the native loop ([`crate::start`], any provider) or a coding-agent CLI
//! run as a child process, the Claude Code CLI ([`claude_code`]) or the Gemini CLI
//! ([`gemini_cli`]). A CLI run is the same handle as a native one: [`start_cli`] returns an
//! [`AgentRun`] whose events are the native loop's [`AgentEvent`]s (turn started, text delta,
//! tool call, tool result, usage, error, finished), parsed from the CLI's JSON lines as they
//! come, and whose [`RunOutcome`] has the final text, tokens, cost and turns.
//!
//! The CLI runs in the workspace, in its own process group (process-wrap), with an environment
//! built from nothing: `PATH`, a throw-away `HOME` and `TMPDIR` (its settings and MCP
//! configuration are written there), locale, the one credential the CLI needs (passed in
//! explicitly, from the configuration), and what the operator adds. The limits are the loop's:
//! `max_turns` is passed as the CLI's own limit and also counted here; the timeout, a
//! cancellation or a dropped handle kill the whole group (the CLIs start node, shells and MCP
//! servers); the budget stops the run once the cost, estimated from each turn's reported tokens
//! with the price table (or reported by the CLI), reaches it. A non-zero exit without a result
//! ends the run with `error` and the tail of the CLI's stderr.

pub mod claude_code;
pub mod gemini_cli;
mod run;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kodiai_llm::{Message, PriceTable, Usage};
use kodiai_protocol::{AgentEvent, FinishReason, TokenUsage, ToolCall};
use process_wrap::tokio::{CommandWrap, ProcessGroup};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::agent::{AgentRun, EVENT_BUFFER, Limits, RunOutcome, stopped};
use crate::mcp::ToolSocket;
use crate::tools::ToolRegistry;
use crate::tools::process::GroupGuard;

/// Which engine runs a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// kodiai's own loop over any configured provider, with kodiai's tools.
    #[default]
    Native,
    /// The Claude Code CLI (`claude -p`).
    ClaudeCode,
    /// The Gemini CLI (`gemini -p`).
    GeminiCli,
}

impl BackendKind {
    /// The kebab-case name, as in configuration and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::ClaudeCode => "claude-code",
            Self::GeminiCli => "gemini-cli",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BackendKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "native" => Ok(Self::Native),
            "claude-code" => Ok(Self::ClaudeCode),
            "gemini-cli" => Ok(Self::GeminiCli),
            other => Err(format!(
                "unknown backend `{other}`: expected native, claude-code or gemini-cli"
            )),
        }
    }
}

/// A backend as configuration names it, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BackendConfig {
    /// The native loop.
    #[default]
    Native,
    /// The Claude Code CLI; `path` defaults to `claude` on `PATH`.
    ClaudeCode {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<PathBuf>,
    },
    /// The Gemini CLI; `path` defaults to `gemini` on `PATH`.
    GeminiCli {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<PathBuf>,
    },
}

impl BackendConfig {
    pub fn kind(&self) -> BackendKind {
        match self {
            Self::Native => BackendKind::Native,
            Self::ClaudeCode { .. } => BackendKind::ClaudeCode,
            Self::GeminiCli { .. } => BackendKind::GeminiCli,
        }
    }

    /// The CLI to run and its program, or `None` for the native loop.
    pub fn cli(&self) -> Option<(Cli, PathBuf)> {
        match self {
            Self::Native => None,
            Self::ClaudeCode { path } => Some((
                Cli::ClaudeCode,
                path.clone().unwrap_or_else(|| PathBuf::from("claude")),
            )),
            Self::GeminiCli { path } => Some((
                Cli::GeminiCli,
                path.clone().unwrap_or_else(|| PathBuf::from("gemini")),
            )),
        }
    }
}

/// A coding-agent CLI kodiai can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cli {
    ClaudeCode,
    GeminiCli,
}

impl Cli {
    /// The program's usual name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::ClaudeCode => "claude",
            Self::GeminiCli => "gemini",
        }
    }

    /// The provider whose models it runs (and whose prices apply to them).
    pub fn provider(self) -> &'static str {
        match self {
            Self::ClaudeCode => "anthropic",
            Self::GeminiCli => "gemini",
        }
    }

    /// The name the CLI gives the model for `tool` of MCP server `server` (as Claude Code 2.1 and
    /// Gemini CLI 0.61 do).
    pub fn mcp_tool_name(self, server: &str, tool: &str) -> String {
        match self {
            Self::ClaudeCode => format!("mcp__{server}__{tool}"),
            Self::GeminiCli => format!("mcp_{server}_{tool}"),
        }
    }

    /// The CLI's own tools that match kodiai's workspace tools (read, list, search, edit,
    /// write, `git diff`/`git log`), and its shell when `run_command` is allowed.
    pub fn workspace_tools(self, run_command: bool) -> Vec<String> {
        let (tools, shell): (&[&str], &str) = match self {
            Self::ClaudeCode => (
                &[
                    "Read",
                    "Glob",
                    "Grep",
                    "LS",
                    "Edit",
                    "MultiEdit",
                    "Write",
                    "Bash(git diff:*)",
                    "Bash(git log:*)",
                ],
                "Bash",
            ),
            Self::GeminiCli => (
                &[
                    "read_file",
                    "read_many_files",
                    "list_directory",
                    "glob",
                    "search_file_content",
                    "grep_search",
                    "replace",
                    "write_file",
                    "run_shell_command(git diff)",
                    "run_shell_command(git log)",
                ],
                "run_shell_command",
            ),
        };
        let mut tools: Vec<String> = tools.iter().map(|t| (*t).to_owned()).collect();
        if run_command {
            tools.push(shell.to_owned());
        }
        tools
    }
}

/// The secret a CLI authenticates with; it reaches the child as its one credential variable.
#[derive(Debug, Clone)]
pub enum CliCredential {
    /// `ANTHROPIC_API_KEY` (Claude Code).
    AnthropicApiKey(SecretString),
    /// `CLAUDE_CODE_OAUTH_TOKEN` (Claude Code with a subscription).
    ClaudeCodeOauthToken(SecretString),
    /// `GEMINI_API_KEY` (Gemini CLI).
    GeminiApiKey(SecretString),
}

impl CliCredential {
    fn variable(&self) -> (&'static str, &SecretString) {
        match self {
            Self::AnthropicApiKey(s) => ("ANTHROPIC_API_KEY", s),
            Self::ClaudeCodeOauthToken(s) => ("CLAUDE_CODE_OAUTH_TOKEN", s),
            Self::GeminiApiKey(s) => ("GEMINI_API_KEY", s),
        }
    }
}

/// Everything one CLI run needs.
#[derive(Debug, Clone)]
pub struct CliTask {
    pub cli: Cli,
    /// The executable (a bare name is looked up on [`CliTask::path`]).
    pub program: PathBuf,
    /// The workspace: the child's working folder.
    pub workdir: PathBuf,
    /// kodiai's system prompt, appended to the CLI's own (Claude Code) or put ahead of the
    /// instructions (Gemini CLI, which has no flag for it).
    pub system: String,
    pub instructions: String,
    /// The model as the CLI names it (`claude-sonnet-4-5`, `gemini-2.5-pro`); `None`: the
    /// CLI's default.
    pub model: Option<String>,
    /// Tools the CLI may run without asking, in its own names (see [`Cli::workspace_tools`]).
    pub allowed_tools: Vec<String>,
    /// MCP servers for the CLI, as the `mcpServers` object both CLIs read (`name` →
    /// `{command, args, env}` or `{type: "http", url, headers}`); each server's tools are
    /// allowed.
    pub mcp_servers: McpServers,
    /// Tools of this process offered to the CLI as MCP servers, one per group (its name → its
    /// tools; each server's tools are allowed). They stay in this process: the run serves them
    /// on a [`ToolSocket`] in its scratch folder, and the CLI starts [`CliTask::relay`] with the
    /// group's name appended as each group's stdio server.
    pub served: Vec<(String, ToolRegistry)>,
    /// The relay command for [`CliTask::served`] (`kodiai mcp`); required when it is not empty.
    pub relay: Option<RelayCommand>,
    pub credential: Option<CliCredential>,
    /// `PATH` in the child's environment.
    pub path: String,
    /// Further variables (the operator's choice; never the host's environment).
    pub env: Vec<(String, String)>,
    /// The folder the run's scratch folder is made in (created, private, when missing);
    /// `None`: the system's temporary folder. The Gemini CLI ignores a settings file when a
    /// folder above it is writable by others, as `/tmp` is.
    pub scratch_in: Option<PathBuf>,
    pub limits: Limits,
    /// Prices for the cost estimate of each turn (and so the budget).
    pub prices: PriceTable,
    pub cancel: CancellationToken,
}

/// A CLI's `mcpServers` object: server name → its entry.
pub type McpServers = serde_json::Map<String, serde_json::Value>;

/// The program and first arguments of the relay a CLI starts for a served tool group (the
/// group's name is the last argument): `kodiai mcp`, which runs [`crate::mcp::relay_stdio`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// The `PATH` of a CLI child unless configured.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl CliTask {
    /// A task with default limits, built-in prices, the CLI's workspace tools and no MCP servers.
    pub fn new(
        cli: Cli,
        program: impl Into<PathBuf>,
        workdir: impl Into<PathBuf>,
        instructions: impl Into<String>,
    ) -> Self {
        Self {
            cli,
            program: program.into(),
            workdir: workdir.into(),
            system: String::new(),
            instructions: instructions.into(),
            model: None,
            allowed_tools: cli.workspace_tools(false),
            mcp_servers: serde_json::Map::new(),
            served: Vec::new(),
            relay: None,
            credential: None,
            path: DEFAULT_PATH.to_owned(),
            env: Vec::new(),
            scratch_in: None,
            limits: Limits::default(),
            prices: PriceTable::builtin(),
            cancel: CancellationToken::new(),
        }
    }
}

/// Starts a run of `task` on the current Tokio runtime. Failures to start (a missing
/// executable) end the run with `error` like any other failure.
pub fn start_cli(task: CliTask) -> AgentRun {
    let (sender, events) = mpsc::channel(EVENT_BUFFER);
    let cancel = task.cancel.clone();
    let handle = tokio::spawn(run::drive(task, sender));
    AgentRun::from_parts(events, cancel, handle)
}

/// The command line and extra environment of one CLI, with the files it reads written into
/// the run's scratch folder.
pub(crate) struct Invocation {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// A CLI's final `result`, as the parser read it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CliResult {
    pub reason: FinishReason,
    pub error: Option<String>,
    /// The final answer, when the CLI reports it.
    pub text: Option<String>,
    /// Tokens of the whole run, when reported.
    pub usage: Option<TokenUsage>,
    /// USD of the whole run, when reported.
    pub cost_usd: Option<f64>,
}

/// What the parsers build: the events to send and the run's totals so far.
pub(crate) struct Tracker {
    cli: Cli,
    prices: PriceTable,
    max_turns: u32,
    pub events: Vec<AgentEvent>,
    pub model: String,
    pub turns: u32,
    /// The current turn's text.
    pub text: String,
    pub usage: TokenUsage,
    pub cost_usd: f64,
    tool_names: HashMap<String, String>,
    /// The CLI began a turn beyond `max_turns`; nothing of it is reported.
    pub over_max_turns: bool,
    pub result: Option<CliResult>,
    /// The last error the CLI reported on the way (used when the run fails without a result).
    pub last_error: Option<String>,
}

impl Tracker {
    pub(crate) fn new(cli: Cli, prices: PriceTable, max_turns: u32) -> Self {
        Self {
            cli,
            prices,
            max_turns,
            events: Vec::new(),
            model: String::new(),
            turns: 0,
            text: String::new(),
            usage: TokenUsage::default(),
            cost_usd: 0.0,
            tool_names: HashMap::new(),
            over_max_turns: false,
            result: None,
            last_error: None,
        }
    }

    fn live(&self) -> bool {
        !self.over_max_turns
    }

    pub(crate) fn begin_turn(&mut self) {
        if !self.live() {
            return;
        }
        if self.turns >= self.max_turns {
            self.over_max_turns = true;
            return;
        }
        self.turns += 1;
        self.text.clear();
        self.events
            .push(AgentEvent::TurnStarted { turn: self.turns });
    }

    pub(crate) fn text_delta(&mut self, text: &str) {
        if !self.live() || text.is_empty() {
            return;
        }
        self.text.push_str(text);
        self.events.push(AgentEvent::TextDelta {
            turn: self.turns,
            text: text.to_owned(),
        });
    }

    pub(crate) fn tool_call(&mut self, id: &str, name: &str, arguments: serde_json::Value) {
        if !self.live() {
            return;
        }
        self.tool_names.insert(id.to_owned(), name.to_owned());
        self.events.push(AgentEvent::ToolCall {
            turn: self.turns,
            call: ToolCall {
                id: id.to_owned(),
                name: name.to_owned(),
                arguments,
            },
        });
    }

    pub(crate) fn tool_result(&mut self, id: &str, content: String, is_error: bool) {
        if !self.live() {
            return;
        }
        let name = self
            .tool_names
            .get(id)
            .cloned()
            .unwrap_or_else(|| "unknown".to_owned());
        self.events.push(AgentEvent::ToolResult {
            turn: self.turns,
            call_id: id.to_owned(),
            name,
            content,
            is_error,
        });
    }

    /// One turn's tokens; the cost is estimated with the price table.
    pub(crate) fn turn_usage(&mut self, model: Option<&str>, usage: TokenUsage) {
        if !self.live() {
            return;
        }
        if let Some(model) = model {
            self.model = model.to_owned();
        }
        let cost = self.prices.cost(
            self.cli.provider(),
            &self.model,
            &Usage {
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cache_read_tokens: usage.cache_read_tokens,
                cache_write_tokens: usage.cache_write_tokens,
            },
        );
        self.usage.add(&usage);
        self.cost_usd += cost;
        self.events.push(AgentEvent::Usage {
            turn: self.turns,
            model: self.model.clone(),
            usage,
            cost_usd: cost,
            total_cost_usd: self.cost_usd,
        });
    }
}

/// The text of a tool result that came as content blocks (`[{type: text, text}]`) or a string.
pub(crate) fn result_text(content: &serde_json::Value) -> String {
    match content {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(|t| t.as_str()))
            .collect::<Vec<_>>()
            .join("\n"),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A CLI's line parser.
enum Parser {
    Claude(claude_code::Parser),
    Gemini(gemini_cli::Parser),
}

impl Parser {
    fn line(&mut self, line: &str, tracker: &mut Tracker) {
        match self {
            Self::Claude(p) => p.line(line, tracker),
            Self::Gemini(p) => p.line(line, tracker),
        }
    }

    /// The output ended (or the run was stopped): report what is pending.
    fn end(&mut self, tracker: &mut Tracker) {
        match self {
            Self::Claude(p) => p.end(tracker),
            Self::Gemini(p) => p.end(tracker),
        }
    }
}

/// Parses a whole recorded transcript into the events a run would send before its `finished`,
/// and the result it ends with (for tests and tools that replay recorded output).
pub fn parse_transcript(
    cli: Cli,
    transcript: &str,
    prices: PriceTable,
    max_turns: u32,
) -> (Vec<AgentEvent>, Option<(FinishReason, Option<String>)>) {
    let mut tracker = Tracker::new(cli, prices, max_turns);
    let mut parser = match cli {
        Cli::ClaudeCode => Parser::Claude(claude_code::Parser::default()),
        Cli::GeminiCli => Parser::Gemini(gemini_cli::Parser::default()),
    };
    for line in transcript.lines() {
        parser.line(line, &mut tracker);
    }
    parser.end(&mut tracker);
    let result = tracker.result.map(|r| (r.reason, r.error));
    (tracker.events, result)
}

/// One line of a CLI's JSON output as its event type; `None` for a blank line or one that is
/// not an event (logged at debug: CLIs print other lines too).
pub(crate) fn event_of<T: serde::de::DeserializeOwned>(line: &str, cli: &str) -> Option<T> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    match serde_json::from_str(line) {
        Ok(event) => Some(event),
        Err(e) => {
            tracing::debug!(error = %e, cli, "a line that is not an event");
            None
        }
    }
}
