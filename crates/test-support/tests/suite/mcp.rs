//! The agent's MCP client against the real test server, over stdio and streamable HTTP: tools
//! listed and called through the loop with a scripted model, tool errors back to the model, a
//! server that exits at start, the child's environment, and the child's process group gone
//! after the task.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kodiai_agent::mcp::{McpClients, McpError, McpServerConfig, SAFE_PATH};
use kodiai_agent::tools::{ToolContext, ToolRegistry, ToolRouter};
use kodiai_agent::{Task, start};
use kodiai_llm::{Anthropic, AnthropicAuth, ModelSettings, Provider, Timeouts};
use kodiai_protocol::{AgentEvent, FinishReason, ToolCall};
use kodiai_test_support::llm::{Api, FakeLlm, Reply};
use pretty_assertions::assert_eq;
use serde_json::json;
use tokio::io::AsyncBufReadExt as _;
use tokio_util::sync::CancellationToken;

const SERVER: &str = env!("CARGO_BIN_EXE_kodiai-test-mcp");

fn stdio(args: &[&str], env: &[(&str, &str)]) -> McpServerConfig {
    McpServerConfig::Stdio {
        command: SERVER.to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        cwd: None,
    }
}

fn servers(config: McpServerConfig) -> Vec<(String, McpServerConfig)> {
    vec![("test".to_owned(), config)]
}

fn provider(fake: &FakeLlm) -> Arc<dyn Provider> {
    let url = url::Url::parse(&fake.base_url()).unwrap();
    let timeouts = Timeouts {
        connect: Duration::from_secs(5),
        first_byte: Duration::from_secs(30),
        idle: Duration::from_secs(30),
    };
    Arc::new(
        Anthropic::new(
            url,
            AnthropicAuth::ApiKey("sk-test-not-real".into()),
            timeouts,
        )
        .unwrap(),
    )
}

fn router(clients: &McpClients) -> ToolRouter {
    let mut registry = ToolRegistry::new();
    registry.register_all(clients.tools()).unwrap();
    ToolRouter::new(registry)
}

/// Runs one task with the servers' tools and returns its tool results (name, content, error).
async fn run(fake: &FakeLlm, clients: &McpClients) -> (Vec<(String, String, bool)>, FinishReason) {
    let task = Task::new(
        "Use the test tools.",
        provider(fake),
        ModelSettings::new("fake-model"),
        router(clients),
    );
    let (events, outcome) = start(task).collect().await;
    let results = events
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
        .collect();
    (results, outcome.reason)
}

fn result(name: &str, content: &str, is_error: bool) -> (String, String, bool) {
    (name.to_owned(), content.to_owned(), is_error)
}

#[tokio::test]
async fn stdio_tools_are_listed_and_called_through_the_loop() {
    let clients = McpClients::start(&servers(stdio(&[], &[])), CancellationToken::new())
        .await
        .unwrap();
    let names: Vec<String> = clients.tools().iter().map(|t| t.spec().name).collect();
    assert_eq!(
        names,
        [
            "test__echo",
            "test__add",
            "test__fail",
            "test__env",
            "test__header",
            "test__spawn_sleeper"
        ]
    );
    let echo = clients.tools()[0].spec();
    assert_eq!(echo.description, "Returns its text.");
    assert_eq!(echo.input_schema["properties"]["text"]["type"], "string");

    let fake = FakeLlm::start(Api::Anthropic).await;
    fake.push(Reply::tool_calls(&[(
        "call_1",
        "test__echo",
        json!({"text": "hello over stdio"}),
    )]));
    fake.push(Reply::tool_calls(&[(
        "call_2",
        "test__fail",
        json!({"message": "the widget is broken"}),
    )]));
    fake.push(Reply::text("Done."));
    let (results, reason) = run(&fake, &clients).await;
    assert_eq!(reason, FinishReason::Completed);
    assert_eq!(
        results,
        [
            result("test__echo", "hello over stdio", false),
            result("test__fail", "the widget is broken", true),
        ]
    );
    // The model got both back: the echo in the second request, the failure in the third,
    // marked as an error.
    let requests = fake.requests();
    assert!(requests[1].body.to_string().contains("hello over stdio"));
    let third = requests[2].body.to_string();
    assert!(third.contains("the widget is broken"), "{third}");
    assert!(third.contains("\"is_error\":true"), "{third}");
    fake.assert_invariants();
    clients.shutdown().await;
}

#[tokio::test]
async fn http_tools_are_listed_and_called_through_the_loop() {
    let mut server = tokio::process::Command::new(SERVER)
        .args(["--http", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let url = lines
        .next_line()
        .await
        .unwrap()
        .expect("the server prints its URL");
    let config = McpServerConfig::Http {
        url: url.parse().unwrap(),
        headers: BTreeMap::from([("X-Test-Token".to_owned(), "token-for-the-server".to_owned())]),
    };
    let clients = McpClients::start(&servers(config), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(clients.tools().len(), 6);
    assert!(clients.pids().is_empty(), "no child for an HTTP server");

    let fake = FakeLlm::start(Api::Anthropic).await;
    fake.push(Reply::tool_calls(&[
        ("call_1", "test__add", json!({"a": 2, "b": 3.5})),
        ("call_2", "test__header", json!({"name": "x-test-token"})),
    ]));
    fake.push(Reply::tool_calls(&[(
        "call_3",
        "test__echo",
        json!({"text": "hello over HTTP"}),
    )]));
    fake.push(Reply::text("Done."));
    let (results, reason) = run(&fake, &clients).await;
    assert_eq!(reason, FinishReason::Completed);
    assert_eq!(
        results,
        [
            result("test__add", "5.5", false),
            result("test__header", "token-for-the-server", false),
            result("test__echo", "hello over HTTP", false),
        ]
    );
    assert!(
        fake.requests()[2]
            .body
            .to_string()
            .contains("hello over HTTP")
    );
    clients.shutdown().await;
    server.kill().await.unwrap();
}

#[tokio::test]
async fn a_server_that_exits_at_start_reports_its_stderr() {
    let config = stdio(
        &[
            "--exit-at-start",
            "cannot open /var/lib/widgets.db: permission denied",
        ],
        &[],
    );
    let error = McpClients::start(&servers(config), CancellationToken::new())
        .await
        .unwrap_err();
    let McpError::Start { server, stderr, .. } = &error else {
        panic!("expected a start error, got {error:?}");
    };
    assert_eq!(server, "test");
    assert_eq!(stderr, "cannot open /var/lib/widgets.db: permission denied");
    let shown = error.to_string();
    assert!(shown.contains("`test` did not start"), "{shown}");
    assert!(shown.contains("permission denied"), "{shown}");
}

#[tokio::test]
async fn a_missing_program_is_a_start_error() {
    let config = McpServerConfig::Stdio {
        command: "/nonexistent/mcp-server".into(),
        args: vec![],
        env: BTreeMap::new(),
        cwd: None,
    };
    let error = McpClients::start(&servers(config), CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("/nonexistent/mcp-server"), "{error}");
}

#[tokio::test]
async fn ld_preload_in_the_config_is_refused() {
    let config = stdio(&[], &[("LD_PRELOAD", "/tmp/evil.so")]);
    let error = McpClients::start(&servers(config), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(error, McpError::Config { .. }), "{error:?}");
    assert!(error.to_string().contains("`LD_PRELOAD`"), "{error}");
}

async fn ask_env(clients: &McpClients, name: &str) -> String {
    let router = router(clients);
    let call = ToolCall {
        id: "c".into(),
        name: "test__env".into(),
        arguments: json!({"name": name}),
    };
    let answer = router
        .dispatch(&call, &ToolContext::default())
        .await
        .unwrap();
    assert!(!answer.output.is_error, "{answer:?}");
    answer.output.content
}

/// Marks the run of [`host_secrets_child_side`] that
/// [`the_child_gets_no_host_secret`] starts with secrets in its environment.
const CHILD_SIDE: &str = "KODIAI_TEST_MCP_PARENT_HAS_SECRETS";

/// Runs this test binary again, with host secrets in its environment (a test cannot set its
/// own: `set_var` is unsafe), for [`host_secrets_child_side`].
#[tokio::test]
async fn the_child_gets_no_host_secret() {
    let output = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "suite::mcp::host_secrets_child_side",
            "--nocapture",
        ])
        .env(CHILD_SIDE, "1")
        .env("GITHUB_TOKEN", "ghp_fakeHostTokenThatMustNotLeak0000000")
        .env("ANTHROPIC_API_KEY", "sk-ant-fake-host-key")
        .env("KODIAI_ADMIN_TOKEN", "fake-admin-token")
        .env("LD_LIBRARY_PATH", "/tmp/host-libs")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
}

/// With secrets in this process's environment (when run by [`the_child_gets_no_host_secret`]),
/// the server sees none of them, only its allow-list and its configuration.
#[tokio::test]
async fn host_secrets_child_side() {
    let parent_has_secrets = std::env::var(CHILD_SIDE).is_ok();
    if parent_has_secrets {
        assert!(std::env::var("GITHUB_TOKEN").is_ok());
    }
    let config = stdio(
        &[],
        &[
            ("SERVER_MODE", "test"),
            ("SERVICE_TOKEN", "given-on-purpose"),
        ],
    );
    let clients = McpClients::start(&servers(config), CancellationToken::new())
        .await
        .unwrap();
    for secret in [
        "GITHUB_TOKEN",
        "ANTHROPIC_API_KEY",
        "KODIAI_ADMIN_TOKEN",
        "LD_LIBRARY_PATH",
        CHILD_SIDE,
    ] {
        assert_eq!(
            ask_env(&clients, secret).await,
            "",
            "{secret} reached the server"
        );
    }
    assert_eq!(ask_env(&clients, "PATH").await, SAFE_PATH);
    assert_eq!(ask_env(&clients, "SERVER_MODE").await, "test");
    // What the configuration sets on purpose is the operator's choice and is passed.
    assert_eq!(ask_env(&clients, "SERVICE_TOKEN").await, "given-on-purpose");
    assert_eq!(
        ask_env(&clients, "HOME").await,
        std::env::var("HOME").unwrap_or_default()
    );
    clients.shutdown().await;
}

#[tokio::test]
async fn the_server_and_its_children_are_gone_after_the_task() {
    let clients = McpClients::start(&servers(stdio(&[], &[])), CancellationToken::new())
        .await
        .unwrap();
    let [(name, server_pid)] = clients.pids().try_into().unwrap();
    assert_eq!(name, "test");
    let router = router(&clients);
    let call = ToolCall {
        id: "c".into(),
        name: "test__spawn_sleeper".into(),
        arguments: json!({}),
    };
    let answer = router
        .dispatch(&call, &ToolContext::default())
        .await
        .unwrap();
    let sleeper: u32 = answer.output.content.parse().unwrap();
    assert!(
        kodiai_test_support::process::running(server_pid)
            && kodiai_test_support::process::running(sleeper)
    );

    clients.shutdown().await;
    assert!(
        kodiai_test_support::process::exits(server_pid),
        "the server {server_pid} outlived the task"
    );
    assert!(
        kodiai_test_support::process::exits(sleeper),
        "the server's child {sleeper} outlived the task"
    );

    // Its tools, still held by a router, now answer that the server is gone.
    let call = ToolCall {
        id: "c2".into(),
        name: "test__echo".into(),
        arguments: json!({"text": "anyone there?"}),
    };
    let answer = router
        .dispatch(&call, &ToolContext::default())
        .await
        .unwrap();
    assert!(answer.output.is_error);
    assert!(
        answer.output.content.contains("MCP server `test`"),
        "{}",
        answer.output.content
    );
}

#[tokio::test]
async fn cancelling_the_task_stops_the_servers() {
    let cancel = CancellationToken::new();
    let clients = McpClients::start(&servers(stdio(&[], &[])), cancel.clone())
        .await
        .unwrap();
    let [(_, pid)] = clients.pids().try_into().unwrap();
    cancel.cancel();
    // shutdown() waits for what the cancellation started.
    clients.shutdown().await;
    assert!(kodiai_test_support::process::exits(pid));
}
