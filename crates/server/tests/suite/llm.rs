//! The LLM accounting through the real server's configuration and store, per provider and on
//! both backends: the fakes of `kodiai_test_support::llm` answer, `llm_calls` and `/metrics`
//! show what was used; and `kodiai llm ping` as the real binary.

use kodiai_llm::{CallScope, ChatRequest, Message, ModelSettings, Provider};
use kodiai_protocol::{JobSpec, NoopJob};
use kodiai_runtime::llm::build;
use kodiai_store::NewJob;
use kodiai_test_support::llm::{Api, FakeError, FakeLlm, FakeUsage, Reply};

const EXE: &str = env!("CARGO_BIN_EXE_kodiai");

/// The environment that points kodiai at `fake` with `model`.
fn env_for(fake: &FakeLlm, model: &str) -> Vec<(&'static str, String)> {
    let base = fake.base_url();
    let mut env = vec![("KODIAI_MODEL", model.to_owned())];
    match fake.api {
        Api::Anthropic => {
            env.push(("ANTHROPIC_API_KEY", "sk-ant-test-not-real".into()));
            env.push(("ANTHROPIC_BASE_URL", base));
        }
        Api::OpenAi => {
            env.push(("OPENAI_API_KEY", "sk-test-not-real".into()));
            env.push(("OPENAI_BASE_URL", base));
        }
        Api::Gemini => {
            env.push(("GEMINI_API_KEY", "gemini-test-not-real".into()));
            env.push(("GEMINI_BASE_URL", base));
        }
    }
    env
}

fn request() -> ChatRequest {
    ChatRequest {
        system: "Be brief.".into(),
        messages: vec![Message::user("hi")],
        tools: Vec::new(),
        settings: ModelSettings::new("set-by-the-chain"),
    }
}

/// USD per million tokens of the built-in list prices, for the models below.
const USAGE: FakeUsage = FakeUsage {
    input: 1000,
    output: 200,
    cache_read: 4000,
    cache_write: 0,
};

macro_rules! accounting_test {
    ($name:ident, $api:expr, $model:literal, $expected_cost:expr) => {
        app_test!(
            $name,
            builder | builder | {
                let fake = FakeLlm::start($api).await;
                fake.push(Reply::text("Hello from the fake.").with_usage(USAGE));
                fake.push(Reply::error(FakeError::ContextWindowExceeded));
                let mut builder = builder;
                for (key, value) in env_for(&fake, $model) {
                    builder = builder.env(key, &value);
                }
                let Some(app) = builder.spawn().await else {
                    return;
                };
                let state = app.state();
                let job = state
                    .store
                    .enqueue(
                        &NewJob::new(JobSpec::Noop(NoopJob::default())),
                        state.clock.now(),
                    )
                    .await
                    .unwrap();
                let llm = build(&state.config.llm, state.store.clone(), state.clock.clone())
                    .unwrap()
                    .scoped(CallScope {
                        job_id: Some(job.id.clone()),
                        session_id: None,
                    });

                let response = llm.complete(&request()).await.unwrap();
                assert_eq!(response.message.text(), "Hello from the fake.");
                let error = llm.complete(&request()).await.unwrap_err();
                assert_eq!(error.kind(), "context_window_exceeded");

                let calls = state.store.llm_calls_of_job(&job.id).await.unwrap();
                assert_eq!(calls.len(), 2, "{calls:#?}");
                let (provider, model) = $model.split_once('/').unwrap();
                let ok = &calls[0];
                assert_eq!((ok.provider.as_str(), ok.model.as_str()), (provider, model));
                assert_eq!(ok.outcome, "ok");
                assert_eq!(ok.stop_reason.as_deref(), Some("end_turn"));
                assert_eq!(
                    (ok.input_tokens, ok.output_tokens, ok.cache_read_tokens),
                    (1000, 200, 4000)
                );
                let expected: f64 = $expected_cost;
                assert!(
                    (ok.cost_usd - expected).abs() < 1e-9,
                    "{} != {expected}",
                    ok.cost_usd
                );
                assert!(ok.time_to_first_token_ms.is_some());
                let failed = &calls[1];
                assert_eq!(failed.outcome, "error");
                assert_eq!(
                    failed.error_kind.as_deref(),
                    Some("context_window_exceeded")
                );
                assert_eq!(failed.input_tokens, 0);

                let metrics = app.get("/metrics").await.text().await.unwrap();
                let tokens = format!(
                    "llm_tokens_total{{provider=\"{provider}\",model=\"{model}\",kind=\"input\"}}"
                );
                assert!(metrics.contains(&tokens), "{tokens} in\n{metrics}");
                assert!(metrics.contains("llm_cost_usd_total{"), "{metrics}");
                fake.assert_invariants();
            }
        );
    };
}

// 1000 input, 200 output, 4000 cache-read tokens at each model's list price.
accounting_test!(
    anthropic_usage_and_cost_are_recorded,
    Api::Anthropic,
    "anthropic/claude-sonnet-4-5",
    (1000.0 * 3.0 + 200.0 * 15.0 + 4000.0 * 0.3) / 1e6
);
accounting_test!(
    openai_usage_and_cost_are_recorded,
    Api::OpenAi,
    "openai/gpt-4.1",
    (1000.0 * 2.0 + 200.0 * 8.0 + 4000.0 * 0.5) / 1e6
);
accounting_test!(
    gemini_usage_and_cost_are_recorded,
    Api::Gemini,
    "gemini/gemini-2.5-flash",
    (1000.0 * 0.3 + 200.0 * 2.5 + 4000.0 * 0.075) / 1e6
);

async fn ping(env: &[(&'static str, String)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(EXE);
    command
        .args(["llm", "ping"])
        .current_dir(dir.path())
        .env_remove("KODIAI_CONFIG")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("GEMINI_API_KEY")
        .env_remove("CLAUDE_CODE_OAUTH_TOKEN");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().await.unwrap()
}

#[tokio::test]
async fn llm_ping_prints_model_latency_and_tokens() {
    let fake = FakeLlm::start(Api::Anthropic).await;
    fake.push(Reply::text("pong").with_usage(FakeUsage {
        input: 14,
        output: 3,
        cache_read: 0,
        cache_write: 0,
    }));
    let output = ping(&env_for(&fake, "anthropic/claude-haiku-4-5")).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    let line = stdout.trim();
    assert!(
        line.starts_with("anthropic/claude-haiku-4-5: ok in "),
        "{line}"
    );
    assert!(line.contains("14 input + 3 output tokens"), "{line}");
    assert!(line.ends_with("\"pong\""), "{line}");
    let sent = &fake.requests()[0];
    assert_eq!(sent.body["model"], "claude-haiku-4-5");
    assert_eq!(sent.body["max_tokens"], 16);
}

#[tokio::test]
async fn llm_ping_reports_an_error_in_one_line_without_the_key() {
    let fake = FakeLlm::start(Api::OpenAi).await;
    fake.push(Reply::error(FakeError::Unauthorized));
    let output = ping(&env_for(&fake, "openai/gpt-4.1")).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "kodiai: llm ping failed: openai/gpt-4.1: openai refused the credentials: Incorrect API key provided."
        ]
    );
    assert!(!stderr.contains("sk-test-not-real"));
}

#[tokio::test]
async fn llm_ping_without_a_key_names_the_missing_setting() {
    let output = ping(&[("KODIAI_MODEL", "gemini/gemini-2.5-flash".to_owned())]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        "kodiai: llm ping failed: gemini/gemini-2.5-flash needs GEMINI_API_KEY"
    );
}
