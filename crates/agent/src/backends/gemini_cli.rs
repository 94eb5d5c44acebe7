//! The Gemini CLI as a backend: its command line (`gemini -p … --output-format stream-json`,
//! the model, the tools it may run without asking; never `--yolo`), the settings it reads
//! (a system settings file through `GEMINI_CLI_SYSTEM_SETTINGS_PATH`, which overrides the user's
//! and the workspace's: the turn limit `model.maxSessionTurns`, API-key auth, kodiai's MCP
//! servers, no telemetry or update checks) and the parser of its output.
//!
//! The output is one JSON object a line: `init` (session and model), `message` (`role` user or
//! assistant; assistant text comes in `delta` pieces), `tool_use` (`tool_name`, `tool_id`,
//! `parameters`), `tool_result` (`tool_id`, `status` success or error, `output` or `error`),
//! `error` (warnings and errors on the way) and a last `result` (`status`, `error`, `stats` with
//! the run's tokens). The CLI marks no turns, so a turn starts with the first answer text or
//! tool call after the start or after tool results; it reports tokens only for the whole run,
//! so the cost (and the budget) is known at its end. It has no system prompt flag: kodiai's
//! system prompt goes ahead of the instructions. Exit code 53 means the turn limit was hit.

use std::path::Path;

use kodiai_protocol::{FinishReason, TokenUsage};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{CliResult, CliTask, Invocation, McpServers, Tracker};

/// The CLI's exit code when `maxSessionTurns` was reached.
pub(crate) const EXIT_MAX_TURNS: i32 = 53;

/// The command line, and the settings file written into `scratch`.
pub(crate) fn invocation(
    task: &CliTask,
    mcp_servers: &McpServers,
    scratch: &Path,
    home: &Path,
) -> std::io::Result<Invocation> {
    let settings = scratch.join("gemini-settings.json");
    std::fs::write(
        &settings,
        serde_json::to_vec_pretty(&json!({
            "model": { "maxSessionTurns": task.limits.max_turns },
            "security": { "auth": { "selectedType": "gemini-api-key" } },
            "tools": { "allowed": task.allowed_tools },
            "mcpServers": mcp_servers,
            "privacy": { "usageStatisticsEnabled": false },
            "general": { "enableAutoUpdate": false, "enableAutoUpdateNotification": false },
        }))?,
    )?;
    let prompt = if task.system.is_empty() {
        task.instructions.clone()
    } else {
        format!("{}\n\n{}", task.system, task.instructions)
    };
    let mut args: Vec<String> = vec![
        "-p".into(),
        prompt,
        "--output-format".into(),
        "stream-json".into(),
    ];
    if let Some(model) = &task.model {
        args.extend(["--model".into(), model.clone()]);
    }
    if !task.allowed_tools.is_empty() {
        args.extend(["--allowed-tools".into(), task.allowed_tools.join(",")]);
    }
    if !mcp_servers.is_empty() {
        let names: Vec<&str> = mcp_servers.keys().map(String::as_str).collect();
        args.extend(["--allowed-mcp-server-names".into(), names.join(",")]);
    }
    Ok(Invocation {
        args,
        env: vec![
            ("GEMINI_CLI_HOME".into(), home.display().to_string()),
            (
                "GEMINI_CLI_SYSTEM_SETTINGS_PATH".into(),
                settings.display().to_string(),
            ),
            ("NO_BROWSER".into(), "true".into()),
        ],
    })
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    Init {
        #[serde(default)]
        model: Option<String>,
    },
    Message {
        role: String,
        #[serde(default)]
        content: String,
    },
    ToolUse {
        tool_name: String,
        tool_id: String,
        #[serde(default)]
        parameters: Value,
    },
    ToolResult {
        tool_id: String,
        status: String,
        #[serde(default)]
        output: Option<String>,
        #[serde(default)]
        error: Option<ErrorDetail>,
    },
    Error {
        #[serde(default)]
        severity: String,
        message: String,
    },
    Result {
        status: String,
        #[serde(default)]
        error: Option<ErrorDetail>,
        #[serde(default)]
        stats: Option<Stats>,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct Stats {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    /// Of `input_tokens`, those read from the cache.
    #[serde(default)]
    cached: u64,
    /// Of `input_tokens`, those not cached.
    #[serde(default)]
    input: Option<u64>,
}

/// The stream-json parser.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    /// A turn has begun and no tool result has come since.
    in_turn: bool,
}

impl Parser {
    fn turn(&mut self, tracker: &mut Tracker) {
        if !self.in_turn {
            tracker.begin_turn();
            self.in_turn = true;
        }
    }

    pub(crate) fn line(&mut self, line: &str, tracker: &mut Tracker) {
        let Some(parsed) = super::event_of::<Line>(line, "gemini") else {
            return;
        };
        match parsed {
            Line::Init { model } => {
                if let Some(model) = model {
                    tracker.model = model;
                }
            }
            Line::Message { role, content } => {
                if role == "assistant" {
                    self.turn(tracker);
                    tracker.text_delta(&content);
                }
            }
            Line::ToolUse {
                tool_name,
                tool_id,
                parameters,
            } => {
                self.turn(tracker);
                tracker.tool_call(&tool_id, &tool_name, parameters);
            }
            Line::ToolResult {
                tool_id,
                status,
                output,
                error,
            } => {
                let failed = status != "success";
                let content = match (output, error) {
                    (_, Some(error)) if failed => error.message,
                    (Some(output), _) => output,
                    (None, Some(error)) => error.message,
                    (None, None) => String::new(),
                };
                tracker.tool_result(&tool_id, content, failed);
                self.in_turn = false;
            }
            Line::Error { severity, message } => {
                if severity != "warning" {
                    tracker.last_error = Some(message);
                }
            }
            Line::Result {
                status,
                error,
                stats,
            } => {
                if let Some(stats) = stats {
                    let uncached = stats
                        .input
                        .unwrap_or_else(|| stats.input_tokens.saturating_sub(stats.cached));
                    let usage = TokenUsage {
                        input_tokens: uncached,
                        output_tokens: stats.output_tokens,
                        cache_read_tokens: stats.cached,
                        cache_write_tokens: 0,
                    };
                    if usage != TokenUsage::default() {
                        tracker.turn_usage(None, usage);
                    }
                }
                let (reason, error) = match (status.as_str(), error) {
                    ("success", _) => (FinishReason::Completed, None),
                    (_, Some(e)) if e.kind.contains("TurnLimit") => (FinishReason::MaxTurns, None),
                    (_, Some(e)) => (
                        FinishReason::Error,
                        Some(format!("gemini stopped with {}: {}", e.kind, e.message)),
                    ),
                    (status, None) => (
                        FinishReason::Error,
                        Some(match &tracker.last_error {
                            Some(message) => format!("gemini stopped with {status}: {message}"),
                            None => format!("gemini stopped with {status}"),
                        }),
                    ),
                };
                tracker.result = Some(CliResult {
                    reason,
                    error,
                    text: None,
                    usage: None,
                    cost_usd: None,
                });
            }
            Line::Other => {}
        }
    }

    pub(crate) fn end(&mut self, _tracker: &mut Tracker) {}
}
