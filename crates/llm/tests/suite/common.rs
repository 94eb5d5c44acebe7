//! Providers pointed at a fake, an in-memory recorder, and the macro that runs one test body
//! per API.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use kodiai_llm::{
    Anthropic, AnthropicAuth, CallRecord, CallRecorder, ChatRequest, Gemini, Llm, Message,
    ModelRef, ModelSettings, OpenAi, OpenAiConfig, PriceTable, Provider, RetryPolicy, StreamEvent,
    Timeouts, ToolSpec,
};
use kodiai_test_support::llm::{Api, FakeLlm};
use serde_json::json;

pub const KEY: &str = "sk-test-key-not-real";

pub fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(5),
        first_byte: Duration::from_secs(30),
        idle: Duration::from_secs(30),
    }
}

/// The provider name each API is accounted under.
pub fn provider_name(api: Api) -> &'static str {
    match api {
        Api::Anthropic => "anthropic",
        Api::OpenAi => "openai",
        Api::Gemini => "gemini",
    }
}

/// The real provider for `api`, talking to `fake`.
pub fn provider(fake: &FakeLlm) -> Arc<dyn Provider> {
    let url = url::Url::parse(&fake.base_url()).unwrap();
    match fake.api {
        Api::Anthropic => {
            Arc::new(Anthropic::new(url, AnthropicAuth::ApiKey(KEY.into()), timeouts()).unwrap())
        }
        Api::OpenAi => Arc::new(
            OpenAi::new(
                OpenAiConfig {
                    name: "openai".into(),
                    base_url: url,
                    api_key: Some(KEY.into()),
                    azure_api_version: None,
                },
                timeouts(),
            )
            .unwrap(),
        ),
        Api::Gemini => Arc::new(Gemini::new(url, KEY.into(), timeouts()).unwrap()),
    }
}

/// Records calls in memory.
#[derive(Default)]
pub struct MemoryRecorder(pub Mutex<Vec<CallRecord>>);

impl CallRecorder for MemoryRecorder {
    fn record(&self, call: CallRecord) -> BoxFuture<'static, ()> {
        self.0.lock().unwrap().push(call);
        Box::pin(async {})
    }
}

impl MemoryRecorder {
    pub fn calls(&self) -> Vec<CallRecord> {
        self.0.lock().unwrap().clone()
    }
}

pub fn retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 2,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(60),
    }
}

/// An [`Llm`] over `fakes` in order (the first is the model, the rest its fallbacks).
pub fn llm(fakes: &[(&FakeLlm, &str)], recorder: Arc<MemoryRecorder>) -> Llm {
    let chain = fakes
        .iter()
        .map(|(fake, model)| {
            (
                ModelRef {
                    provider: provider_name(fake.api).to_owned(),
                    model: (*model).to_owned(),
                },
                provider(fake),
            )
        })
        .collect();
    Llm::new(chain, retry(), PriceTable::builtin(), recorder).unwrap()
}

pub fn request(text: &str) -> ChatRequest {
    ChatRequest {
        system: "You are a test.".into(),
        messages: vec![Message::user(text)],
        tools: vec![read_file_tool()],
        settings: ModelSettings::new("fake-model"),
    }
}

pub fn read_file_tool() -> ToolSpec {
    ToolSpec {
        name: "read_file".into(),
        description: "Read a file of the workspace.".into(),
        input_schema: json!({
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
        }),
    }
}

/// Every item of a stream, errors included.
pub async fn collect(
    provider: &dyn Provider,
    request: &ChatRequest,
) -> kodiai_llm::Result<Vec<kodiai_llm::Result<StreamEvent>>> {
    let stream = provider.stream(request).await?;
    Ok(stream.collect().await)
}

/// Runs `$body` (an async block using `api: Api`) once per API, as `$name::{anthropic, openai,
/// gemini}`. `paused` runs it with tokio's time paused.
#[macro_export]
macro_rules! per_api {
    ($name:ident, |$api:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test]
            async fn anthropic() {
                let $api = kodiai_test_support::llm::Api::Anthropic;
                $body
            }
            #[tokio::test]
            async fn openai() {
                let $api = kodiai_test_support::llm::Api::OpenAi;
                $body
            }
            #[tokio::test]
            async fn gemini() {
                let $api = kodiai_test_support::llm::Api::Gemini;
                $body
            }
        }
    };
    (paused $name:ident, |$api:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(start_paused = true)]
            async fn anthropic() {
                let $api = kodiai_test_support::llm::Api::Anthropic;
                $body
            }
            #[tokio::test(start_paused = true)]
            async fn openai() {
                let $api = kodiai_test_support::llm::Api::OpenAi;
                $body
            }
            #[tokio::test(start_paused = true)]
            async fn gemini() {
                let $api = kodiai_test_support::llm::Api::Gemini;
                $body
            }
        }
    };
}
