//! The Claude Code CLI as a backend: its command line (`claude -p … --output-format stream-json
//! --verbose`, the turn and budget limits, the model, kodiai's system prompt appended to
//! Claude Code's, an MCP configuration of only kodiai's servers, the tools it may run) and the
//! parser of its stream-json output.
//!
//! The output is one JSON object a line: `system` (`init` names the model and tools),
//! `assistant` (one line per content block of a model answer, `text`, `tool_use` or
//! `thinking`, all lines of one answer sharing its `message.id` and usage), `user` (the
//! `tool_result` blocks of the tools Claude Code ran) and a last `result` (`subtype`
//! `success`, `error_max_turns`, `error_max_budget_usd` or `error_during_execution`, with
//! `result`, `total_cost_usd`, `usage` and `num_turns`). Lines of sub-agents
//! (`parent_tool_use_id` set) are their own conversation and are not reported as turns.

use std::path::Path;

use kodiai_protocol::{FinishReason, TokenUsage};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{CliResult, CliTask, Invocation, McpServers, Tracker, result_text};

/// The command line, and `mcp.json` (`mcp_servers`) written into `scratch`.
pub(crate) fn invocation(
    task: &CliTask,
    mcp_servers: &McpServers,
    scratch: &Path,
) -> std::io::Result<Invocation> {
    let mcp_config = scratch.join("mcp.json");
    std::fs::write(
        &mcp_config,
        serde_json::to_vec_pretty(&json!({ "mcpServers": mcp_servers }))?,
    )?;
    let mut allowed = task.allowed_tools.clone();
    allowed.extend(mcp_servers.keys().map(|server| format!("mcp__{server}")));
    let mut args: Vec<String> = vec![
        "-p".into(),
        task.instructions.clone(),
        "--output-format".into(),
        "stream-json".into(),
        "--verbose".into(),
        "--max-turns".into(),
        task.limits.max_turns.to_string(),
    ];
    if let Some(model) = &task.model {
        args.extend(["--model".into(), model.clone()]);
    }
    if !task.system.is_empty() {
        args.extend(["--append-system-prompt".into(), task.system.clone()]);
    }
    args.extend([
        "--mcp-config".into(),
        mcp_config.display().to_string(),
        // Only kodiai's servers, and only the (empty, throw-away) user settings: a
        // repository's own `.claude/` settings and hooks are untrusted input.
        "--strict-mcp-config".into(),
        "--setting-sources".into(),
        "user".into(),
        "--allowedTools".into(),
        allowed.join(","),
    ]);
    if let Some(budget) = task.limits.budget_usd {
        args.extend(["--max-budget-usd".into(), format!("{budget}")]);
    }
    Ok(Invocation {
        args,
        env: vec![
            (
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
                "1".into(),
            ),
            ("DISABLE_AUTOUPDATER".into(), "1".into()),
        ],
    })
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    System {
        #[serde(default)]
        subtype: String,
        #[serde(default)]
        model: Option<String>,
    },
    Assistant {
        message: AssistantMessage,
        #[serde(default)]
        parent_tool_use_id: Option<String>,
    },
    User {
        message: UserMessage,
        #[serde(default)]
        parent_tool_use_id: Option<String>,
    },
    Result {
        #[serde(default)]
        subtype: String,
        #[serde(default)]
        is_error: bool,
        #[serde(default)]
        result: Option<String>,
        #[serde(default)]
        total_cost_usd: Option<f64>,
        #[serde(default)]
        usage: Option<ClaudeUsage>,
        #[serde(default)]
        errors: Vec<Value>,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct AssistantMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Vec<Block>,
    #[serde(default)]
    usage: Option<ClaudeUsage>,
}

#[derive(Debug, Deserialize)]
struct UserMessage {
    #[serde(default)]
    content: UserContent,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum UserContent {
    Blocks(Vec<Block>),
    /// The prompt echoed back as a string: nothing to report.
    Other(serde::de::IgnoredAny),
}

impl Default for UserContent {
    fn default() -> Self {
        Self::Blocks(Vec::new())
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Value,
        #[serde(default)]
        is_error: Option<bool>,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
struct ClaudeUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: u64,
}

impl From<ClaudeUsage> for TokenUsage {
    fn from(u: ClaudeUsage) -> Self {
        Self {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cache_read_tokens: u.cache_read_input_tokens,
            cache_write_tokens: u.cache_creation_input_tokens,
        }
    }
}

/// The stream-json parser: one model answer is one turn, whatever number of lines it takes.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    /// The `message.id` of the answer being read.
    message_id: Option<String>,
    /// The model and latest usage of that answer, reported when it ends.
    pending_usage: Option<(Option<String>, ClaudeUsage)>,
}

impl Parser {
    fn flush_usage(&mut self, tracker: &mut Tracker) {
        if let Some((model, usage)) = self.pending_usage.take() {
            tracker.turn_usage(model.as_deref(), usage.into());
        }
    }

    pub(crate) fn line(&mut self, line: &str, tracker: &mut Tracker) {
        let Some(parsed) = super::event_of::<Line>(line, "claude") else {
            return;
        };
        match parsed {
            Line::System { subtype, model } => {
                if subtype == "init"
                    && let Some(model) = model
                {
                    tracker.model = model;
                }
            }
            Line::Assistant {
                message,
                parent_tool_use_id: None,
            } => {
                if self.message_id.as_deref() != Some(message.id.as_str()) {
                    self.flush_usage(tracker);
                    tracker.begin_turn();
                    self.message_id = Some(message.id);
                }
                for block in message.content {
                    match block {
                        Block::Text { text } => tracker.text_delta(&text),
                        Block::ToolUse { id, name, input } => tracker.tool_call(&id, &name, input),
                        Block::ToolResult { .. } | Block::Other => {}
                    }
                }
                if let Some(usage) = message.usage {
                    self.pending_usage = Some((message.model, usage));
                }
            }
            Line::User {
                message,
                parent_tool_use_id: None,
            } => {
                self.flush_usage(tracker);
                if let UserContent::Blocks(blocks) = message.content {
                    for block in blocks {
                        if let Block::ToolResult {
                            tool_use_id,
                            content,
                            is_error,
                        } = block
                        {
                            tracker.tool_result(
                                &tool_use_id,
                                result_text(&content),
                                is_error.unwrap_or(false),
                            );
                        }
                    }
                }
            }
            Line::Assistant { .. } | Line::User { .. } | Line::Other => {}
            Line::Result {
                subtype,
                is_error,
                result,
                total_cost_usd,
                usage,
                errors,
            } => {
                self.flush_usage(tracker);
                let (reason, error) = match subtype.as_str() {
                    "success" if !is_error => (FinishReason::Completed, None),
                    "error_max_turns" => (FinishReason::MaxTurns, None),
                    "error_max_budget_usd" => (FinishReason::Budget, None),
                    _ => {
                        let detail: Vec<String> = errors.iter().map(result_text).collect();
                        let detail = if detail.is_empty() {
                            result.clone().unwrap_or_default()
                        } else {
                            detail.join("; ")
                        };
                        let message = if detail.is_empty() {
                            format!("claude stopped with {subtype}")
                        } else {
                            format!("claude stopped with {subtype}: {detail}")
                        };
                        (FinishReason::Error, Some(message))
                    }
                };
                tracker.result = Some(CliResult {
                    reason,
                    error,
                    text: result.filter(|_| reason == FinishReason::Completed),
                    usage: usage.map(Into::into),
                    cost_usd: total_cost_usd,
                });
            }
        }
    }

    pub(crate) fn end(&mut self, tracker: &mut Tracker) {
        self.flush_usage(tracker);
    }
}
