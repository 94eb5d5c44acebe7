//! The agent's events on the wire: what one run of the agent loop reports as it goes (a turn
//! started, a piece of text, a tool call and its result, the tokens of a model call, an error)
//! and how it ended ([`FinishReason`]). The engine streams them; `kodiai run` prints them, and the
//! jobs and the API will store and stream the same values.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::tools::ToolCall;

/// One step of an agent run. A run's last event is always [`AgentEvent::Finished`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    /// A model call begins; turns count from 1.
    TurnStarted { turn: u32 },
    /// A piece of the model's answer text, as it streams.
    TextDelta { turn: u32, text: String },
    /// The model asked for a tool to be run (its arguments complete).
    ToolCall { turn: u32, call: ToolCall },
    /// What a tool call gave back to the model.
    ToolResult {
        turn: u32,
        /// The [`ToolCall::id`] this answers.
        call_id: String,
        /// The tool that ran.
        name: String,
        /// The text the model reads (the error message when `is_error`).
        content: String,
        /// The call failed in a way the model was told about (bad arguments, a refused path).
        is_error: bool,
    },
    /// The tokens and cost of one model call, and the run's total cost so far.
    Usage {
        turn: u32,
        /// The model that answered, as the provider names it.
        model: String,
        usage: TokenUsage,
        /// USD of this call (0 for a model without a known price).
        cost_usd: f64,
        /// USD of every call of the run so far.
        total_cost_usd: f64,
    },
    /// Something failed (the model call, a tool's broken invariant); a `finished` event with
    /// reason `error` follows.
    Error { message: String },
    /// The run ended; nothing follows.
    Finished {
        reason: FinishReason,
        /// Model calls made.
        turns: u32,
        /// Tokens of every call of the run.
        usage: TokenUsage,
        /// USD of every call of the run.
        cost_usd: f64,
        /// The model's last answer text (the part streamed so far when the run was stopped
        /// in the middle of it).
        text: String,
    },
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model answered without asking for tools: the task is done.
    Completed,
    /// The run used its `max_turns` model calls and the model still wanted tools.
    MaxTurns,
    /// The run's time limit passed.
    Timeout,
    /// The run's cost reached its budget.
    Budget,
    /// The caller cancelled the run.
    Cancelled,
    /// A model call failed or a tool hit a broken invariant (see the `error` event before).
    Error,
}

impl FinishReason {
    /// The snake_case name, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::MaxTurns => "max_turns",
            Self::Timeout => "timeout",
            Self::Budget => "budget",
            Self::Cancelled => "cancelled",
            Self::Error => "error",
        }
    }
}

impl std::fmt::Display for FinishReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tokens, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenUsage {
    /// Input tokens neither read from nor written to the prompt cache.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write_tokens: u64,
}

impl TokenUsage {
    /// Adds another call's tokens.
    pub fn add(&mut self, other: &TokenUsage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_tokens += other.cache_read_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
    }

    /// Every input token, cached or not.
    pub fn total_input(&self) -> u64 {
        self.input_tokens + self.cache_read_tokens + self.cache_write_tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_by_type_in_snake_case() {
        let event = AgentEvent::Finished {
            reason: FinishReason::MaxTurns,
            turns: 3,
            usage: TokenUsage::default(),
            cost_usd: 0.5,
            text: "partial".into(),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "finished");
        assert_eq!(json["reason"], "max_turns");
        assert_eq!(serde_json::from_value::<AgentEvent>(json).unwrap(), event);
        let call = AgentEvent::ToolCall {
            turn: 1,
            call: ToolCall {
                id: "c1".into(),
                name: "read_file".into(),
                arguments: serde_json::json!({"path": "a"}),
            },
        };
        let json = serde_json::to_value(&call).unwrap();
        assert_eq!(json["type"], "tool_call");
        assert_eq!(json["call"]["name"], "read_file");
    }
}
