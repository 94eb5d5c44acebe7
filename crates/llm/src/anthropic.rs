//! The Anthropic Messages API (`POST {base}/v1/messages`, streamed): text, extended thinking,
//! parallel `tool_use` blocks with their arguments in `input_json_delta` pieces, `tool_result`
//! blocks, and prompt caching on the system prompt, the tools and the newest message.

use std::collections::BTreeMap;

use futures::FutureExt;
use futures::future::BoxFuture;
use kodiai_protocol::ToolCall;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::Provider;
use crate::error::{self, Error, Result};
use crate::http::{Decoder, EventStream, Timeouts, Transport, decode_sse};
use crate::types::{ChatRequest, ContentBlock, Role, StopReason, StreamEvent, Usage};

const NAME: &str = "anthropic";
/// The API version this client is written against.
pub const API_VERSION: &str = "2023-06-01";
/// The betas that let a Claude Code OAuth token call the API.
const OAUTH_BETA: &str = "claude-code-20250219,oauth-2025-04-20";
/// The API refuses OAuth-token requests to most models unless the system prompt's first entry
/// is exactly this (anthropics/claude-code#40515); the token is Claude Code's credential.
pub const OAUTH_SYSTEM_IDENTITY: &str = "You are Claude Code, Anthropic's official CLI for Claude.";

/// How the client proves who it is.
#[derive(Debug, Clone)]
pub enum AnthropicAuth {
    /// `x-api-key` (`ANTHROPIC_API_KEY`).
    ApiKey(SecretString),
    /// `Authorization: Bearer` (`CLAUDE_CODE_OAUTH_TOKEN`).
    OAuth(SecretString),
}

#[derive(Debug, Clone)]
pub struct Anthropic {
    /// Without `/v1`, as the official SDKs take `ANTHROPIC_BASE_URL`.
    base_url: url::Url,
    auth: AnthropicAuth,
    transport: Transport,
}

impl Anthropic {
    pub fn new(base_url: url::Url, auth: AnthropicAuth, timeouts: Timeouts) -> Result<Self> {
        Ok(Self {
            base_url,
            auth,
            transport: Transport::new(timeouts)?,
        })
    }

    fn url(&self) -> String {
        format!(
            "{}/v1/messages",
            self.base_url.as_str().trim_end_matches('/')
        )
    }

    async fn open(&self, request: &ChatRequest) -> Result<EventStream> {
        let mut body = request_body(request);
        if matches!(self.auth, AnthropicAuth::OAuth(_)) {
            let identity = json!({"type": "text", "text": OAUTH_SYSTEM_IDENTITY});
            match body.get_mut("system").and_then(Value::as_array_mut) {
                Some(system) => system.insert(0, identity),
                None => body["system"] = json!([identity]),
            }
        }
        let mut http = self
            .transport
            .client
            .post(self.url())
            .header("anthropic-version", API_VERSION)
            .header("accept", "text/event-stream")
            .json(&body);
        http = match &self.auth {
            AnthropicAuth::ApiKey(key) => http.header("x-api-key", key.expose_secret()),
            AnthropicAuth::OAuth(token) => http
                .bearer_auth(token.expose_secret())
                .header("anthropic-beta", OAUTH_BETA),
        };
        let response = self.transport.send(NAME, http).await?;
        Ok(decode_sse(
            NAME,
            response,
            self.transport.timeouts,
            AnthropicDecoder::default(),
        ))
    }
}

impl Provider for Anthropic {
    fn name(&self) -> &str {
        NAME
    }

    fn stream<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<EventStream>> {
        self.open(request).boxed()
    }
}

/// The request body of `POST /v1/messages`.
pub fn request_body(request: &ChatRequest) -> Value {
    let ephemeral = json!({"type": "ephemeral"});
    let mut messages: Vec<Value> = request
        .messages
        .iter()
        .map(|m| {
            let content: Vec<Value> = m.content.iter().map(block).collect();
            json!({
                "role": match m.role { Role::User => "user", Role::Assistant => "assistant" },
                "content": content,
            })
        })
        .collect();
    // A cache breakpoint on the newest message: the next turn of an agent loop reads the whole
    // conversation so far from the cache.
    if let Some(last) = messages
        .last_mut()
        .and_then(|m| m.get_mut("content"))
        .and_then(Value::as_array_mut)
        .and_then(|blocks| blocks.last_mut())
        && matches!(
            last.get("type").and_then(Value::as_str),
            Some("text" | "tool_result")
        )
    {
        last["cache_control"] = ephemeral.clone();
    }
    let mut body = json!({
        "model": request.settings.model,
        "max_tokens": request.settings.max_tokens,
        "messages": messages,
        "stream": true,
    });
    if !request.system.is_empty() {
        body["system"] = json!([{
            "type": "text",
            "text": request.system,
            "cache_control": ephemeral,
        }]);
    }
    if !request.tools.is_empty() {
        let count = request.tools.len();
        let tools: Vec<Value> = request
            .tools
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut tool = json!({
                    "name": t.name,
                    "description": t.description,
                    "input_schema": t.input_schema,
                });
                // One breakpoint after the last tool caches every tool definition.
                if i + 1 == count {
                    tool["cache_control"] = ephemeral.clone();
                }
                tool
            })
            .collect();
        body["tools"] = Value::Array(tools);
    }
    match request.settings.thinking_budget {
        Some(budget) => {
            body["thinking"] = json!({"type": "enabled", "budget_tokens": budget});
            // The API wants max_tokens above the thinking budget: the budget comes on top of
            // the answer's own limit. Temperature cannot be set with thinking on.
            if budget >= request.settings.max_tokens {
                body["max_tokens"] = json!(budget.saturating_add(request.settings.max_tokens));
            }
        }
        None => {
            if let Some(t) = request.settings.temperature {
                body["temperature"] = json!(t);
            }
        }
    }
    body
}

fn block(block: &ContentBlock) -> Value {
    match block {
        ContentBlock::Text { text } => json!({"type": "text", "text": text}),
        ContentBlock::Thinking {
            thinking,
            signature,
        } => {
            json!({"type": "thinking", "thinking": thinking, "signature": signature.clone().unwrap_or_default()})
        }
        ContentBlock::ToolUse(call) => json!({
            "type": "tool_use",
            "id": call.id,
            "name": call.name,
            "input": call.arguments,
        }),
        ContentBlock::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => {
            let mut result = json!({
                "type": "tool_result",
                "tool_use_id": tool_use_id,
                "content": content,
            });
            if *is_error {
                result["is_error"] = json!(true);
            }
            result
        }
    }
}

/// A content block being streamed.
enum Open {
    Text,
    Thinking {
        text: String,
        signature: String,
    },
    Tool {
        id: String,
        name: String,
        json: String,
    },
    /// `redacted_thinking` and block types this version does not know: skipped.
    Other,
}

#[derive(Default)]
struct AnthropicDecoder {
    blocks: BTreeMap<u64, Open>,
    usage: Usage,
    model: String,
    stop_reason: Option<StopReason>,
    started: bool,
    done: bool,
}

fn parse(data: &str) -> Result<Value> {
    serde_json::from_str(data)
        .map_err(|e| Error::bad_response(NAME, format!("an event is not JSON: {e}")))
}

fn str_at<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn read_usage(usage: &Value, into: &mut Usage) {
    let n = |key: &str| usage.get(key).and_then(Value::as_u64);
    if let Some(v) = n("input_tokens") {
        into.input_tokens = v;
    }
    if let Some(v) = n("output_tokens") {
        into.output_tokens = v;
    }
    if let Some(v) = n("cache_read_input_tokens") {
        into.cache_read_tokens = v;
    }
    if let Some(v) = n("cache_creation_input_tokens") {
        into.cache_write_tokens = v;
    }
}

impl Decoder for AnthropicDecoder {
    fn event(&mut self, name: &str, data: &str, out: &mut Vec<StreamEvent>) -> Result<()> {
        // The event name repeats the data's `type`; the data is authoritative.
        if name == "ping" || data.trim().is_empty() {
            return Ok(());
        }
        let value = parse(data)?;
        let index = value.get("index").and_then(Value::as_u64).unwrap_or(0);
        match str_at(&value, "type") {
            "message_start" => {
                self.started = true;
                let message = value.get("message").unwrap_or(&Value::Null);
                self.model = str_at(message, "model").to_owned();
                if let Some(usage) = message.get("usage") {
                    read_usage(usage, &mut self.usage);
                }
            }
            "content_block_start" => {
                let block = value.get("content_block").unwrap_or(&Value::Null);
                let open = match str_at(block, "type") {
                    "text" => {
                        let text = str_at(block, "text");
                        if !text.is_empty() {
                            out.push(StreamEvent::TextDelta(text.to_owned()));
                        }
                        Open::Text
                    }
                    "thinking" => Open::Thinking {
                        text: str_at(block, "thinking").to_owned(),
                        signature: String::new(),
                    },
                    "tool_use" => Open::Tool {
                        id: str_at(block, "id").to_owned(),
                        name: str_at(block, "name").to_owned(),
                        json: String::new(),
                    },
                    _ => Open::Other,
                };
                self.blocks.insert(index, open);
            }
            "content_block_delta" => {
                let delta = value.get("delta").unwrap_or(&Value::Null);
                let Some(open) = self.blocks.get_mut(&index) else {
                    return Err(Error::bad_response(
                        NAME,
                        format!("a delta for block {index}, which was never started"),
                    ));
                };
                match (str_at(delta, "type"), open) {
                    ("text_delta", Open::Text) => {
                        out.push(StreamEvent::TextDelta(str_at(delta, "text").to_owned()));
                    }
                    ("thinking_delta", Open::Thinking { text, .. }) => {
                        let piece = str_at(delta, "thinking");
                        text.push_str(piece);
                        out.push(StreamEvent::ThinkingDelta(piece.to_owned()));
                    }
                    ("signature_delta", Open::Thinking { signature, .. }) => {
                        signature.push_str(str_at(delta, "signature"));
                    }
                    ("input_json_delta", Open::Tool { json, .. }) => {
                        json.push_str(str_at(delta, "partial_json"));
                    }
                    (_, Open::Other) => {}
                    (other, _) => {
                        return Err(Error::bad_response(
                            NAME,
                            format!("a {other} for block {index} of another type"),
                        ));
                    }
                }
            }
            "content_block_stop" => match self.blocks.remove(&index) {
                Some(Open::Thinking { text, signature }) => out.push(StreamEvent::Thinking {
                    thinking: text,
                    signature: (!signature.is_empty()).then_some(signature),
                }),
                Some(Open::Tool { id, name, json }) => {
                    let arguments = if json.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&json).map_err(|e| {
                            Error::bad_response(
                                NAME,
                                format!("the arguments of tool call {id} are not JSON: {e}"),
                            )
                        })?
                    };
                    out.push(StreamEvent::ToolCall(ToolCall {
                        id,
                        name,
                        arguments,
                    }));
                }
                Some(Open::Text | Open::Other) | None => {}
            },
            "message_delta" => {
                if let Some(reason) = value
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                {
                    self.stop_reason = Some(stop_reason(reason));
                }
                if let Some(usage) = value.get("usage") {
                    read_usage(usage, &mut self.usage);
                }
            }
            "message_stop" => {
                if !self.started {
                    return Err(Error::bad_response(
                        NAME,
                        "message_stop before message_start",
                    ));
                }
                self.done = true;
                out.push(StreamEvent::Finished {
                    stop_reason: self.stop_reason.take().unwrap_or(StopReason::EndTurn),
                    usage: self.usage,
                    model: std::mem::take(&mut self.model),
                });
            }
            "error" => {
                let error = value.get("error").unwrap_or(&Value::Null);
                return Err(error::from_stream_error(
                    NAME,
                    str_at(error, "type"),
                    str_at(error, "message").to_owned(),
                ));
            }
            // `ping` and event types added after this version.
            _ => {}
        }
        Ok(())
    }

    fn end(&mut self, _out: &mut Vec<StreamEvent>) -> Result<()> {
        if self.done {
            return Ok(());
        }
        Err(Error::bad_response(
            NAME,
            "the stream ended before message_stop (the answer is incomplete)",
        ))
    }

    fn done(&self) -> bool {
        self.done
    }
}

fn stop_reason(reason: &str) -> StopReason {
    match reason {
        "end_turn" => StopReason::EndTurn,
        "tool_use" => StopReason::ToolUse,
        "max_tokens" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "refusal" => StopReason::Refusal,
        other => StopReason::Other(other.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Message, ModelSettings};

    #[test]
    fn thinking_gets_room_above_its_budget_and_no_temperature() {
        let request = ChatRequest {
            system: String::new(),
            messages: vec![Message::user("think")],
            tools: Vec::new(),
            settings: ModelSettings {
                max_tokens: 4096,
                temperature: Some(0.5),
                thinking_budget: Some(8000),
                ..ModelSettings::new("m")
            },
        };
        let body = request_body(&request);
        assert_eq!(
            body["thinking"],
            json!({"type": "enabled", "budget_tokens": 8000})
        );
        assert_eq!(body["max_tokens"], 12096);
        assert!(body.get("temperature").is_none());
        assert!(body.get("system").is_none());
    }
}
