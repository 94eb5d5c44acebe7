//! Google Gemini (`POST {base}/v1beta/models/{model}:streamGenerateContent?alt=sse`): text and
//! thought parts, `functionCall` and `functionResponse` parts, the system instruction and the
//! usage metadata.

use futures::FutureExt;
use futures::future::BoxFuture;
use kodiai_protocol::ToolCall;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::Provider;
use crate::error::{self, Error, Result};
use crate::http::{Decoder, EventStream, Timeouts, Transport, decode_sse};
use crate::types::{ChatRequest, ContentBlock, Role, StopReason, StreamEvent, Usage};

const NAME: &str = "gemini";

#[derive(Debug, Clone)]
pub struct Gemini {
    /// `https://generativelanguage.googleapis.com` (the API version is part of the path).
    base_url: url::Url,
    api_key: SecretString,
    transport: Transport,
}

impl Gemini {
    pub fn new(base_url: url::Url, api_key: SecretString, timeouts: Timeouts) -> Result<Self> {
        Ok(Self {
            base_url,
            api_key,
            transport: Transport::new(timeouts)?,
        })
    }

    fn url(&self, model: &str) -> String {
        format!(
            "{}/v1beta/models/{model}:streamGenerateContent?alt=sse",
            self.base_url.as_str().trim_end_matches('/')
        )
    }

    async fn open(&self, request: &ChatRequest) -> Result<EventStream> {
        let http = self
            .transport
            .client
            .post(self.url(&request.settings.model))
            // In a header, not `?key=`: URLs end up in logs and error messages.
            .header("x-goog-api-key", self.api_key.expose_secret())
            .json(&request_body(request));
        let response = self.transport.send(NAME, http).await?;
        Ok(decode_sse(
            NAME,
            response,
            self.transport.timeouts,
            GeminiDecoder {
                model: request.settings.model.clone(),
                ..GeminiDecoder::default()
            },
        ))
    }
}

impl Provider for Gemini {
    fn name(&self) -> &str {
        NAME
    }

    fn stream<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<EventStream>> {
        self.open(request).boxed()
    }
}

/// The request body of `streamGenerateContent`.
pub fn request_body(request: &ChatRequest) -> Value {
    // A functionResponse names its function; the conversation knows it by the call's id.
    let mut names = std::collections::HashMap::new();
    for message in &request.messages {
        for call in message.tool_calls() {
            names.insert(call.id.clone(), call.name.clone());
        }
    }
    let contents: Vec<Value> = request
        .messages
        .iter()
        .filter_map(|message| {
            // A thought signature goes back on the part that followed it (see the decoder).
            let mut signature: Option<&String> = None;
            let parts: Vec<Value> = message
                .content
                .iter()
                .filter_map(|block| {
                    let mut part = match block {
                        ContentBlock::Text { text } => json!({"text": text}),
                        // Thought summaries are not sent back; their signatures are.
                        ContentBlock::Thinking { signature: s, .. } => {
                            signature = s.as_ref();
                            return None;
                        }
                        ContentBlock::ToolUse(call) => json!({
                            "functionCall": {"id": call.id, "name": call.name, "args": call.arguments},
                        }),
                        ContentBlock::ToolResult {
                            tool_use_id,
                            content,
                            is_error,
                        } => json!({
                            "functionResponse": {
                                "id": tool_use_id,
                                "name": names.get(tool_use_id).cloned().unwrap_or_default(),
                                "response": if *is_error { json!({"error": content}) } else { json!({"output": content}) },
                            },
                        }),
                    };
                    if let Some(s) = signature.take() {
                        part["thoughtSignature"] = json!(s);
                    }
                    Some(part)
                })
                .collect();
            (!parts.is_empty()).then(|| {
                json!({
                    "role": match message.role { Role::User => "user", Role::Assistant => "model" },
                    "parts": parts,
                })
            })
        })
        .collect();
    let mut generation = json!({"maxOutputTokens": request.settings.max_tokens});
    if let Some(t) = request.settings.temperature {
        generation["temperature"] = json!(t);
    }
    if let Some(budget) = request.settings.thinking_budget {
        generation["thinkingConfig"] = json!({"thinkingBudget": budget, "includeThoughts": true});
    }
    let mut body = json!({"contents": contents, "generationConfig": generation});
    if !request.system.is_empty() {
        body["systemInstruction"] = json!({"parts": [{"text": request.system}]});
    }
    if !request.tools.is_empty() {
        let declarations: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "description": t.description,
                    // Full JSON Schema; `parameters` only takes Gemini's OpenAPI subset.
                    "parametersJsonSchema": t.input_schema,
                })
            })
            .collect();
        body["tools"] = json!([{"functionDeclarations": declarations}]);
    }
    body
}

#[derive(Default)]
struct GeminiDecoder {
    model: String,
    usage: Usage,
    thinking: String,
    calls: u32,
    saw_call: bool,
    finish: Option<String>,
    done: bool,
}

impl GeminiDecoder {
    fn finished(&mut self, out: &mut Vec<StreamEvent>) {
        self.done = true;
        if !self.thinking.is_empty() {
            out.push(StreamEvent::Thinking {
                thinking: std::mem::take(&mut self.thinking),
                signature: None,
            });
        }
        let reason = self.finish.take().unwrap_or_default();
        let stop_reason = match reason.as_str() {
            "STOP" if self.saw_call => StopReason::ToolUse,
            "STOP" => StopReason::EndTurn,
            "MAX_TOKENS" => StopReason::MaxTokens,
            "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" => {
                StopReason::Refusal
            }
            other => StopReason::Other(other.to_owned()),
        };
        out.push(StreamEvent::Finished {
            stop_reason,
            usage: self.usage,
            model: std::mem::take(&mut self.model),
        });
    }
}

impl Decoder for GeminiDecoder {
    fn event(&mut self, _name: &str, data: &str, out: &mut Vec<StreamEvent>) -> Result<()> {
        if data.trim().is_empty() {
            return Ok(());
        }
        let chunk: Value = serde_json::from_str(data)
            .map_err(|e| Error::bad_response(NAME, format!("a chunk is not JSON: {e}")))?;
        if let Some(error) = chunk.get("error") {
            let str_of = |k: &str| error.get(k).and_then(Value::as_str).unwrap_or_default();
            return Err(error::from_stream_error(
                NAME,
                str_of("status"),
                str_of("message").to_owned(),
            ));
        }
        if let Some(version) = chunk.get("modelVersion").and_then(Value::as_str) {
            self.model = version.to_owned();
        }
        if let Some(meta) = chunk.get("usageMetadata") {
            let n = |k: &str| meta.get(k).and_then(Value::as_u64).unwrap_or(0);
            let cached = n("cachedContentTokenCount");
            self.usage = Usage {
                input_tokens: n("promptTokenCount").saturating_sub(cached),
                // Thinking tokens are billed as output.
                output_tokens: n("candidatesTokenCount") + n("thoughtsTokenCount"),
                cache_read_tokens: cached,
                cache_write_tokens: 0,
            };
        }
        if let Some(reason) = chunk
            .get("promptFeedback")
            .and_then(|f| f.get("blockReason"))
            .and_then(Value::as_str)
        {
            tracing::debug!(reason, "gemini blocked the prompt");
            self.finish = Some("SAFETY".to_owned());
        }
        let candidate = chunk
            .get("candidates")
            .and_then(Value::as_array)
            .and_then(|c| c.first());
        if let Some(candidate) = candidate {
            for part in candidate
                .get("content")
                .and_then(|c| c.get("parts"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                // Gemini signs its reasoning on the part after it (a function call, usually);
                // the signature must come back on that part, so it travels as a thinking
                // block just before it.
                if let Some(signature) = part.get("thoughtSignature").and_then(Value::as_str) {
                    out.push(StreamEvent::Thinking {
                        thinking: std::mem::take(&mut self.thinking),
                        signature: Some(signature.to_owned()),
                    });
                }
                if let Some(call) = part.get("functionCall") {
                    self.calls += 1;
                    self.saw_call = true;
                    let id = call
                        .get("id")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("gemini_call_{}", self.calls));
                    out.push(StreamEvent::ToolCall(ToolCall {
                        id,
                        name: call
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        arguments: call.get("args").cloned().unwrap_or_else(|| json!({})),
                    }));
                } else if let Some(text) = part.get("text").and_then(Value::as_str) {
                    if part.get("thought").and_then(Value::as_bool) == Some(true) {
                        self.thinking.push_str(text);
                        out.push(StreamEvent::ThinkingDelta(text.to_owned()));
                    } else if !text.is_empty() {
                        out.push(StreamEvent::TextDelta(text.to_owned()));
                    }
                }
            }
            if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
                self.finish = Some(reason.to_owned());
            }
        }
        Ok(())
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) -> Result<()> {
        if self.done {
            return Ok(());
        }
        // Gemini has no end event: the answer is complete when a chunk carried its finishReason.
        if self.finish.is_none() {
            self.done = true;
            return Err(Error::bad_response(
                NAME,
                "the stream ended before a finishReason (the answer is incomplete)",
            ));
        }
        self.finished(out);
        Ok(())
    }

    fn done(&self) -> bool {
        self.done
    }
}
