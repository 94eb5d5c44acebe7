//! `kodiai run` as the real binary against the fake model APIs: the agent edits a directory,
//! prints its events (JSON lines or text), and exits by outcome (0 completed, 1 otherwise, 2 bad
//! usage).

use kodiai_protocol::{AgentEvent, FinishReason};
use kodiai_test_support::llm::{Api, FakeError, FakeLlm, Reply};
use serde_json::json;

const EXE: &str = env!("CARGO_BIN_EXE_kodiai");

fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("greet.txt"), "helo world\n").unwrap();
    dir
}

async fn kodiai_run(fake: Option<&FakeLlm>, args: &[&str]) -> std::process::Output {
    kodiai_run_with(fake, args, &[]).await
}

async fn kodiai_run_with(
    fake: Option<&FakeLlm>,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let cwd = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(EXE);
    command
        .arg("run")
        .args(args)
        .current_dir(cwd.path())
        .env_remove("KODIAI_CONFIG")
        .env_remove("KODIAI_MODEL")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("GEMINI_API_KEY")
        .env_remove("CLAUDE_CODE_OAUTH_TOKEN")
        .env_remove("KODIAI_AGENT_BACKEND")
        .env_remove("KODIAI_ALLOWED_TOOLS")
        .env_remove("CLAUDE_CLI_PATH")
        .env_remove("GEMINI_CLI_PATH");
    match fake.map(|f| (f.api, f.base_url())) {
        Some((Api::Anthropic, base)) => {
            command
                .env("ANTHROPIC_API_KEY", "sk-ant-test-not-real")
                .env("ANTHROPIC_BASE_URL", base)
                .env("KODIAI_MODEL", "anthropic/claude-haiku-4-5");
        }
        Some((Api::OpenAi, base)) => {
            command
                .env("OPENAI_API_KEY", "sk-test-not-real")
                .env("OPENAI_BASE_URL", base)
                .env("KODIAI_MODEL", "openai/gpt-4.1-mini");
        }
        Some((Api::Gemini, _)) | None => {}
    }
    command.envs(env.iter().copied());
    command.output().await.unwrap()
}

fn events(stdout: &[u8]) -> Vec<AgentEvent> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

/// The reason, turns and text of the last event, which must be `Finished`.
fn finished(events: &[AgentEvent]) -> (FinishReason, u32, &str) {
    match events.last().unwrap() {
        AgentEvent::Finished {
            reason,
            turns,
            text,
            ..
        } => (*reason, *turns, text),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn run_edits_the_directory_and_prints_json_events() {
    let dir = workspace();
    let fake = FakeLlm::start(Api::Anthropic).await;
    fake.push(Reply::tool_calls(&[(
        "toolu_1",
        "read_file",
        json!({"path": "greet.txt"}),
    )]));
    fake.push(Reply::tool_calls(&[(
        "toolu_2",
        "edit_file",
        json!({"path": "greet.txt", "old_text": "helo", "new_text": "hello"}),
    )]));
    fake.push(Reply::text("Fixed the typo."));
    let path = dir.path().to_str().unwrap();
    let output = kodiai_run(
        Some(&fake),
        &["--dir", path, "--json", "Fix the typo in greet.txt"],
    )
    .await;

    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("greet.txt")).unwrap(),
        "hello world\n"
    );
    let events = events(&output.stdout);
    assert!(matches!(events[0], AgentEvent::TurnStarted { turn: 1 }));
    let (reason, turns, text) = finished(&events);
    assert_eq!(reason, FinishReason::Completed);
    assert_eq!(turns, 3);
    assert_eq!(text, "Fixed the typo.");
    let results: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ToolResult { name, is_error, .. } => Some((name.as_str(), *is_error)),
            _ => None,
        })
        .collect();
    assert_eq!(results, [("read_file", false), ("edit_file", false)]);
    // The model got the workspace tools, the instructions and the configured model.
    let first = &fake.requests()[0].body;
    assert_eq!(first["model"], "claude-haiku-4-5");
    let tools: Vec<_> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    for name in [
        "read_file",
        "list_files",
        "search",
        "edit_file",
        "write_file",
    ] {
        assert!(tools.iter().any(|t| t == name), "{tools:?}");
    }
    assert!(!tools.iter().any(|t| t == "run_command"), "{tools:?}");
    assert!(first.to_string().contains("Fix the typo in greet.txt"));
    fake.assert_invariants();
}

#[tokio::test]
async fn run_prints_text_and_exits_1_at_max_turns() {
    let dir = workspace();
    let fake = FakeLlm::start(Api::OpenAi).await;
    fake.push(Reply::tool_calls(&[("call_1", "list_files", json!({}))]).with_text("Let me look."));
    let path = dir.path().to_str().unwrap();
    let output = kodiai_run(
        Some(&fake),
        &[
            "--dir",
            path,
            "--max-turns",
            "1",
            "--model",
            "openai/gpt-4.1",
            "Look around",
        ],
    )
    .await;

    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("── turn 1\nLet me look.\n"), "{stdout}");
    assert!(stdout.contains("→ list_files {}"), "{stdout}");
    assert!(stdout.contains("← list_files: ok"), "{stdout}");
    assert!(
        stdout.contains("finished: max_turns after 1 turns"),
        "{stdout}"
    );
    // --model chose the model.
    assert_eq!(fake.requests()[0].body["model"], "gpt-4.1");
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn run_exits_1_when_the_model_fails() {
    let dir = workspace();
    let fake = FakeLlm::start(Api::Anthropic).await;
    fake.push(Reply::error(FakeError::Unauthorized));
    let path = dir.path().to_str().unwrap();
    let output = kodiai_run(Some(&fake), &["--dir", path, "--json", "Do it"]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let events = events(&output.stdout);
    assert!(events.iter().any(|e| matches!(e, AgentEvent::Error { .. })));
    assert!(matches!(
        events.last().unwrap(),
        AgentEvent::Finished {
            reason: FinishReason::Error,
            ..
        }
    ));
    assert!(!String::from_utf8_lossy(&output.stdout).contains("sk-ant-test-not-real"));
}

#[tokio::test]
async fn run_exits_2_on_bad_usage_with_one_line() {
    let fake = FakeLlm::start(Api::Anthropic).await;
    let missing = tempfile::tempdir().unwrap().path().join("nope");
    let missing = missing.to_str().unwrap();
    let output = kodiai_run(Some(&fake), &["--dir", missing, "Do it"]).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(missing), "{stderr}");

    let dir = workspace();
    let path = dir.path().to_str().unwrap();
    let output = kodiai_run(
        Some(&fake),
        &["--dir", path, "--model", "no-slash", "Do it"],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("no-slash"));

    let output = kodiai_run(Some(&fake), &["--dir", path, "--max-turns", "0", "Do it"]).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(fake.requests().is_empty());
}

fn tool_names(request: &serde_json::Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn run_command_is_offered_only_when_allowed_tools_names_it() {
    let dir = workspace();
    let path = dir.path().to_str().unwrap();
    let fake = FakeLlm::start(Api::Anthropic).await;
    fake.push(Reply::text("Nothing to do."));
    fake.push(Reply::text("Nothing to do."));
    fake.push(Reply::text("Nothing to do."));

    let output = kodiai_run(Some(&fake), &["--dir", path, "Look"]).await;
    assert!(output.status.success(), "{output:?}");
    let output = kodiai_run_with(
        Some(&fake),
        &["--dir", path, "Look"],
        &[("KODIAI_ALLOWED_TOOLS", "run_command")],
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let output = kodiai_run_with(
        Some(&fake),
        &["--dir", path, "Look"],
        &[("KODIAI_ALLOWED_TOOLS", "some_mcp__tool")],
    )
    .await;
    assert!(output.status.success(), "{output:?}");

    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    let (off, on, other) = (
        tool_names(&requests[0].body),
        tool_names(&requests[1].body),
        tool_names(&requests[2].body),
    );
    assert!(!off.iter().any(|t| t == "run_command"), "{off:?}");
    assert!(on.iter().any(|t| t == "run_command"), "{on:?}");
    assert!(!other.iter().any(|t| t == "run_command"), "{other:?}");
    // Otherwise the same tools.
    let without: Vec<_> = on.iter().filter(|t| *t != "run_command").cloned().collect();
    assert_eq!(without, off);
    fake.assert_invariants();
}

/// A fake CLI: records its argv (NUL-separated) and environment, plays a recorded transcript.
fn fake_cli(dir: &std::path::Path, transcript: &str, exit: i32) -> std::path::PathBuf {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../agent/tests/fixtures/cli")
        .join(transcript);
    let d = dir.display();
    let program = dir.join("fake-cli");
    std::fs::write(
        &program,
        format!(
            "#!/bin/bash\nprintf '%s\\0' \"$@\" > '{d}/argv'\nenv > '{d}/env'\ncat '{}'\nexit {exit}\n",
            fixture.display()
        ),
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&program).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&program, permissions).unwrap();
    program
}

fn argv(dir: &std::path::Path) -> Vec<String> {
    std::fs::read(dir.join("argv"))
        .unwrap()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn flag<'a>(argv: &'a [String], name: &str) -> Option<&'a str> {
    argv.iter()
        .position(|a| a == name)
        .map(|i| argv[i + 1].as_str())
}

#[tokio::test]
async fn run_on_claude_code_prints_the_same_events_and_allows_bash_only_when_configured() {
    let dir = workspace();
    let path = dir.path().to_str().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let program = fake_cli(bin.path(), "claude-tool-use.jsonl", 0);
    let program = program.to_str().unwrap();
    let key = [
        ("ANTHROPIC_API_KEY", "sk-ant-cli-test-not-real"),
        ("CLAUDE_CLI_PATH", program),
    ];

    let output = kodiai_run_with(
        None,
        &[
            "--dir",
            path,
            "--backend",
            "claude-code",
            "--max-turns",
            "12",
            "--json",
            "Fix it",
        ],
        &key,
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let events = events(&output.stdout);
    assert_eq!(events[0], AgentEvent::TurnStarted { turn: 1 });
    let (reason, turns, text) = finished(&events);
    assert_eq!(reason, FinishReason::Completed);
    assert_eq!(turns, 4);
    assert_eq!(text, "Fixed the typo: `greet` now returns \"hello\".");
    let argv = argv(bin.path());
    assert_eq!(flag(&argv, "-p"), Some("Fix it"));
    assert_eq!(flag(&argv, "--max-turns"), Some("12"));
    // No model is configured or given: the CLI's default.
    assert_eq!(flag(&argv, "--model"), None);
    let tools = flag(&argv, "--allowedTools").unwrap().to_owned();
    assert!(tools.split(',').any(|t| t == "Edit"), "{tools}");
    assert!(!tools.split(',').any(|t| t == "Bash"), "{tools}");
    let env = std::fs::read_to_string(bin.path().join("env")).unwrap();
    assert!(
        env.contains("ANTHROPIC_API_KEY=sk-ant-cli-test-not-real\n"),
        "{env}"
    );
    assert!(!env.contains("CLAUDE_CLI_PATH"), "{env}");

    let output = kodiai_run_with(
        None,
        &[
            "--dir",
            path,
            "--model",
            "anthropic/claude-opus-4-1",
            "Fix it",
        ],
        &[
            key[0],
            key[1],
            ("KODIAI_AGENT_BACKEND", "claude-code"),
            ("KODIAI_ALLOWED_TOOLS", "run_command"),
        ],
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("→ Read {\"file_path\":\"/work/repo/src/lib.rs\"}"),
        "{stdout}"
    );
    assert!(
        stdout.contains("finished: completed after 4 turns"),
        "{stdout}"
    );
    let argv = self::argv(bin.path());
    assert_eq!(flag(&argv, "--model"), Some("claude-opus-4-1"));
    let tools = flag(&argv, "--allowedTools").unwrap();
    assert!(tools.split(',').any(|t| t == "Bash"), "{tools}");
}

#[tokio::test]
async fn run_on_gemini_cli_exits_1_at_its_turn_limit_and_2_without_a_key() {
    let dir = workspace();
    let path = dir.path().to_str().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let program = fake_cli(bin.path(), "gemini-max-turns.jsonl", 53);
    let program = program.to_str().unwrap();

    let output = kodiai_run_with(
        None,
        &["--dir", path, "--backend", "gemini-cli", "--json", "Fix it"],
        &[
            ("GEMINI_API_KEY", "gemini-test-key-not-real"),
            ("GEMINI_CLI_PATH", program),
            ("GEMINI_BASE_URL", "http://127.0.0.1:9/gemini/"),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    // The configured endpoint is the CLI's too.
    let env = std::fs::read_to_string(bin.path().join("env")).unwrap();
    assert!(
        env.contains("GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:9/gemini\n"),
        "{env}"
    );
    // Its scratch (HOME and settings) is in the data folder, not under /tmp, whose mode makes
    // the CLI ignore its settings; the workspace is not trusted unless configured.
    assert!(env.contains("/data/cli/kodiai-cli-"), "{env}");
    assert!(!env.contains("GEMINI_CLI_TRUST_WORKSPACE"), "{env}");
    let trusted = kodiai_run_with(
        None,
        &["--dir", path, "--backend", "gemini-cli", "Fix it"],
        &[
            ("GEMINI_API_KEY", "gemini-test-key-not-real"),
            ("GEMINI_CLI_PATH", program),
            ("KODIAI_GEMINI_TRUST_WORKSPACE", "true"),
        ],
    )
    .await;
    assert_eq!(trusted.status.code(), Some(1), "{trusted:?}");
    let env = std::fs::read_to_string(bin.path().join("env")).unwrap();
    assert!(env.contains("GEMINI_CLI_TRUST_WORKSPACE=true\n"), "{env}");
    assert!(matches!(
        events(&output.stdout).last().unwrap(),
        AgentEvent::Finished {
            reason: FinishReason::MaxTurns,
            ..
        }
    ));
    assert_eq!(
        flag(&argv(bin.path()), "--output-format"),
        Some("stream-json")
    );

    let output = kodiai_run_with(
        None,
        &["--dir", path, "--backend", "gemini-cli", "Fix it"],
        &[("GEMINI_CLI_PATH", program)],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("GEMINI_API_KEY"));

    let output = kodiai_run_with(None, &["--dir", path, "--backend", "codex", "Fix it"], &[]).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("codex"));
}

#[tokio::test]
async fn run_on_claude_code_hands_it_the_configured_mcp_servers() {
    let dir = workspace();
    let path = dir.path().to_str().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let program = fake_cli(bin.path(), "claude-success.jsonl", 0);
    // The fake also keeps the file `--mcp-config` names (kodiai deletes it after the run).
    let script = std::fs::read_to_string(&program).unwrap().replacen(
        "env >",
        &format!(
            "for a in \"$@\"; do [ \"$p\" = --mcp-config ] && cp \"$a\" '{}/mcp.json'; p=\"$a\"; done\nenv >",
            bin.path().display()
        ),
        1,
    );
    std::fs::write(&program, script).unwrap();
    let config = bin.path().join("kodiai.toml");
    std::fs::write(
        &config,
        "[mcp.servers.docs]\ntransport = \"stdio\"\ncommand = \"docs-server\"\nargs = [\"--root\", \"/srv/docs\"]\nenv = { DOCS_MODE = \"read\" }\n\n\
         [mcp.servers.tracker]\ntransport = \"http\"\nurl = \"http://127.0.0.1:9/mcp\"\n",
    )
    .unwrap();
    let output = kodiai_run_with(
        None,
        &["--dir", path, "--backend", "claude-code", "Fix it"],
        &[
            ("ANTHROPIC_API_KEY", "sk-ant-cli-test-not-real"),
            ("CLAUDE_CLI_PATH", program.to_str().unwrap()),
            ("KODIAI_CONFIG", config.to_str().unwrap()),
        ],
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let mcp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bin.path().join("mcp.json")).unwrap()).unwrap();
    let servers = &mcp["mcpServers"];
    assert_eq!(servers["docs"]["command"], "docs-server");
    assert_eq!(
        servers["docs"]["args"],
        serde_json::json!(["--root", "/srv/docs"])
    );
    assert_eq!(servers["docs"]["env"]["DOCS_MODE"], "read");
    assert_eq!(servers["tracker"]["type"], "http");
    assert_eq!(servers["tracker"]["url"], "http://127.0.0.1:9/mcp");
    // Their tools are allowed.
    let tools = flag(&argv(bin.path()), "--allowedTools")
        .unwrap()
        .to_owned();
    assert!(tools.split(',').any(|t| t == "mcp__docs"), "{tools}");
}
