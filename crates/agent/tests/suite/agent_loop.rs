//! The loop as a handle: scripted model answers drive the real workspace tools, and every limit
//! (max_turns, timeout, budget, cancellation) ends the run with its reason and keeps the events.

use std::sync::Arc;
use std::time::Duration;

use kodiai_agent::tools::{
    DynTool, Tool, ToolContext, ToolError, ToolRegistry, ToolResult, ToolRouter, WorkspaceRoot,
    WorkspaceToolOptions, workspace_tools,
};
use kodiai_agent::{Task, start};
use kodiai_llm::{
    Anthropic, AnthropicAuth, Gemini, ModelSettings, OpenAi, OpenAiConfig, Price, PriceTable,
    Provider, Timeouts,
};
use kodiai_protocol::{AgentEvent, FinishReason};
use kodiai_test_support::llm::{Api, FakeLlm, FakeUsage, Reply};
use serde_json::{Value, json};
use tokio::sync::Notify;

const KEY: &str = "sk-test-key-not-real";

fn provider(fake: &FakeLlm) -> Arc<dyn Provider> {
    let url = url::Url::parse(&fake.base_url()).unwrap();
    let timeouts = Timeouts {
        connect: Duration::from_secs(5),
        first_byte: Duration::from_secs(30),
        idle: Duration::from_secs(30),
    };
    match fake.api {
        Api::Anthropic => {
            Arc::new(Anthropic::new(url, AnthropicAuth::ApiKey(KEY.into()), timeouts).unwrap())
        }
        Api::OpenAi => Arc::new(
            OpenAi::new(
                OpenAiConfig {
                    name: "openai".into(),
                    base_url: url,
                    api_key: Some(KEY.into()),
                    azure_api_version: None,
                },
                timeouts,
            )
            .unwrap(),
        ),
        Api::Gemini => Arc::new(Gemini::new(url, KEY.into(), timeouts).unwrap()),
    }
}

/// A temporary workspace with a small crate in it.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(
        dir.path().join("src/lib.rs"),
        "pub fn greet() -> &'static str {\n    \"helo\"\n}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("README.md"), "A greeting crate.\n").unwrap();
    dir
}

async fn router(dir: &std::path::Path, extra: Vec<Arc<dyn DynTool>>) -> ToolRouter {
    let root = WorkspaceRoot::new(dir).unwrap();
    let mut registry = ToolRegistry::new();
    registry
        .register_all(workspace_tools(&root, &WorkspaceToolOptions::default()).await)
        .unwrap();
    registry.register_all(extra).unwrap();
    ToolRouter::new(registry)
}

fn task(fake: &FakeLlm, tools: ToolRouter) -> Task {
    let mut task = Task::new(
        "Fix the typo in greet.",
        provider(fake),
        ModelSettings::new("fake-model"),
        tools,
    );
    task.system = "You are a careful engineer.".into();
    task
}

fn results(events: &[AgentEvent]) -> Vec<(String, String, bool)> {
    events
        .iter()
        .filter_map(|event| match event {
            AgentEvent::ToolResult {
                name,
                content,
                is_error,
                ..
            } => Some((name.clone(), content.clone(), *is_error)),
            _ => None,
        })
        .collect()
}

fn finished(events: &[AgentEvent]) -> (FinishReason, u32, String) {
    match events.last() {
        Some(AgentEvent::Finished {
            reason,
            turns,
            text,
            ..
        }) => (*reason, *turns, text.clone()),
        other => panic!("the last event is not `finished`: {other:?}"),
    }
}

fn count_finished(events: &[AgentEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, AgentEvent::Finished { .. }))
        .count()
}

/// The tool results the model was sent in request `i`, as JSON text (any API).
fn request_text(fake: &FakeLlm, i: usize) -> String {
    fake.requests()[i].body.to_string()
}

async fn read_search_edit(api: Api) {
    let dir = workspace();
    let fake = FakeLlm::start(api).await;
    fake.push(Reply::tool_calls(&[(
        "call_1",
        "read_file",
        json!({"path": "src/lib.rs"}),
    )]));
    fake.push(Reply::tool_calls(&[(
        "call_2",
        "search",
        json!({"pattern": "hel+o"}),
    )]));
    fake.push(
        Reply::tool_calls(&[(
            "call_3",
            "edit_file",
            json!({"path": "src/lib.rs", "old_text": "\"helo\"", "new_text": "\"hello\""}),
        )])
        .with_text("Fixing it now."),
    );
    fake.push(Reply::text("The typo is fixed."));
    let run = start(task(&fake, router(dir.path(), Vec::new()).await));
    let (events, outcome) = run.collect().await;

    assert_eq!(
        std::fs::read_to_string(dir.path().join("src/lib.rs")).unwrap(),
        "pub fn greet() -> &'static str {\n    \"hello\"\n}\n"
    );
    assert_eq!(
        finished(&events),
        (FinishReason::Completed, 4, "The typo is fixed.".to_owned())
    );
    assert_eq!(count_finished(&events), 1);
    assert_eq!(outcome.reason, FinishReason::Completed);
    assert_eq!(outcome.turns, 4);
    assert_eq!(outcome.usage.input_tokens, 4 * 12);
    let results = results(&events);
    let names: Vec<_> = results.iter().map(|(n, _, e)| (n.as_str(), *e)).collect();
    assert_eq!(
        names,
        [
            ("read_file", false),
            ("search", false),
            ("edit_file", false)
        ]
    );
    assert!(results[0].1.contains("\"helo\""), "{}", results[0].1);
    assert!(results[1].1.contains("src/lib.rs"), "{}", results[1].1);
    // The model saw each result in the next request.
    assert_eq!(fake.requests().len(), 4);
    assert!(request_text(&fake, 1).contains("helo"));
    assert!(request_text(&fake, 3).contains("Fixing it now."));
    // Events: a turn_started per turn, the text streamed, tool calls before their results.
    let turns = events
        .iter()
        .filter(|e| matches!(e, AgentEvent::TurnStarted { .. }))
        .count();
    assert_eq!(turns, 4);
    let streamed: String = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::TextDelta { turn: 4, text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(streamed, "The typo is fixed.");
    let call_at = events
        .iter()
        .position(|e| matches!(e, AgentEvent::ToolCall { call, .. } if call.name == "edit_file"))
        .unwrap();
    let result_at = events
        .iter()
        .position(|e| matches!(e, AgentEvent::ToolResult { name, .. } if name == "edit_file"))
        .unwrap();
    assert!(call_at < result_at);
    // The conversation is kept: instructions, 4 answers, 3 tool result messages.
    assert_eq!(outcome.messages.len(), 1 + 4 + 3);
    fake.assert_invariants();
}

#[tokio::test]
async fn read_search_edit_changes_the_file_anthropic() {
    read_search_edit(Api::Anthropic).await;
}

#[tokio::test]
async fn read_search_edit_changes_the_file_openai() {
    read_search_edit(Api::OpenAi).await;
}

#[tokio::test]
async fn read_search_edit_changes_the_file_gemini() {
    read_search_edit(Api::Gemini).await;
}

#[tokio::test]
async fn escape_attempts_are_refused_and_the_run_goes_on() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "outside-secret-42\n").unwrap();
    let dir = workspace();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), dir.path().join("link")).unwrap();
    let fake = FakeLlm::start(Api::Anthropic).await;
    fake.push(Reply::tool_calls(&[
        ("c1", "read_file", json!({"path": "../secret.txt"})),
        ("c2", "read_file", json!({"path": "/etc/passwd"})),
        ("c3", "read_file", json!({"path": "link"})),
        (
            "c4",
            "write_file",
            json!({"path": "../escaped.txt", "content": "x"}),
        ),
    ]));
    fake.push(Reply::tool_calls(&[(
        "c5",
        "read_file",
        json!({"path": "README.md"}),
    )]));
    fake.push(Reply::text("I stayed inside."));
    let (events, outcome) = start(task(&fake, router(dir.path(), Vec::new()).await))
        .collect()
        .await;

    let results = results(&events);
    assert_eq!(results.len(), 5);
    for (name, content, is_error) in &results[..4] {
        assert!(is_error, "{name}: {content}");
        assert!(!content.contains("outside-secret-42"), "{content}");
        assert!(!content.contains("root:"), "{content}");
    }
    assert_eq!(results[4].0, "read_file");
    assert!(!results[4].2);
    assert!(
        results[4].1.contains("A greeting crate."),
        "{}",
        results[4].1
    );
    assert!(!dir.path().parent().unwrap().join("escaped.txt").exists());
    assert_eq!(outcome.reason, FinishReason::Completed);
    assert_eq!(finished(&events).0, FinishReason::Completed);
    for i in 0..fake.requests().len() {
        assert!(!request_text(&fake, i).contains("outside-secret-42"));
    }
    fake.assert_invariants();
}

#[tokio::test]
async fn a_bad_argument_goes_back_to_the_model_and_the_next_turn_fixes_it() {
    let dir = workspace();
    let fake = FakeLlm::start(Api::OpenAi).await;
    fake.push(Reply::tool_calls(&[(
        "c1",
        "read_file",
        json!({"file": "src/lib.rs"}),
    )]));
    fake.push(Reply::tool_calls(&[(
        "c2",
        "read_file",
        json!({"path": "src/lib.rs"}),
    )]));
    fake.push(Reply::text("Read it."));
    let (events, outcome) = start(task(&fake, router(dir.path(), Vec::new()).await))
        .collect()
        .await;

    let results = results(&events);
    assert_eq!(results.len(), 2);
    assert!(results[0].2);
    assert!(
        results[0].1.contains("invalid arguments for read_file"),
        "{}",
        results[0].1
    );
    assert!(!results[1].2);
    assert!(results[1].1.contains("helo"));
    // The error reached the model as the answer to its call.
    assert!(request_text(&fake, 1).contains("invalid arguments for read_file"));
    assert_eq!(outcome.reason, FinishReason::Completed);
    assert_eq!(
        finished(&events),
        (FinishReason::Completed, 3, "Read it.".to_owned())
    );
    fake.assert_invariants();
}

#[tokio::test]
async fn max_turns_ends_the_run_after_the_last_turns_tools() {
    let dir = workspace();
    let fake = FakeLlm::start(Api::Anthropic).await;
    for i in 0..3 {
        fake.push(Reply::tool_calls(&[(
            &format!("c{i}"),
            "list_files",
            json!({}),
        )]));
    }
    let mut task = task(&fake, router(dir.path(), Vec::new()).await);
    task.limits.max_turns = 2;
    let (events, outcome) = start(task).collect().await;

    assert_eq!(finished(&events).0, FinishReason::MaxTurns);
    assert_eq!(finished(&events).1, 2);
    assert_eq!(outcome.reason, FinishReason::MaxTurns);
    assert_eq!(fake.requests().len(), 2);
    // Both turns' tools ran and their results are kept.
    assert_eq!(results(&events).len(), 2);
    assert_eq!(outcome.messages.len(), 1 + 2 + 2);
    fake.assert_invariants();
}

fn priced(per_million: f64) -> PriceTable {
    let mut prices = PriceTable::default();
    prices.set(
        "fake-model",
        Price {
            input: per_million,
            output: per_million,
            cache_read: 0.0,
            cache_write: 0.0,
        },
    );
    prices
}

#[tokio::test]
async fn the_budget_ends_the_run_before_the_next_model_call() {
    let dir = workspace();
    let fake = FakeLlm::start(Api::OpenAi).await;
    let usage = FakeUsage {
        input: 1000,
        output: 1000,
        cache_read: 0,
        cache_write: 0,
    };
    for i in 0..3 {
        fake.push(
            Reply::tool_calls(&[(&format!("c{i}"), "read_file", json!({"path": "README.md"}))])
                .with_usage(usage),
        );
    }
    let mut task = task(&fake, router(dir.path(), Vec::new()).await);
    // $1 per million tokens: each call costs $0.002; the third would start at $0.004.
    task.prices = priced(1.0);
    task.limits.budget_usd = Some(0.003);
    let (events, outcome) = start(task).collect().await;

    assert_eq!(outcome.reason, FinishReason::Budget);
    assert_eq!(finished(&events).0, FinishReason::Budget);
    assert_eq!(fake.requests().len(), 2);
    assert!(
        (outcome.cost_usd - 0.004).abs() < 1e-9,
        "{}",
        outcome.cost_usd
    );
    let totals: Vec<f64> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Usage { total_cost_usd, .. } => Some(*total_cost_usd),
            _ => None,
        })
        .collect();
    assert_eq!(totals.len(), 2);
    assert!((totals[0] - 0.002).abs() < 1e-9);
    assert_eq!(results(&events).len(), 2);
    fake.assert_invariants();
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct NoArgs {}

/// Waits until its call is cancelled; tells the test when it started. With `pause`, it pauses
/// the (current-thread) test runtime's clock, so the run's deadline comes at once.
struct Blocker {
    started: Arc<Notify>,
    pause: bool,
    cleaned_up: Arc<Notify>,
}

impl Tool for Blocker {
    type Args = NoArgs;

    fn name(&self) -> &str {
        "wait_forever"
    }

    fn description(&self) -> String {
        "Waits until the run stops.".into()
    }

    fn writes(&self) -> bool {
        false
    }

    async fn call(&self, _args: NoArgs, ctx: &ToolContext) -> ToolResult {
        if self.pause {
            tokio::time::pause();
        }
        self.started.notify_one();
        ctx.cancel.cancelled().await;
        self.cleaned_up.notify_one();
        Err(ToolError::respond("stopped"))
    }
}

fn blocker(pause: bool) -> (Arc<dyn DynTool>, Arc<Notify>, Arc<Notify>) {
    let started = Arc::new(Notify::new());
    let cleaned_up = Arc::new(Notify::new());
    let tool = Blocker {
        started: started.clone(),
        pause,
        cleaned_up: cleaned_up.clone(),
    };
    (Arc::new(tool), started, cleaned_up)
}

#[tokio::test]
async fn the_timeout_stops_a_tool_in_flight_and_keeps_the_events() {
    let dir = workspace();
    let fake = FakeLlm::start(Api::Anthropic).await;
    fake.push(Reply::tool_calls(&[("c1", "wait_forever", json!({}))]).with_text("Waiting."));
    let (tool, _started, cleaned_up) = blocker(true);
    let mut task = task(&fake, router(dir.path(), vec![tool]).await);
    task.limits.timeout = Some(Duration::from_secs(600));
    let (events, outcome) = start(task).collect().await;
    // The tool was told to stop (its token was cancelled) before the run ended.
    cleaned_up.notified().await;

    assert_eq!(outcome.reason, FinishReason::Timeout);
    assert_eq!(
        finished(&events),
        (FinishReason::Timeout, 1, "Waiting.".to_owned())
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::ToolCall { call, .. } if call.name == "wait_forever"))
    );
    assert!(events.iter().any(|e| matches!(e, AgentEvent::Usage { .. })));
    assert_eq!(count_finished(&events), 1);
}

#[tokio::test]
async fn cancellation_stops_the_run_and_keeps_the_events() {
    let dir = workspace();
    let fake = FakeLlm::start(Api::Gemini).await;
    fake.push(Reply::tool_calls(&[("c1", "wait_forever", json!({}))]));
    let (tool, started, cleaned_up) = blocker(false);
    let mut run = start(task(&fake, router(dir.path(), vec![tool]).await));
    let mut events = Vec::new();
    // Read events as they come until the tool runs, then cancel.
    let mut waiting = std::pin::pin!(started.notified());
    loop {
        tokio::select! {
            () = &mut waiting => break,
            event = futures::StreamExt::next(&mut run) => events.push(event.unwrap()),
        }
    }
    run.cancel();
    let (rest, outcome) = run.collect().await;
    events.extend(rest);
    cleaned_up.notified().await;

    assert_eq!(outcome.reason, FinishReason::Cancelled);
    assert_eq!(finished(&events).0, FinishReason::Cancelled);
    assert!(matches!(events[0], AgentEvent::TurnStarted { turn: 1 }));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::ToolCall { .. }))
    );
    assert_eq!(count_finished(&events), 1);
}

#[tokio::test]
async fn cancelling_before_the_first_turn_makes_no_model_call() {
    let dir = workspace();
    let fake = FakeLlm::start(Api::Anthropic).await;
    let task = task(&fake, router(dir.path(), Vec::new()).await);
    task.cancel.cancel();
    let (events, outcome) = start(task).collect().await;
    assert_eq!(outcome.reason, FinishReason::Cancelled);
    assert_eq!(events.len(), 1);
    assert!(fake.requests().is_empty());
}

/// Always fails with a broken invariant.
struct Broken;

impl Tool for Broken {
    type Args = NoArgs;

    fn name(&self) -> &str {
        "broken"
    }

    fn description(&self) -> String {
        "Breaks.".into()
    }

    fn writes(&self) -> bool {
        true
    }

    async fn call(&self, _args: NoArgs, _ctx: &ToolContext) -> ToolResult {
        Err(ToolError::Fatal("the workspace vanished".into()))
    }
}

#[tokio::test]
async fn a_fatal_tool_error_ends_the_run_with_reason_error() {
    let dir = workspace();
    let fake = FakeLlm::start(Api::Anthropic).await;
    fake.push(Reply::tool_calls(&[("c1", "broken", json!({}))]));
    let task = task(&fake, router(dir.path(), vec![Arc::new(Broken)]).await);
    let (events, outcome) = start(task).collect().await;

    assert_eq!(outcome.reason, FinishReason::Error);
    assert!(
        outcome
            .error
            .as_deref()
            .unwrap()
            .contains("the workspace vanished")
    );
    let n = events.len();
    assert!(
        matches!(&events[n - 2], AgentEvent::Error { message } if message.contains("vanished"))
    );
    assert_eq!(finished(&events).0, FinishReason::Error);
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn a_failing_model_call_ends_the_run_with_reason_error() {
    let dir = workspace();
    let fake = FakeLlm::start(Api::OpenAi).await;
    fake.push(Reply::error(
        kodiai_test_support::llm::FakeError::Unauthorized,
    ));
    let task = task(&fake, router(dir.path(), Vec::new()).await);
    let (events, outcome) = start(task).collect().await;
    assert_eq!(outcome.reason, FinishReason::Error);
    assert!(events.iter().any(|e| matches!(e, AgentEvent::Error { .. })));
    assert_eq!(finished(&events).0, FinishReason::Error);
    // The key never reaches the events.
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains(KEY));
    let _: Value = serde_json::from_str(&all).unwrap();
}

#[tokio::test]
async fn dropping_the_run_stops_it_and_its_tools() {
    let dir = workspace();
    let fake = FakeLlm::start(Api::Anthropic).await;
    fake.push(Reply::tool_calls(&[("c1", "wait_forever", json!({}))]));
    fake.push(Reply::text("never asked for"));
    let (tool, started, cleaned_up) = blocker(false);
    let run = start(task(&fake, router(dir.path(), vec![tool]).await));
    started.notified().await;
    drop(run);
    // The tool's token is cancelled although nobody called `cancel`.
    cleaned_up.notified().await;
    assert_eq!(fake.requests().len(), 1);
}
