//! OpenAI-compatible Chat Completions (`POST {base}/chat/completions`, streamed), as OpenAI,
//! Azure OpenAI, OpenRouter, Ollama, vLLM and llama.cpp's server speak it: `delta.tool_calls`
//! merged by index, usage in the last chunk (`stream_options.include_usage`), `[DONE]`.

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

/// Where an OpenAI-compatible server is and how it wants to be called.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// The provider's name in `provider/model` and in the accounting (`openai`, `ollama`, …).
    pub name: String,
    /// With `/v1`, as the official SDKs take `OPENAI_BASE_URL` (`https://api.openai.com/v1`).
    /// For Azure: the resource endpoint (`https://NAME.openai.azure.com`), or a deployment URL.
    pub base_url: url::Url,
    /// `None` for local servers that take no key (Ollama, llama.cpp).
    pub api_key: Option<SecretString>,
    /// Azure OpenAI's `api-version`; when set, the URL is
    /// `{base}/openai/deployments/{model}/chat/completions?api-version=…`.
    pub azure_api_version: Option<String>,
}

impl OpenAiConfig {
    /// Azure takes its key in an `api-key` header instead of a bearer token.
    fn is_azure(&self) -> bool {
        self.azure_api_version.is_some()
            || self.base_url.host_str().is_some_and(|h| {
                h.ends_with(".openai.azure.com") || h.ends_with(".cognitiveservices.azure.com")
            })
    }

    /// OpenAI's own API (and Azure's) take `max_completion_tokens` and reject `max_tokens` for
    /// reasoning models; the compatible servers know `max_tokens`.
    fn is_openai(&self) -> bool {
        self.is_azure() || self.base_url.host_str() == Some("api.openai.com")
    }
}

#[derive(Debug, Clone)]
pub struct OpenAi {
    config: OpenAiConfig,
    transport: Transport,
}

impl OpenAi {
    pub fn new(config: OpenAiConfig, timeouts: Timeouts) -> Result<Self> {
        Ok(Self {
            config,
            transport: Transport::new(timeouts)?,
        })
    }

    fn url(&self, model: &str) -> Result<url::Url> {
        let base = self.config.base_url.as_str().trim_end_matches('/');
        let text = match &self.config.azure_api_version {
            Some(_) if base.contains("/openai/deployments/") => format!("{base}/chat/completions"),
            Some(_) => format!("{base}/openai/deployments/{model}/chat/completions"),
            None => format!("{base}/chat/completions"),
        };
        let mut url = url::Url::parse(&text)
            .map_err(|e| Error::Config(format!("{}: bad base URL: {e}", self.config.name)))?;
        if let Some(version) = &self.config.azure_api_version {
            url.query_pairs_mut().append_pair("api-version", version);
        }
        Ok(url)
    }

    async fn open(&self, request: &ChatRequest) -> Result<EventStream> {
        let name = self.config.name.as_str();
        let body = request_body(request, self.config.is_openai());
        let mut http = self
            .transport
            .client
            .post(self.url(&request.settings.model)?)
            .header("accept", "text/event-stream")
            .json(&body);
        if let Some(key) = &self.config.api_key {
            http = if self.config.is_azure() {
                http.header("api-key", key.expose_secret())
            } else {
                http.bearer_auth(key.expose_secret())
            };
        }
        let response = self.transport.send(name, http).await?;
        Ok(decode_sse(
            name,
            response,
            self.transport.timeouts,
            OpenAiDecoder {
                name: name.to_owned(),
                model: request.settings.model.clone(),
                ..OpenAiDecoder::default()
            },
        ))
    }
}

impl Provider for OpenAi {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn stream<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<EventStream>> {
        self.open(request).boxed()
    }
}

/// The request body of `POST /chat/completions`. `openai_limits`: name the output limit
/// `max_completion_tokens` (OpenAI, Azure) rather than `max_tokens`.
pub fn request_body(request: &ChatRequest, openai_limits: bool) -> Value {
    let mut messages = Vec::new();
    if !request.system.is_empty() {
        messages.push(json!({"role": "system", "content": request.system}));
    }
    for message in &request.messages {
        match message.role {
            Role::Assistant => {
                let text = message.text();
                let calls: Vec<Value> = message
                    .tool_calls()
                    .map(|call| {
                        json!({
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments.to_string()},
                        })
                    })
                    .collect();
                let mut m = json!({
                    "role": "assistant",
                    "content": if text.is_empty() { Value::Null } else { Value::String(text) },
                });
                if !calls.is_empty() {
                    m["tool_calls"] = Value::Array(calls);
                }
                messages.push(m);
            }
            Role::User => {
                // Tool results are messages of their own, right after the assistant's calls;
                // the rest of the user's text follows them.
                let mut text = String::new();
                for block in &message.content {
                    match block {
                        ContentBlock::ToolResult {
                            tool_use_id,
                            content,
                            is_error,
                        } => messages.push(json!({
                            "role": "tool",
                            "tool_call_id": tool_use_id,
                            "content": if *is_error { format!("Error: {content}") } else { content.clone() },
                        })),
                        ContentBlock::Text { text: t } => {
                            if !text.is_empty() {
                                text.push('\n');
                            }
                            text.push_str(t);
                        }
                        ContentBlock::Thinking { .. } | ContentBlock::ToolUse(_) => {}
                    }
                }
                if !text.is_empty() {
                    messages.push(json!({"role": "user", "content": text}));
                }
            }
        }
    }
    let mut body = json!({
        "model": request.settings.model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let limit = if openai_limits {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    body[limit] = json!(request.settings.max_tokens);
    if let Some(t) = request.settings.temperature {
        body["temperature"] = json!(t);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.input_schema,
                    },
                })
            })
            .collect();
    }
    body
}

/// A tool call being assembled from its deltas.
#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

#[derive(Default)]
struct OpenAiDecoder {
    name: String,
    model: String,
    calls: BTreeMap<u64, PartialCall>,
    thinking: String,
    finish: Option<StopReason>,
    usage: Usage,
    done: bool,
}

impl OpenAiDecoder {
    fn bad(&self, message: impl Into<String>) -> Error {
        Error::bad_response(&self.name, message)
    }

    /// Emits what ends with the choice: the thinking block and the complete tool calls.
    fn flush(&mut self, out: &mut Vec<StreamEvent>) -> Result<()> {
        if !self.thinking.is_empty() {
            out.push(StreamEvent::Thinking {
                thinking: std::mem::take(&mut self.thinking),
                signature: None,
            });
        }
        for (index, call) in std::mem::take(&mut self.calls) {
            let arguments = if call.arguments.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(&call.arguments).map_err(|e| {
                    self.bad(format!(
                        "the arguments of tool call {index} are not JSON: {e}"
                    ))
                })?
            };
            let id = if call.id.is_empty() {
                format!("call_{index}")
            } else {
                call.id
            };
            out.push(StreamEvent::ToolCall(ToolCall {
                id,
                name: call.name,
                arguments,
            }));
        }
        Ok(())
    }

    fn finished(&mut self, out: &mut Vec<StreamEvent>) -> Result<()> {
        self.flush(out)?;
        self.done = true;
        let Some(stop_reason) = self.finish.take() else {
            return Err(self.bad("the stream ended without a finish_reason"));
        };
        out.push(StreamEvent::Finished {
            stop_reason,
            usage: self.usage,
            model: std::mem::take(&mut self.model),
        });
        Ok(())
    }
}

impl Decoder for OpenAiDecoder {
    fn event(&mut self, _name: &str, data: &str, out: &mut Vec<StreamEvent>) -> Result<()> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(());
        }
        if data == "[DONE]" {
            return self.finished(out);
        }
        let chunk: Value = serde_json::from_str(data)
            .map_err(|e| self.bad(format!("a chunk is not JSON: {e}")))?;
        if let Some(error) = chunk.get("error") {
            let str_of = |k: &str| error.get(k).and_then(Value::as_str).unwrap_or_default();
            let code = format!("{} {}", str_of("type"), str_of("code"));
            return Err(error::from_status(
                &self.name,
                match error.get("code").and_then(Value::as_u64) {
                    Some(status) => u16::try_from(status).unwrap_or(500),
                    None if code.contains("context_length") => 400,
                    None => 500,
                },
                None,
                &code,
                str_of("message").to_owned(),
            ));
        }
        if let Some(model) = chunk.get("model").and_then(Value::as_str)
            && !model.is_empty()
        {
            self.model = model.to_owned();
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
            let prompt = n(usage.get("prompt_tokens"));
            let cached = n(usage
                .get("prompt_tokens_details")
                .and_then(|d| d.get("cached_tokens")));
            self.usage = Usage {
                input_tokens: prompt.saturating_sub(cached),
                output_tokens: n(usage.get("completion_tokens")),
                cache_read_tokens: cached,
                cache_write_tokens: 0,
            };
        }
        for choice in chunk
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(delta) = choice.get("delta") {
                // DeepSeek and vLLM call it `reasoning_content`, OpenRouter and Ollama `reasoning`.
                for key in ["reasoning_content", "reasoning"] {
                    if let Some(piece) = delta.get(key).and_then(Value::as_str)
                        && !piece.is_empty()
                    {
                        self.thinking.push_str(piece);
                        out.push(StreamEvent::ThinkingDelta(piece.to_owned()));
                    }
                }
                if let Some(text) = delta.get("content").and_then(Value::as_str)
                    && !text.is_empty()
                {
                    out.push(StreamEvent::TextDelta(text.to_owned()));
                }
                for call in delta
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    // Servers that leave `index` out send each call whole: a new id is a new call.
                    let index = match call.get("index").and_then(Value::as_u64) {
                        Some(index) => index,
                        None => {
                            let id = call.get("id").and_then(Value::as_str).unwrap_or_default();
                            let last = self.calls.iter().next_back();
                            match last {
                                Some((index, partial)) if id.is_empty() || partial.id == id => {
                                    *index
                                }
                                Some((index, _)) => index + 1,
                                None => 0,
                            }
                        }
                    };
                    let partial = self.calls.entry(index).or_default();
                    // The id and name come whole, in the call's first delta (some servers
                    // repeat them in every delta); only the arguments are streamed in pieces.
                    if let Some(id) = call.get("id").and_then(Value::as_str)
                        && partial.id.is_empty()
                    {
                        partial.id = id.to_owned();
                    }
                    if let Some(function) = call.get("function") {
                        if let Some(name) = function.get("name").and_then(Value::as_str)
                            && partial.name.is_empty()
                        {
                            partial.name = name.to_owned();
                        }
                        if let Some(args) = function.get("arguments").and_then(Value::as_str) {
                            partial.arguments.push_str(args);
                        }
                    }
                }
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish = Some(match reason {
                    "stop" => StopReason::EndTurn,
                    "tool_calls" | "function_call" => StopReason::ToolUse,
                    "length" => StopReason::MaxTokens,
                    "content_filter" => StopReason::Refusal,
                    other => StopReason::Other(other.to_owned()),
                });
            }
        }
        Ok(())
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) -> Result<()> {
        if self.done {
            return Ok(());
        }
        // Some compatible servers close the stream after the finish_reason without `[DONE]`;
        // that answer is complete. Without a finish_reason it is not.
        if self.finish.is_some() {
            return self.finished(out);
        }
        self.done = true;
        Err(self.bad("the stream ended before its finish_reason (the answer is incomplete)"))
    }

    fn done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[Value]) -> Vec<StreamEvent> {
        let mut decoder = OpenAiDecoder {
            name: "test".into(),
            ..OpenAiDecoder::default()
        };
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.event("", &chunk.to_string(), &mut out).unwrap();
        }
        decoder.event("", "[DONE]", &mut out).unwrap();
        out
    }

    fn calls(events: &[StreamEvent]) -> Vec<(String, String, Value)> {
        events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCall(c) => {
                    Some((c.id.clone(), c.name.clone(), c.arguments.clone()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn whole_tool_calls_without_an_index_stay_apart() {
        let events = decode(&[
            json!({"choices": [{"delta": {"tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}},
            ]}}]}),
            json!({"choices": [{"delta": {"tool_calls": [
                {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
            ]}, "finish_reason": "tool_calls"}]}),
        ]);
        assert_eq!(
            calls(&events),
            [
                ("a".into(), "f".into(), json!({"x": 1})),
                ("b".into(), "g".into(), json!({}))
            ]
        );
    }

    #[test]
    fn ids_and_names_repeated_in_every_delta_are_taken_once() {
        let delta = |args: &str| {
            json!({"choices": [{"delta": {"tool_calls": [
                {"index": 0, "id": "c1", "function": {"name": "read_file", "arguments": args}},
            ]}}]})
        };
        let mut chunks = vec![delta("{\"pa"), delta("th\":"), delta("\"x\"}")];
        chunks.push(json!({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}));
        let events = decode(&chunks);
        assert_eq!(
            calls(&events),
            [("c1".into(), "read_file".into(), json!({"path": "x"}))]
        );
        assert!(matches!(
            events.last(),
            Some(StreamEvent::Finished {
                stop_reason: StopReason::ToolUse,
                ..
            })
        ));
    }
}
