//! The normalized conversation every provider speaks: messages of content blocks, tool specs and
//! calls (from `kodiai-protocol`), model settings, the events of a streamed answer, usage and
//! stop reasons. The agent builds its loop on these without knowing which API is behind them.

use kodiai_protocol::{ToolCall, ToolSpec};
use serde::{Deserialize, Serialize};

/// Who wrote a message. Tool results travel in `User` messages (as the Anthropic API has them);
/// each provider maps them to its own form (OpenAI `tool` messages, Gemini `functionResponse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The person or the agent loop: prompts and tool results.
    User,
    /// The model: text, thinking and tool calls.
    Assistant,
}

/// One piece of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// Plain text.
    Text { text: String },
    /// The model's visible reasoning. `signature` (Anthropic) must be sent back unchanged with
    /// the rest of the turn; providers that do not take thinking back drop the block.
    Thinking {
        thinking: String,
        signature: Option<String>,
    },
    /// A tool call of the model, with its complete arguments.
    ToolUse(ToolCall),
    /// The result of running a tool call of the previous assistant message.
    ToolResult {
        /// The [`ToolCall::id`] this answers.
        tool_use_id: String,
        /// What the tool returned (or its error message), as text for the model.
        content: String,
        /// The tool failed; the model sees the error and may try again.
        is_error: bool,
    },
}

impl ContentBlock {
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text { text: text.into() }
    }

    pub fn tool_result(tool_use_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self::ToolResult {
            tool_use_id: tool_use_id.into(),
            content: content.into(),
            is_error: false,
        }
    }
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentBlock>,
}

impl Message {
    /// A user message with one text block.
    pub fn user(text: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: vec![ContentBlock::text(text)],
        }
    }

    /// An assistant message with one text block.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: vec![ContentBlock::text(text)],
        }
    }

    /// The tool calls in this message, in order.
    pub fn tool_calls(&self) -> impl Iterator<Item = &ToolCall> {
        self.content.iter().filter_map(|block| match block {
            ContentBlock::ToolUse(call) => Some(call),
            _ => None,
        })
    }

    /// The text blocks of this message, joined.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|block| match block {
                ContentBlock::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// How the model is asked to answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSettings {
    /// The provider's model name (without the `provider/` prefix).
    pub model: String,
    /// Output tokens at most.
    pub max_tokens: u32,
    pub temperature: Option<f64>,
    /// Tokens the model may spend thinking before it answers (Anthropic extended thinking,
    /// Gemini's thinking budget); `None` leaves it to the model's default.
    pub thinking_budget: Option<u32>,
}

impl ModelSettings {
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            max_tokens: 8192,
            temperature: None,
            thinking_budget: None,
        }
    }
}

/// One request to a model: everything a provider needs to make one call.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub system: String,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub settings: ModelSettings,
}

/// Tokens of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens that were neither read from nor written to the prompt cache.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache (billed at the cache-read price).
    pub cache_read_tokens: u64,
    /// Input tokens written to the prompt cache (Anthropic; billed at the cache-write price).
    pub cache_write_tokens: u64,
}

impl Usage {
    /// Every input token, cached or not.
    pub fn total_input(&self) -> u64 {
        self.input_tokens + self.cache_read_tokens + self.cache_write_tokens
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// It finished its answer.
    EndTurn,
    /// It wants the tool calls of this message run.
    ToolUse,
    /// It hit `max_tokens`.
    MaxTokens,
    /// It produced a stop sequence.
    StopSequence,
    /// It refused, or a safety filter stopped it.
    Refusal,
    /// A reason this version does not know, as the provider wrote it.
    Other(String),
}

impl StopReason {
    /// The snake_case name (`end_turn`, `tool_use`, …), or the provider's own for `Other`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::EndTurn => "end_turn",
            Self::ToolUse => "tool_use",
            Self::MaxTokens => "max_tokens",
            Self::StopSequence => "stop_sequence",
            Self::Refusal => "refusal",
            Self::Other(reason) => reason,
        }
    }
}

/// One event of a streamed answer. A stream that ends without [`StreamEvent::Finished`] ended
/// with an error (the stream's last item is then an `Err`).
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A piece of the answer's text.
    TextDelta(String),
    /// A piece of the model's reasoning, for live display.
    ThinkingDelta(String),
    /// A complete thinking block, to keep in the conversation (it follows its deltas).
    Thinking {
        thinking: String,
        signature: Option<String>,
    },
    /// A complete tool call, its JSON arguments parsed.
    ToolCall(ToolCall),
    /// The end of the answer, with the tokens of the whole call.
    Finished {
        stop_reason: StopReason,
        usage: Usage,
        /// The model that answered, as the provider names it.
        model: String,
    },
}

/// A complete answer, as [`crate::Provider::complete`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    /// The assistant message to append to the conversation.
    pub message: Message,
    pub stop_reason: StopReason,
    pub usage: Usage,
    pub model: String,
}

/// Folds stream events into a [`ChatResponse`]; the agent uses it while it forwards the events.
#[derive(Debug, Default)]
pub struct ResponseBuilder {
    content: Vec<ContentBlock>,
    finished: Option<(StopReason, Usage, String)>,
}

impl ResponseBuilder {
    pub fn push(&mut self, event: &StreamEvent) {
        match event {
            StreamEvent::TextDelta(delta) => match self.content.last_mut() {
                Some(ContentBlock::Text { text }) => text.push_str(delta),
                _ => self.content.push(ContentBlock::text(delta.clone())),
            },
            StreamEvent::ThinkingDelta(_) => {}
            StreamEvent::Thinking {
                thinking,
                signature,
            } => self.content.push(ContentBlock::Thinking {
                thinking: thinking.clone(),
                signature: signature.clone(),
            }),
            StreamEvent::ToolCall(call) => self.content.push(ContentBlock::ToolUse(call.clone())),
            StreamEvent::Finished {
                stop_reason,
                usage,
                model,
            } => self.finished = Some((stop_reason.clone(), *usage, model.clone())),
        }
    }

    /// The response, or `None` when no [`StreamEvent::Finished`] was seen.
    pub fn finish(self) -> Option<ChatResponse> {
        let (stop_reason, usage, model) = self.finished?;
        Some(ChatResponse {
            message: Message {
                role: Role::Assistant,
                content: self.content,
            },
            stop_reason,
            usage,
            model,
        })
    }
}
