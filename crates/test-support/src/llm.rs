//! Fake LLM APIs: Anthropic Messages, OpenAI Chat Completions and Gemini, each a local axum
//! server on port 0 that streams scripted answers in the API's real SSE format, records every
//! request, and checks the invariants the real APIs enforce (every tool result answers a tool
//! call of the previous turn; Anthropic's roles alternate). A request that breaks one gets the
//! API's 400 and is listed in [`FakeLlm::violations`].
//!
//! Script answers with [`FakeLlm::push`]: text, tool calls, error statuses in each API's own
//! error shape, streams cut after some bytes or ended before their final event, delays, and
//! bodies split into chunks of any size (so parsers meet events split at every byte boundary).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};

/// Which API a fake speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Anthropic,
    OpenAi,
    Gemini,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names lower-case.
    pub headers: BTreeMap<String, String>,
    pub body: Value,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// An error the fake answers with, rendered in each API's own status, headers and body.
#[derive(Debug, Clone, PartialEq)]
pub enum FakeError {
    /// 429, with `retry-after` (Anthropic, OpenAI) or `RetryInfo` (Gemini) when given.
    RateLimited { retry_after_secs: Option<u64> },
    /// Anthropic 529 `overloaded_error`; OpenAI and Gemini 503.
    Overloaded,
    /// The API's 400 for a prompt longer than the context window.
    ContextWindowExceeded,
    /// 401 for a wrong key.
    Unauthorized,
    /// Any status with a plain message.
    Status(u16, String),
}

/// A tool call the fake's model makes.
#[derive(Debug, Clone)]
pub struct FakeToolCall {
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

/// Tokens the fake reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FakeUsage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

#[derive(Debug, Clone)]
enum Kind {
    Turn,
    Error(FakeError),
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    kind: Kind,
    thinking: Option<String>,
    /// The text in the pieces it is streamed in.
    text: Vec<String>,
    tool_calls: Vec<FakeToolCall>,
    /// Each tool call's JSON arguments go out in pieces of this many characters.
    argument_piece: usize,
    usage: FakeUsage,
    model: String,
    /// The body is sent in chunks of this many bytes (`None`: one chunk per event).
    chunk_size: Option<usize>,
    /// The connection is broken after this many bytes of the body.
    cut_after: Option<usize>,
    /// Only this many events are sent, then the body ends cleanly (no final event).
    events_only: Option<usize>,
    /// Before the response's headers.
    delay: Option<Duration>,
    /// After this many events, the API's in-stream error event, then the end of the body.
    error_event: Option<(usize, FakeError)>,
    /// After this many bytes of the body, the server stays silent this long.
    stall: Option<(usize, Duration)>,
}

impl Reply {
    fn base(kind: Kind) -> Self {
        Self {
            kind,
            thinking: None,
            text: Vec::new(),
            tool_calls: Vec::new(),
            argument_piece: 4,
            usage: FakeUsage {
                input: 12,
                output: 7,
                cache_read: 0,
                cache_write: 0,
            },
            model: "fake-model".into(),
            chunk_size: None,
            cut_after: None,
            events_only: None,
            delay: None,
            error_event: None,
            stall: None,
        }
    }

    /// A streamed text answer, one delta per word.
    pub fn text(text: &str) -> Self {
        let mut reply = Self::base(Kind::Turn);
        reply.text = split_words(text);
        reply
    }

    /// An answer of tool calls (`(id, name, arguments)`), run in parallel by the caller.
    pub fn tool_calls(calls: &[(&str, &str, Value)]) -> Self {
        let mut reply = Self::base(Kind::Turn);
        reply.tool_calls = calls
            .iter()
            .map(|(id, name, arguments)| FakeToolCall {
                id: (*id).to_owned(),
                name: (*name).to_owned(),
                arguments: arguments.clone(),
            })
            .collect();
        reply
    }

    /// An error answer.
    pub fn error(error: FakeError) -> Self {
        Self::base(Kind::Error(error))
    }

    /// Text before the tool calls, one delta per word.
    pub fn with_text(mut self, text: &str) -> Self {
        self.text = split_words(text);
        self
    }

    /// A thinking block before the answer.
    pub fn with_thinking(mut self, thinking: &str) -> Self {
        self.thinking = Some(thinking.to_owned());
        self
    }

    pub fn with_usage(mut self, usage: FakeUsage) -> Self {
        self.usage = usage;
        self
    }

    pub fn with_model(mut self, model: &str) -> Self {
        self.model = model.to_owned();
        self
    }

    /// Tool call arguments in pieces of `chars` characters.
    pub fn argument_pieces(mut self, chars: usize) -> Self {
        self.argument_piece = chars.max(1);
        self
    }

    /// The body in chunks of `bytes` bytes, split anywhere (inside events, inside UTF-8).
    pub fn chunked(mut self, bytes: usize) -> Self {
        self.chunk_size = Some(bytes.max(1));
        self
    }

    /// The connection breaks after `bytes` bytes of the body.
    pub fn cut_after(mut self, bytes: usize) -> Self {
        self.cut_after = Some(bytes);
        self
    }

    /// Only the first `events` events are sent, then the body ends as if complete.
    pub fn end_after_events(mut self, events: usize) -> Self {
        self.events_only = Some(events);
        self
    }

    /// After `events` events, the API's error event for `error` (Anthropic `event: error`,
    /// an `{"error": …}` chunk for OpenAI-compatible servers and Gemini), then the body ends.
    pub fn error_event_after(mut self, events: usize, error: FakeError) -> Self {
        self.error_event = Some((events, error));
        self
    }

    /// After `bytes` bytes of the body, nothing for `silence`, then the rest.
    pub fn stall_after(mut self, bytes: usize, silence: Duration) -> Self {
        self.stall = Some((bytes, silence));
        self
    }

    /// Waits before answering (paused time makes this instant in tests).
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

fn split_words(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        current.push(c);
        if c == ' ' {
            pieces.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

fn pieces(text: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(size.max(1))
        .map(|c| c.iter().collect())
        .collect()
}

#[derive(Default)]
struct FakeState {
    script: VecDeque<Reply>,
    requests: Vec<RecordedRequest>,
    violations: Vec<String>,
}

/// A fake API server, stopped when dropped.
pub struct FakeLlm {
    pub addr: SocketAddr,
    pub api: Api,
    state: Arc<Mutex<FakeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeLlm {
    /// Starts a fake of `api` on 127.0.0.1, port 0, on the current runtime.
    pub async fn start(api: Api) -> Self {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state((api, state.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            api,
            state,
            task,
        }
    }

    /// The base URL as each API's SDKs take it: Anthropic and Gemini without a version,
    /// OpenAI with `/v1`.
    pub fn base_url(&self) -> String {
        match self.api {
            Api::OpenAi => format!("http://{}/v1", self.addr),
            Api::Anthropic | Api::Gemini => format!("http://{}", self.addr),
        }
    }

    /// Adds an answer to the script; requests take them in order.
    pub fn push(&self, reply: Reply) -> &Self {
        self.state.lock().unwrap().script.push_back(reply);
        self
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests that broke an invariant of the API, described.
    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }

    /// Panics when any request broke an invariant.
    pub fn assert_invariants(&self) {
        let violations = self.violations();
        assert!(
            violations.is_empty(),
            "requests broke invariants: {violations:#?}"
        );
    }
}

type Shared = (Api, Arc<Mutex<FakeState>>);

async fn handle(
    State((api, state)): State<Shared>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let recorded = RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        body,
    };
    let path_ok = match api {
        Api::Anthropic => recorded.path == "/v1/messages",
        Api::OpenAi => recorded.path.ends_with("/chat/completions"),
        Api::Gemini => {
            recorded.path.starts_with("/v1beta/models/")
                && recorded.path.ends_with(":streamGenerateContent")
        }
    };
    let problems = if path_ok {
        check(api, &recorded.body)
    } else {
        vec![format!("unknown path {}", recorded.path)]
    };
    let reply = {
        let mut state = state.lock().unwrap();
        state.requests.push(recorded);
        state.violations.extend(problems.iter().cloned());
        if problems.is_empty() {
            state.script.pop_front()
        } else {
            None
        }
    };
    if !problems.is_empty() {
        return render_error(api, &FakeError::Status(400, problems.join("; ")));
    }
    let Some(reply) = reply else {
        return render_error(
            api,
            &FakeError::Status(500, "the fake has no scripted reply left".into()),
        );
    };
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    match &reply.kind {
        Kind::Error(error) => render_error(api, error),
        Kind::Turn => stream(api, &reply),
    }
}

// ---- request invariants -------------------------------------------------------------------

fn check(api: Api, body: &Value) -> Vec<String> {
    match api {
        Api::Anthropic => check_anthropic(body),
        Api::OpenAi => check_openai(body),
        Api::Gemini => check_gemini(body),
    }
}

fn blocks(message: &Value) -> Vec<Value> {
    match message.get("content") {
        Some(Value::Array(blocks)) => blocks.clone(),
        Some(Value::String(text)) => vec![json!({"type": "text", "text": text})],
        _ => Vec::new(),
    }
}

fn check_anthropic(body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if body.get("stream") != Some(&json!(true)) {
        problems.push("stream is not true".to_owned());
    }
    if body.get("max_tokens").and_then(Value::as_u64).is_none() {
        problems.push("max_tokens is missing".to_owned());
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if messages.is_empty() {
        problems.push("messages is empty".to_owned());
    }
    let mut previous_calls: HashSet<String> = HashSet::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        let expected = if i % 2 == 0 { "user" } else { "assistant" };
        if role != expected {
            problems.push(format!(
                "messages.{i}: role {role:?}, but roles must alternate starting with user"
            ));
        }
        let blocks = blocks(message);
        let results: HashSet<String> = blocks
            .iter()
            .filter(|b| b["type"] == "tool_result")
            .map(|b| b["tool_use_id"].as_str().unwrap_or_default().to_owned())
            .collect();
        for id in &results {
            if !previous_calls.contains(id) {
                problems.push(format!(
                    "messages.{i}: tool_result {id} answers no tool_use of the previous message"
                ));
            }
        }
        for id in &previous_calls {
            if !results.contains(id) {
                problems.push(format!(
                    "messages.{i}: tool_use {id} of the previous message has no tool_result"
                ));
            }
        }
        previous_calls = blocks
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .map(|b| b["id"].as_str().unwrap_or_default().to_owned())
            .collect();
    }
    problems
}

fn check_openai(body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if body.get("stream") != Some(&json!(true)) {
        problems.push("stream is not true".to_owned());
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // The calls of the last assistant message not answered yet.
    let mut open: Vec<String> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        if role == "tool" {
            let id = message["tool_call_id"].as_str().unwrap_or_default();
            match open.iter().position(|c| c == id) {
                Some(at) => {
                    open.remove(at);
                }
                None => problems.push(format!(
                    "messages.{i}: tool message {id} answers no tool_call of the assistant message before it"
                )),
            }
            continue;
        }
        if !open.is_empty() {
            problems.push(format!(
                "messages.{i}: tool_calls {open:?} were not answered before this message"
            ));
        }
        open = message
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| c["id"].as_str().unwrap_or_default().to_owned())
            .collect();
    }
    problems
}

fn check_gemini(body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let contents = body
        .get("contents")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut previous_calls: Vec<(String, String)> = Vec::new();
    for (i, content) in contents.iter().enumerate() {
        let role = content.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "user" && role != "model" {
            problems.push(format!("contents.{i}: role {role:?} is not user or model"));
        }
        let parts = content
            .get("parts")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for part in &parts {
            if let Some(response) = part.get("functionResponse") {
                let name = response["name"].as_str().unwrap_or_default();
                let id = response["id"].as_str().unwrap_or_default();
                let answered = previous_calls
                    .iter()
                    .any(|(cid, cname)| cname == name && (id.is_empty() || cid == id));
                if !answered {
                    problems.push(format!(
                        "contents.{i}: functionResponse {name} ({id}) answers no functionCall of the previous content"
                    ));
                }
                if !response["response"].is_object() {
                    problems.push(format!(
                        "contents.{i}: functionResponse.response is not an object"
                    ));
                }
            }
        }
        previous_calls = parts
            .iter()
            .filter_map(|p| p.get("functionCall"))
            .map(|c| {
                (
                    c["id"].as_str().unwrap_or_default().to_owned(),
                    c["name"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
    }
    problems
}

// ---- responses ----------------------------------------------------------------------------

fn render_error(api: Api, error: &FakeError) -> Response {
    let (status, body, retry_after) = match (api, error) {
        (Api::Anthropic, FakeError::RateLimited { retry_after_secs }) => (
            429,
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Number of request tokens has exceeded your per-minute rate limit"}}),
            *retry_after_secs,
        ),
        (Api::Anthropic, FakeError::Overloaded) => (
            529,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            None,
        ),
        (Api::Anthropic, FakeError::ContextWindowExceeded) => (
            400,
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 208310 tokens > 200000 maximum"}}),
            None,
        ),
        (Api::Anthropic, FakeError::Unauthorized) => (
            401,
            json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}),
            None,
        ),
        (Api::Anthropic, FakeError::Status(status, message)) => (
            *status,
            json!({"type": "error", "error": {"type": if *status >= 500 { "api_error" } else { "invalid_request_error" }, "message": message}}),
            None,
        ),
        (Api::OpenAi, FakeError::RateLimited { retry_after_secs }) => (
            429,
            json!({"error": {"message": "Rate limit reached for requests", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
            *retry_after_secs,
        ),
        (Api::OpenAi, FakeError::Overloaded) => (
            503,
            json!({"error": {"message": "The server is overloaded or not ready yet.", "type": "server_error", "param": null, "code": null}}),
            None,
        ),
        (Api::OpenAi, FakeError::ContextWindowExceeded) => (
            400,
            json!({"error": {"message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 130020 tokens.", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}),
            None,
        ),
        (Api::OpenAi, FakeError::Unauthorized) => (
            401,
            json!({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
            None,
        ),
        (Api::OpenAi, FakeError::Status(status, message)) => (
            *status,
            json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}}),
            None,
        ),
        (Api::Gemini, FakeError::RateLimited { retry_after_secs }) => {
            let mut error = json!({"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"});
            if let Some(secs) = retry_after_secs {
                error["details"] = json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{secs}s")}]);
            }
            (429, json!({"error": error}), None)
        }
        (Api::Gemini, FakeError::Overloaded) => (
            503,
            json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}),
            None,
        ),
        (Api::Gemini, FakeError::ContextWindowExceeded) => (
            400,
            json!({"error": {"code": 400, "message": "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).", "status": "INVALID_ARGUMENT"}}),
            None,
        ),
        (Api::Gemini, FakeError::Unauthorized) => (
            401,
            json!({"error": {"code": 401, "message": "API key not valid. Please pass a valid API key.", "status": "UNAUTHENTICATED"}}),
            None,
        ),
        (Api::Gemini, FakeError::Status(status, message)) => (
            *status,
            json!({"error": {"code": status, "message": message, "status": if *status >= 500 { "INTERNAL" } else { "INVALID_ARGUMENT" }}}),
            None,
        ),
    };
    let mut response = (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
    }
    response
}

/// The SSE events of a scripted turn, each as its bytes.
fn events(api: Api, reply: &Reply) -> Vec<String> {
    match api {
        Api::Anthropic => anthropic_events(reply),
        Api::OpenAi => openai_events(reply),
        Api::Gemini => gemini_events(reply),
    }
}

fn sse(name: Option<&str>, data: &Value) -> String {
    match name {
        Some(name) => format!("event: {name}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

/// Message ids: unique per answer, as the real API's are (a client may group by them).
static MESSAGE_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn anthropic_events(reply: &Reply) -> Vec<String> {
    let u = reply.usage;
    let id = MESSAGE_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut out = vec![sse(
        Some("message_start"),
        &json!({"type": "message_start", "message": {
            "id": format!("msg_fake_{id}"), "type": "message", "role": "assistant", "model": reply.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": u.input, "output_tokens": 1,
                      "cache_creation_input_tokens": u.cache_write, "cache_read_input_tokens": u.cache_read},
        }}),
    )];
    out.push(sse(Some("ping"), &json!({"type": "ping"})));
    let mut index = 0;
    if let Some(thinking) = &reply.thinking {
        out.push(sse(Some("content_block_start"), &json!({"type": "content_block_start", "index": index, "content_block": {"type": "thinking", "thinking": ""}})));
        for piece in split_words(thinking) {
            out.push(sse(Some("content_block_delta"), &json!({"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": piece}})));
        }
        out.push(sse(Some("content_block_delta"), &json!({"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": "sig-fake"}})));
        out.push(sse(
            Some("content_block_stop"),
            &json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    if !reply.text.is_empty() {
        out.push(sse(Some("content_block_start"), &json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})));
        for piece in &reply.text {
            out.push(sse(Some("content_block_delta"), &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}})));
        }
        out.push(sse(
            Some("content_block_stop"),
            &json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    for call in &reply.tool_calls {
        out.push(sse(Some("content_block_start"), &json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}})));
        for piece in pieces(&call.arguments.to_string(), reply.argument_piece) {
            out.push(sse(Some("content_block_delta"), &json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}})));
        }
        out.push(sse(
            Some("content_block_stop"),
            &json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    let stop = if reply.tool_calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    out.push(sse(Some("message_delta"), &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": u.output}})));
    out.push(sse(Some("message_stop"), &json!({"type": "message_stop"})));
    out
}

fn openai_events(reply: &Reply) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        sse(
            None,
            &json!({
                "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_764_000_000,
                "model": reply.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                "usage": null,
            }),
        )
    };
    let mut out = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    if let Some(thinking) = &reply.thinking {
        for piece in split_words(thinking) {
            out.push(chunk(json!({"reasoning_content": piece}), Value::Null));
        }
    }
    for piece in &reply.text {
        out.push(chunk(json!({"content": piece}), Value::Null));
    }
    for (index, call) in reply.tool_calls.iter().enumerate() {
        out.push(chunk(
            json!({"tool_calls": [{"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}]}),
            Value::Null,
        ));
        for piece in pieces(&call.arguments.to_string(), reply.argument_piece) {
            out.push(chunk(
                json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                Value::Null,
            ));
        }
    }
    let finish = if reply.tool_calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    out.push(chunk(json!({}), json!(finish)));
    let u = reply.usage;
    out.push(sse(
        None,
        &json!({
            "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_764_000_000,
            "model": reply.model, "choices": [],
            "usage": {"prompt_tokens": u.input + u.cache_read, "completion_tokens": u.output,
                      "total_tokens": u.input + u.cache_read + u.output,
                      "prompt_tokens_details": {"cached_tokens": u.cache_read}},
        }),
    ));
    out.push("data: [DONE]\n\n".to_owned());
    out
}

fn gemini_events(reply: &Reply) -> Vec<String> {
    let u = reply.usage;
    let chunk = |parts: Value, finish: Option<&str>, usage: bool| {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(finish) = finish {
            candidate["finishReason"] = json!(finish);
        }
        let mut body =
            json!({"candidates": [candidate], "modelVersion": reply.model, "responseId": "fake"});
        if usage {
            body["usageMetadata"] = json!({
                "promptTokenCount": u.input + u.cache_read, "candidatesTokenCount": u.output,
                "cachedContentTokenCount": u.cache_read,
                "totalTokenCount": u.input + u.cache_read + u.output,
            });
        }
        // Gemini separates its events with CRLF pairs.
        format!("data: {body}\r\n\r\n")
    };
    let mut out = Vec::new();
    if let Some(thinking) = &reply.thinking {
        for piece in split_words(thinking) {
            out.push(chunk(
                json!([{"text": piece, "thought": true}]),
                None,
                false,
            ));
        }
    }
    for piece in &reply.text {
        out.push(chunk(json!([{"text": piece}]), None, false));
    }
    if !reply.tool_calls.is_empty() {
        let calls: Vec<Value> = reply
            .tool_calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut part =
                    json!({"functionCall": {"id": c.id, "name": c.name, "args": c.arguments}});
                // As Gemini does with thinking on: the first call of a turn carries the
                // signature of the reasoning before it.
                if i == 0 {
                    part["thoughtSignature"] = json!(format!("sig-{}", c.id));
                }
                part
            })
            .collect();
        out.push(chunk(Value::Array(calls), None, false));
    }
    out.push(chunk(json!([{"text": ""}]), Some("STOP"), true));
    out
}

/// The API's error event in a stream.
fn error_event(api: Api, error: &FakeError) -> String {
    let (code, status, message) = match error {
        FakeError::RateLimited { .. } => ("rate_limit_error", "RESOURCE_EXHAUSTED", "Rate limited"),
        FakeError::Overloaded => ("overloaded_error", "UNAVAILABLE", "Overloaded"),
        FakeError::ContextWindowExceeded => (
            "invalid_request_error",
            "INVALID_ARGUMENT",
            "prompt is too long",
        ),
        FakeError::Unauthorized => ("authentication_error", "UNAUTHENTICATED", "bad key"),
        FakeError::Status(_, _) => ("api_error", "INTERNAL", "Internal server error"),
    };
    match api {
        Api::Anthropic => sse(
            Some("error"),
            &json!({"type": "error", "error": {"type": code, "message": message}}),
        ),
        Api::OpenAi => sse(
            None,
            &json!({"error": {"message": message, "type": code, "code": null}}),
        ),
        Api::Gemini => format!(
            "data: {}\r\n\r\n",
            json!({"error": {"code": 503, "message": message, "status": status}})
        ),
    }
}

fn stream(api: Api, reply: &Reply) -> Response {
    let mut events = events(api, reply);
    if let Some(n) = reply.events_only {
        events.truncate(n);
    }
    if let Some((n, error)) = &reply.error_event {
        events.truncate(*n);
        events.push(error_event(api, error));
    }
    let bytes: Vec<u8> = events.concat().into_bytes();
    let (bytes, broken) = match reply.cut_after {
        Some(n) if n < bytes.len() => (bytes[..n].to_vec(), true),
        _ => (bytes, false),
    };
    let chunks: Vec<Bytes> = match reply.chunk_size {
        Some(size) => bytes.chunks(size).map(Bytes::copy_from_slice).collect(),
        None => events_bytes(&events, bytes.len()),
    };
    let mut items: Vec<Result<Bytes, std::io::Error>> = chunks.into_iter().map(Ok).collect();
    if broken {
        items.push(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "the fake broke the stream",
        )));
    }
    let stall = reply.stall;
    let mut sent = 0;
    let body = Body::from_stream(futures::stream::iter(items).then(move |item| {
        let before = sent;
        if let Ok(bytes) = &item {
            sent += bytes.len();
        }
        async move {
            if let Some((at, silence)) = stall
                && before <= at
                && at < sent
            {
                tokio::time::sleep(silence).await;
            }
            item
        }
    }));
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(body)
        .unwrap()
}

/// One chunk per event, up to `limit` bytes in all.
fn events_bytes(events: &[String], limit: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut left = limit;
    for event in events {
        if left == 0 {
            break;
        }
        let take = event.len().min(left);
        out.push(Bytes::copy_from_slice(&event.as_bytes()[..take]));
        left -= take;
    }
    out
}
