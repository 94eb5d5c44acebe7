//! Model providers behind one streaming trait: Anthropic Messages, OpenAI-compatible Chat
//! Completions and Gemini, with retries, timeouts, a fallback chain and per-call accounting.
//!
//! - [`Provider`]: one required method, [`Provider::stream`]; [`Provider::complete`] collects it.
//! - [`Anthropic`], [`OpenAi`], [`Gemini`]: one API each, no retries of their own.
//! - [`Llm`]: the provider the agent is given. It runs a [`ModelRef`] chain (the configured
//!   model, then its fallbacks), retries with backoff, and reports every attempt to a
//!   [`CallRecorder`] with its tokens and cost (the server stores them in `llm_calls`).
//!
//! Everything the agent needs (messages, content blocks, events, usage, stop reasons) is in
//! [`types`]; tool specs and calls are `kodiai_protocol`'s.

use futures::StreamExt;
use futures::future::BoxFuture;

pub mod anthropic;
pub mod error;
pub mod gemini;
mod http;
pub mod models;
pub mod openai;
pub mod prices;
pub mod router;
pub mod types;

pub use anthropic::{Anthropic, AnthropicAuth};
pub use error::{Error, Result};
pub use gemini::Gemini;
pub use http::{EventStream, Timeouts};
pub use kodiai_protocol::{ToolCall, ToolSpec};
pub use models::{Credentials, ModelRef, build_provider, default_model};
pub use openai::{OpenAi, OpenAiConfig};
pub use prices::{Price, PriceTable};
pub use router::{
    CallOutcome, CallRecord, CallRecorder, CallScope, Llm, LlmSettings, NoRecorder, RetryPolicy,
};
pub use types::{
    ChatRequest, ChatResponse, ContentBlock, Message, ModelSettings, ResponseBuilder, Role,
    StopReason, StreamEvent, Usage,
};

/// A model API. Object-safe: the agent holds an `Arc<dyn Provider>`.
pub trait Provider: Send + Sync {
    /// The provider's name, the `provider` of `provider/model` (`anthropic`, `openai`, …).
    fn name(&self) -> &str;

    /// Sends one request and streams the answer. The future fails when the call cannot start
    /// (no connection, an error status); the stream ends after [`StreamEvent::Finished`], or
    /// with an `Err` when the answer broke off.
    fn stream<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<EventStream>>;

    /// The whole answer at once.
    fn complete<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<ChatResponse>> {
        Box::pin(async move {
            let mut stream = self.stream(request).await?;
            let mut builder = ResponseBuilder::default();
            while let Some(event) = stream.next().await {
                builder.push(&event?);
            }
            builder.finish().ok_or_else(|| Error::BadResponse {
                provider: self.name().to_owned(),
                message: "the stream ended without its final event".into(),
            })
        })
    }
}
