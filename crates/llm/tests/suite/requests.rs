//! The bodies and headers each provider sends, compared whole with the checked-in expected
//! requests in `tests/expected/` (written from each API's reference documentation).

use kodiai_llm::{ChatRequest, ContentBlock, Message, ModelSettings, Provider, Role, ToolCall};
use kodiai_test_support::llm::{Api, FakeLlm, Reply};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::common::{KEY, provider, read_file_tool};

/// A conversation with every kind of block: text, thinking, a tool call, an answered call and a
/// failed one, two tools, and every setting.
fn conversation() -> ChatRequest {
    let edit = kodiai_llm::ToolSpec {
        name: "edit_file".into(),
        description: "Replace text in a file.".into(),
        input_schema: json!({
            "type": "object",
            "properties": {"path": {"type": "string"}, "old": {"type": "string"}, "new": {"type": "string"}},
            "required": ["path", "old", "new"],
        }),
    };
    ChatRequest {
        system: "You are kodiai, reviewing a pull request.".into(),
        messages: vec![
            Message::user("Fix the typo in README.md."),
            Message {
                role: Role::Assistant,
                content: vec![
                    ContentBlock::Thinking {
                        thinking: "I should read the file first.".into(),
                        signature: Some("sig-1".into()),
                    },
                    ContentBlock::text("Reading both files."),
                    ContentBlock::ToolUse(ToolCall {
                        id: "call_1".into(),
                        name: "read_file".into(),
                        arguments: json!({"path": "README.md"}),
                    }),
                    ContentBlock::ToolUse(ToolCall {
                        id: "call_2".into(),
                        name: "read_file".into(),
                        arguments: json!({"path": "MISSING.md"}),
                    }),
                ],
            },
            Message {
                role: Role::User,
                content: vec![
                    ContentBlock::tool_result("call_1", "# kodiai\nA self-hsoted engineer."),
                    ContentBlock::ToolResult {
                        tool_use_id: "call_2".into(),
                        content: "no such file".into(),
                        is_error: true,
                    },
                ],
            },
        ],
        tools: vec![read_file_tool(), edit],
        settings: ModelSettings {
            model: "the-model".into(),
            max_tokens: 1024,
            temperature: Some(0.5),
            thinking_budget: None,
        },
    }
}

fn expected(name: &str) -> Value {
    let path = format!("{}/tests/expected/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

async fn sent(api: Api) -> kodiai_test_support::llm::RecordedRequest {
    let fake = FakeLlm::start(api).await;
    fake.push(Reply::text("Fixed."));
    let response = provider(&fake).complete(&conversation()).await.unwrap();
    assert_eq!(response.message.text(), "Fixed.");
    fake.assert_invariants();
    fake.requests().remove(0)
}

#[tokio::test]
async fn anthropic_sends_the_documented_messages_request() {
    let request = sent(Api::Anthropic).await;
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/messages");
    assert_eq!(request.header("x-api-key"), Some(KEY));
    assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.body, expected("anthropic_request.json"));
}

#[tokio::test]
async fn openai_sends_the_documented_chat_completions_request() {
    let request = sent(Api::OpenAi).await;
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(request.body, expected("openai_request.json"));
}

#[tokio::test]
async fn gemini_sends_the_documented_stream_generate_content_request() {
    let request = sent(Api::Gemini).await;
    assert_eq!(
        request.path,
        "/v1beta/models/the-model:streamGenerateContent"
    );
    assert_eq!(request.query.as_deref(), Some("alt=sse"));
    assert_eq!(request.header("x-goog-api-key"), Some(KEY));
    assert_eq!(request.body, expected("gemini_request.json"));
}

#[tokio::test]
async fn anthropic_with_an_oauth_token_sends_it_as_a_bearer_with_the_oauth_beta() {
    let fake = FakeLlm::start(Api::Anthropic).await;
    fake.push(Reply::text("hi"));
    let p = kodiai_llm::Anthropic::new(
        url::Url::parse(&fake.base_url()).unwrap(),
        kodiai_llm::AnthropicAuth::OAuth("oauth-token-not-real".into()),
        super::common::timeouts(),
    )
    .unwrap();
    p.complete(&super::common::request("hi")).await.unwrap();
    let request = fake.requests().remove(0);
    assert_eq!(
        request.header("authorization"),
        Some("Bearer oauth-token-not-real")
    );
    assert_eq!(
        request.header("anthropic-beta"),
        Some("claude-code-20250219,oauth-2025-04-20")
    );
    assert_eq!(request.header("x-api-key"), None);
    // Claude Code's identity first, then kodiai's own system prompt, still cached.
    assert_eq!(
        request.body["system"][0],
        json!({"type": "text", "text": kodiai_llm::anthropic::OAUTH_SYSTEM_IDENTITY})
    );
    assert_eq!(request.body["system"][1]["text"], "You are a test.");
    assert_eq!(
        request.body["system"][1]["cache_control"]["type"],
        "ephemeral"
    );
}

#[tokio::test]
async fn azure_openai_uses_its_deployment_url_and_api_key_header() {
    let fake = FakeLlm::start(Api::OpenAi).await;
    fake.push(Reply::text("hi"));
    let p = kodiai_llm::OpenAi::new(
        kodiai_llm::OpenAiConfig {
            name: "azure".into(),
            base_url: url::Url::parse(&format!("http://{}", fake.addr)).unwrap(),
            api_key: Some(KEY.into()),
            azure_api_version: Some("2024-10-21".into()),
        },
        super::common::timeouts(),
    )
    .unwrap();
    let mut req = super::common::request("hi");
    req.settings.model = "my-gpt".into();
    p.complete(&req).await.unwrap();
    let request = fake.requests().remove(0);
    assert_eq!(request.path, "/openai/deployments/my-gpt/chat/completions");
    assert_eq!(request.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(request.header("api-key"), Some(KEY));
    assert_eq!(request.header("authorization"), None);
    assert_eq!(request.body["max_completion_tokens"], 8192);
}
