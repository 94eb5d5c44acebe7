//! The CLI backends against a fake executable: a bash script that records its argv, its
//! environment and the configuration files it was given, plays a recorded transcript
//! (`tests/fixtures/cli/`) to stdout, writes stderr and exits, or starts a child and hangs (for
//! the timeout, cancellation and budget, checked by pid). The runs go through the real
//! process-group runner and parsers, and must give the native loop's events.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use kodiai_agent::Limits;
use kodiai_agent::backends::{Cli, CliCredential, CliTask, RelayCommand, start_cli};
use kodiai_agent::tools::ToolRegistry;
use kodiai_llm::{Price, PriceTable};
use kodiai_protocol::{AgentEvent, FinishReason, TokenUsage, ToolCall};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

const KEY: &str = "sk-ant-test-secret-not-real-0123456789";
const CLAUDE_MODEL: &str = "claude-sonnet-4-5-20250929";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cli")
        .join(name)
}

/// What the fake does once the transcript is played.
enum After {
    Exit(i32),
    /// Waits on a child `sleep` (both pids in `pids`).
    Hang,
}

struct FakeCli {
    dir: tempfile::TempDir,
    workdir: tempfile::TempDir,
}

impl FakeCli {
    fn new(transcript: &str, stderr: &str, after: After) -> Self {
        Self::cut(transcript, usize::MAX, stderr, after)
    }

    /// Plays only the first `lines` of the transcript (one cut off by a crash or a hang).
    fn cut(transcript: &str, lines: usize, stderr: &str, after: After) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let played: Vec<String> = std::fs::read_to_string(fixture(transcript))
            .unwrap()
            .lines()
            .take(lines)
            .map(|l| format!("{l}\n"))
            .collect();
        let transcript_file = dir.path().join("transcript.jsonl");
        std::fs::write(&transcript_file, played.concat()).unwrap();
        let workdir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let stderr_file = dir.path().join("stderr.txt");
        std::fs::write(&stderr_file, stderr).unwrap();
        let (start, end) = match after {
            After::Exit(code) => (String::new(), format!("exit {code}")),
            After::Hang => (
                format!("sleep 300 & echo $$ $! > '{d}/pids'"),
                "wait".to_owned(),
            ),
        };
        let script = format!(
            "#!/bin/bash\n\
             printf '%s\\0' \"$@\" > '{d}/argv'\n\
             env -0 > '{d}/env'\n\
             pwd > '{d}/cwd'\n\
             for a in \"$@\"; do case \"$a\" in *.json) cp \"$a\" '{d}/';; esac; done\n\
             [ -n \"$GEMINI_CLI_SYSTEM_SETTINGS_PATH\" ] && cp \"$GEMINI_CLI_SYSTEM_SETTINGS_PATH\" '{d}/'\n\
             {start}\n\
             cat '{transcript}'\n\
             cat '{stderr}' >&2\n\
             {end}\n",
            transcript = transcript_file.display(),
            stderr = stderr_file.display(),
        );
        let program = dir.path().join("fake-cli");
        std::fs::write(&program, script).unwrap();
        let mut permissions = std::fs::metadata(&program).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&program, permissions).unwrap();
        Self { dir, workdir }
    }

    fn program(&self) -> PathBuf {
        self.dir.path().join("fake-cli")
    }

    fn task(&self, cli: Cli) -> CliTask {
        let mut task = CliTask::new(
            cli,
            self.program(),
            self.workdir.path(),
            "Fix the typo in greet.",
        );
        task.system = "You are kodiai.\nBe careful.".into();
        task.credential = Some(match cli {
            Cli::ClaudeCode => CliCredential::AnthropicApiKey(KEY.into()),
            Cli::GeminiCli => CliCredential::GeminiApiKey(KEY.into()),
        });
        task.prices = prices();
        task
    }

    fn argv(&self) -> Vec<String> {
        let raw = std::fs::read(self.dir.path().join("argv")).unwrap();
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    fn env(&self) -> Vec<(String, String)> {
        let raw = std::fs::read(self.dir.path().join("env")).unwrap();
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .filter_map(|a| {
                let a = String::from_utf8_lossy(a);
                a.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect()
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap()
    }

    fn pids(&self) -> Vec<u32> {
        self.file("pids")
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect()
    }
}

/// Output tokens cost 1 USD each and nothing else does: exact costs to compare.
fn prices() -> PriceTable {
    let mut table = PriceTable::default();
    let price = Price {
        input: 0.0,
        output: 1_000_000.0,
        cache_read: 0.0,
        cache_write: 0.0,
    };
    table.set("claude-sonnet-4-5", price);
    table.set("gemini-2.5-pro", price);
    table
}

fn usage(input: u64, output: u64, cache_read: u64, cache_write: u64) -> TokenUsage {
    TokenUsage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: cache_read,
        cache_write_tokens: cache_write,
    }
}

fn call(turn: u32, id: &str, name: &str, arguments: Value) -> AgentEvent {
    AgentEvent::ToolCall {
        turn,
        call: ToolCall {
            id: id.into(),
            name: name.into(),
            arguments,
        },
    }
}

fn result(turn: u32, id: &str, name: &str, content: &str, is_error: bool) -> AgentEvent {
    AgentEvent::ToolResult {
        turn,
        call_id: id.into(),
        name: name.into(),
        content: content.into(),
        is_error,
    }
}

fn text(turn: u32, text: &str) -> AgentEvent {
    AgentEvent::TextDelta {
        turn,
        text: text.into(),
    }
}

fn used(turn: u32, model: &str, u: TokenUsage, total: f64) -> AgentEvent {
    AgentEvent::Usage {
        turn,
        model: model.into(),
        usage: u,
        cost_usd: u.output_tokens as f64,
        total_cost_usd: total,
    }
}

#[tokio::test]
async fn a_claude_code_tool_use_transcript_gives_the_loops_events() {
    let fake = FakeCli::new("claude-tool-use.jsonl", "", After::Exit(0));
    let (events, outcome) = start_cli(fake.task(Cli::ClaudeCode)).collect().await;
    let read = "     1\u{2192}pub fn greet() -> &'static str {\n     2\u{2192}    \"helo\"\n     3\u{2192}}\n";
    let edited = "The file /work/repo/src/lib.rs has been updated. Here's the result of running \
                  `cat -n` on a snippet of the edited file:\n     1\u{2192}pub fn greet() -> &'static str {\n     \
                  2\u{2192}    \"hello\"\n     3\u{2192}}";
    let answer = "Fixed the typo: `greet` now returns \"hello\".";
    let m = CLAUDE_MODEL;
    assert_eq!(
        events,
        vec![
            AgentEvent::TurnStarted { turn: 1 },
            text(1, "I'll read the file first."),
            call(
                1,
                "toolu_01Read",
                "Read",
                json!({"file_path": "/work/repo/src/lib.rs"})
            ),
            used(1, m, usage(3, 40, 11980, 5120), 40.0),
            result(1, "toolu_01Read", "Read", read, false),
            AgentEvent::TurnStarted { turn: 2 },
            call(
                2,
                "toolu_02Edit",
                "Edit",
                json!({"file_path": "/work/repo/src/lib.rs", "old_string": "\"hallo\"", "new_string": "\"hello\""})
            ),
            used(2, m, usage(5, 61, 17100, 120), 101.0),
            result(
                2,
                "toolu_02Edit",
                "Edit",
                "<tool_use_error>String to replace not found in file.\nString: \"hallo\"</tool_use_error>",
                true
            ),
            AgentEvent::TurnStarted { turn: 3 },
            call(
                3,
                "toolu_03Edit",
                "Edit",
                json!({"file_path": "/work/repo/src/lib.rs", "old_string": "\"helo\"", "new_string": "\"hello\""})
            ),
            used(3, m, usage(5, 58, 17220, 180), 159.0),
            result(3, "toolu_03Edit", "Edit", edited, false),
            AgentEvent::TurnStarted { turn: 4 },
            text(4, answer),
            used(4, m, usage(4, 15, 17400, 260), 174.0),
            // The totals are the CLI's own: its result's usage and cost.
            AgentEvent::Finished {
                reason: FinishReason::Completed,
                turns: 4,
                usage: usage(17, 176, 63700, 5680),
                cost_usd: 0.04811,
                text: answer.into(),
            },
        ]
    );
    assert_eq!(outcome.reason, FinishReason::Completed);
    assert_eq!(outcome.text, answer);
    assert_eq!(outcome.turns, 4);
    assert_eq!(outcome.cost_usd, 0.04811);
    assert_eq!(outcome.error, None);
}

#[tokio::test]
async fn a_claude_code_text_answer_completes_with_the_reported_cost() {
    let fake = FakeCli::new("claude-success.jsonl", "", After::Exit(0));
    let (events, outcome) = start_cli(fake.task(Cli::ClaudeCode)).collect().await;
    let answer = "The crate has one function, `greet`, which returns a greeting.";
    assert_eq!(
        events,
        vec![
            AgentEvent::TurnStarted { turn: 1 },
            text(1, answer),
            used(1, CLAUDE_MODEL, usage(3, 18, 11980, 5120), 18.0),
            AgentEvent::Finished {
                reason: FinishReason::Completed,
                turns: 1,
                usage: usage(3, 18, 11980, 5120),
                cost_usd: 0.02335,
                text: answer.into(),
            },
        ]
    );
    assert_eq!(outcome.messages.len(), 2);
}

#[tokio::test]
async fn claude_code_gets_its_flags_in_the_workspace_and_no_host_secret() {
    let fake = FakeCli::new("claude-success.jsonl", "", After::Exit(0));
    let mut task = fake.task(Cli::ClaudeCode);
    task.model = Some("claude-sonnet-4-5".into());
    task.limits = Limits {
        max_turns: 7,
        timeout: Some(Duration::from_secs(60)),
        budget_usd: Some(2.5),
    };
    task.mcp_servers.insert(
        "kodiai".into(),
        json!({"command": "/usr/local/bin/kodiai", "args": ["mcp", "workspace", "--dir", "."]}),
    );
    let outcome = start_cli(task).outcome().await;
    assert_eq!(outcome.reason, FinishReason::Completed, "{outcome:?}");

    let argv = fake.argv();
    let mcp_path = argv
        .iter()
        .position(|a| a == "--mcp-config")
        .map(|i| argv[i + 1].clone())
        .unwrap();
    assert_eq!(
        argv,
        [
            "-p",
            "Fix the typo in greet.",
            "--output-format",
            "stream-json",
            "--verbose",
            "--max-turns",
            "7",
            "--model",
            "claude-sonnet-4-5",
            "--append-system-prompt",
            "You are kodiai.\nBe careful.",
            "--mcp-config",
            mcp_path.as_str(),
            "--strict-mcp-config",
            "--setting-sources",
            "user",
            "--allowedTools",
            "Read,Glob,Grep,LS,Edit,MultiEdit,Write,Bash(git diff:*),Bash(git log:*),mcp__kodiai",
            "--max-budget-usd",
            "2.5",
        ]
    );
    let mcp: Value = serde_json::from_str(&fake.file("mcp.json")).unwrap();
    assert_eq!(
        mcp,
        json!({"mcpServers": {"kodiai": {"command": "/usr/local/bin/kodiai", "args": ["mcp", "workspace", "--dir", "."]}}})
    );
    assert_eq!(
        fake.file("cwd").trim(),
        fake.workdir
            .path()
            .canonicalize()
            .unwrap()
            .display()
            .to_string()
    );

    assert!(
        std::env::vars().any(|(k, _)| k.starts_with("CARGO")),
        "cargo test gives the host CARGO_* variables"
    );
    let env = fake.env();
    let allowed = [
        "PATH",
        "HOME",
        "TMPDIR",
        "XDG_CONFIG_HOME",
        "XDG_CACHE_HOME",
        "XDG_DATA_HOME",
        "XDG_STATE_HOME",
        "LANG",
        "LC_ALL",
        "TERM",
        "NO_COLOR",
        "CI",
        "GIT_TERMINAL_PROMPT",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
        "DISABLE_AUTOUPDATER",
        "ANTHROPIC_API_KEY",
        // bash's own.
        "PWD",
        "SHLVL",
        "OLDPWD",
        "_",
    ];
    for (name, _) in &env {
        assert!(
            allowed.contains(&name.as_str()),
            "unexpected variable {name}"
        );
    }
    let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(get("ANTHROPIC_API_KEY"), Some(KEY));
    assert_ne!(get("HOME").map(str::to_owned), std::env::var("HOME").ok());
    // The throw-away HOME is gone with the run.
    assert!(!Path::new(get("HOME").unwrap()).exists());
}

#[tokio::test]
async fn claude_codes_max_turns_result_ends_with_max_turns() {
    let fake = FakeCli::new("claude-max-turns.jsonl", "", After::Exit(1));
    let (events, outcome) = start_cli(fake.task(Cli::ClaudeCode)).collect().await;
    assert_eq!(outcome.reason, FinishReason::MaxTurns, "{events:?}");
    assert_eq!(outcome.error, None);
    assert_eq!(outcome.cost_usd, 0.02612);
    assert!(!events.iter().any(|e| matches!(e, AgentEvent::Error { .. })));
    assert_eq!(
        events[3],
        result(
            1,
            "toolu_01Grep",
            "Grep",
            "Found 1 file\n/work/repo/src/lib.rs",
            false
        )
    );
}

#[tokio::test]
async fn turns_beyond_max_turns_stop_the_cli_with_max_turns() {
    let fake = FakeCli::new("claude-tool-use.jsonl", "", After::Hang);
    let mut task = fake.task(Cli::ClaudeCode);
    task.limits.max_turns = 2;
    let (events, outcome) = start_cli(task).collect().await;
    assert_eq!(outcome.reason, FinishReason::MaxTurns, "{events:?}");
    assert_eq!(outcome.turns, 2);
    // Nothing of the third turn is reported; the second's tool result is kept.
    assert!(matches!(
        events[events.len() - 2],
        AgentEvent::ToolResult {
            turn: 2,
            is_error: true,
            ..
        }
    ));
    assert!(fake.argv().windows(2).any(|w| w == ["--max-turns", "2"]));
    kodiai_test_support::process::assert_exit(fake.pids());
}

#[tokio::test]
async fn claude_codes_error_result_ends_with_its_errors() {
    let fake = FakeCli::new("claude-error.jsonl", "", After::Exit(1));
    let (events, outcome) = start_cli(fake.task(Cli::ClaudeCode)).collect().await;
    assert_eq!(outcome.reason, FinishReason::Error);
    let message = outcome.error.unwrap();
    assert!(
        message.starts_with("claude stopped with error_during_execution: API Error: 401"),
        "{message}"
    );
    assert!(message.contains("invalid x-api-key"), "{message}");
    let n = events.len();
    assert_eq!(events[n - 2], AgentEvent::Error { message });
    assert!(matches!(
        events[n - 1],
        AgentEvent::Finished {
            reason: FinishReason::Error,
            turns: 0,
            ..
        }
    ));
}

#[tokio::test]
async fn a_non_zero_exit_without_a_result_is_an_error_with_the_stderr_tail() {
    // The lines before the result: a transcript cut off by a crash.
    let fake = FakeCli::cut(
        "claude-max-turns.jsonl",
        3,
        &format!("starting\nInvalid API key · {KEY} · Please run /login\n"),
        After::Exit(1),
    );

    let (events, outcome) = start_cli(fake.task(Cli::ClaudeCode)).collect().await;
    assert_eq!(outcome.reason, FinishReason::Error, "{events:?}");
    let message = outcome.error.unwrap();
    assert!(message.contains("exited with exit status: 1"), "{message}");
    assert!(message.contains("starting\nInvalid API key"), "{message}");
    assert!(!message.contains(KEY), "{message}");
    assert!(message.contains("[REDACTED]"), "{message}");
    // What came before the crash is kept.
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::ToolResult { .. }))
    );
}

#[tokio::test]
async fn a_missing_executable_ends_the_run_with_an_error() {
    let mut task = CliTask::new(
        Cli::ClaudeCode,
        "/nonexistent/claude",
        std::env::temp_dir(),
        "Do it",
    );
    task.prices = prices();
    let (events, outcome) = start_cli(task).collect().await;
    assert_eq!(outcome.reason, FinishReason::Error);
    assert!(
        outcome
            .error
            .unwrap()
            .starts_with("cannot start `/nonexistent/claude`")
    );
    assert_eq!(events.len(), 2);
}

#[tokio::test]
async fn the_timeout_kills_the_cli_and_its_children() {
    // The transcript without its result: the CLI then waits for its child forever.
    let fake = FakeCli::cut("claude-success.jsonl", 2, "", After::Hang);
    let mut task = fake.task(Cli::ClaudeCode);
    task.limits.timeout = Some(Duration::from_secs(3));

    let mut run = start_cli(task);
    // The first event: the pids are written.
    assert_eq!(run.next().await, Some(AgentEvent::TurnStarted { turn: 1 }));
    let (events, outcome) = run.collect().await;
    assert_eq!(outcome.reason, FinishReason::Timeout, "{events:?}");
    assert_eq!(
        outcome.text,
        "The crate has one function, `greet`, which returns a greeting."
    );
    let pids = fake.pids();
    assert_eq!(pids.len(), 2);
    kodiai_test_support::process::assert_exit(pids);
}

#[tokio::test]
async fn cancelling_kills_the_cli_and_its_children() {
    // Without the result line: the CLI then waits for its child forever.
    let fake = FakeCli::cut("gemini-max-turns.jsonl", 4, "", After::Hang);
    let mut run = start_cli(fake.task(Cli::GeminiCli));
    assert_eq!(run.next().await, Some(AgentEvent::TurnStarted { turn: 1 }));
    run.cancel();
    let (events, outcome) = run.collect().await;
    assert_eq!(outcome.reason, FinishReason::Cancelled, "{events:?}");
    let pids = fake.pids();
    assert_eq!(pids.len(), 2);
    kodiai_test_support::process::assert_exit(pids);
}

#[tokio::test]
async fn the_budget_stops_the_cli_once_the_estimated_cost_reaches_it() {
    let fake = FakeCli::new("claude-tool-use.jsonl", "", After::Hang);
    let mut task = fake.task(Cli::ClaudeCode);
    // The first turn costs 40 USD at the test prices, the second 61 more.
    task.limits.budget_usd = Some(100.0);
    let (events, outcome) = start_cli(task).collect().await;
    assert_eq!(outcome.reason, FinishReason::Budget, "{events:?}");
    assert_eq!(outcome.turns, 2);
    assert_eq!(outcome.cost_usd, 101.0);
    assert!(
        fake.argv()
            .windows(2)
            .any(|w| w == ["--max-budget-usd", "100"])
    );
    kodiai_test_support::process::assert_exit(fake.pids());
}

#[tokio::test]
async fn a_gemini_cli_tool_use_transcript_gives_the_loops_events() {
    let fake = FakeCli::new("gemini-tool-use.jsonl", "", After::Exit(0));
    let (events, outcome) = start_cli(fake.task(Cli::GeminiCli)).collect().await;
    let lib = "/work/repo/src/lib.rs";
    let answer = "Fixed the typo: `greet` now returns \"hello\".";
    let total = usage(13200, 210, 18000, 0);
    assert_eq!(
        events,
        vec![
            AgentEvent::TurnStarted { turn: 1 },
            text(1, "I'll read the file first."),
            call(
                1,
                "read_file-1763633702311-0a3f",
                "read_file",
                json!({"absolute_path": lib})
            ),
            result(
                1,
                "read_file-1763633702311-0a3f",
                "read_file",
                "pub fn greet() -> &'static str {\n    \"helo\"\n}\n",
                false
            ),
            AgentEvent::TurnStarted { turn: 2 },
            call(
                2,
                "run_shell_command-1763633703120-91bc",
                "run_shell_command",
                json!({"command": "cargo test", "description": "Run the tests."})
            ),
            result(
                2,
                "run_shell_command-1763633703120-91bc",
                "run_shell_command",
                "Tool \"run_shell_command\" is not allowed in non-interactive mode without approval.",
                true
            ),
            AgentEvent::TurnStarted { turn: 3 },
            call(
                3,
                "replace-1763633704005-c7d2",
                "replace",
                json!({"file_path": lib, "old_string": "\"helo\"", "new_string": "\"hello\""})
            ),
            result(
                3,
                "replace-1763633704005-c7d2",
                "replace",
                "Successfully modified file: /work/repo/src/lib.rs (1 replacements).",
                false
            ),
            AgentEvent::TurnStarted { turn: 4 },
            text(4, "Fixed the typo: "),
            text(4, "`greet` now returns \"hello\"."),
            used(4, "gemini-2.5-pro", total, 210.0),
            AgentEvent::Finished {
                reason: FinishReason::Completed,
                turns: 4,
                usage: total,
                cost_usd: 210.0,
                text: answer.into(),
            },
        ]
    );
    assert_eq!(outcome.text, answer);
}

#[tokio::test]
async fn gemini_cli_gets_its_flags_settings_and_credential_only() {
    let fake = FakeCli::new("gemini-success.jsonl", "", After::Exit(0));
    let mut task = fake.task(Cli::GeminiCli);
    task.model = Some("gemini-2.5-pro".into());
    task.limits.max_turns = 9;
    task.allowed_tools = Cli::GeminiCli.workspace_tools(true);
    task.mcp_servers.insert(
        "kodiai".into(),
        json!({"httpUrl": "http://127.0.0.1:9/mcp"}),
    );
    // Its scratch folder in a private folder, made on first use.
    let private = tempfile::tempdir().unwrap();
    let scratch_in = private.path().join("cli");
    task.scratch_in = Some(scratch_in.clone());
    // A group of this process's tools: served on the run's socket, reached through the relay.
    task.served = vec![("github-ci".to_owned(), ToolRegistry::new())];
    task.relay = Some(RelayCommand {
        program: "/usr/local/bin/kodiai".into(),
        args: vec!["mcp".into()],
    });
    let (events, outcome) = start_cli(task).collect().await;
    assert_eq!(outcome.reason, FinishReason::Completed, "{events:?}");
    assert_eq!(
        outcome.text,
        "The crate has one function, `greet`, which returns a greeting."
    );

    let argv = fake.argv();
    let tools = "read_file,read_many_files,list_directory,glob,search_file_content,grep_search,\
                 replace,write_file,run_shell_command(git diff),run_shell_command(git log),\
                 run_shell_command";
    assert_eq!(
        argv,
        [
            "-p",
            "You are kodiai.\nBe careful.\n\nFix the typo in greet.",
            "--output-format",
            "stream-json",
            "--model",
            "gemini-2.5-pro",
            "--allowed-tools",
            tools,
            "--allowed-mcp-server-names",
            "github-ci,kodiai",
        ]
    );
    assert!(!argv.iter().any(|a| a.contains("yolo")));
    let settings: Value = serde_json::from_str(&fake.file("gemini-settings.json")).unwrap();
    assert_eq!(settings["model"]["maxSessionTurns"], 9);
    assert_eq!(
        settings["security"]["auth"]["selectedType"],
        "gemini-api-key"
    );
    assert_eq!(
        settings["mcpServers"]["kodiai"]["httpUrl"],
        "http://127.0.0.1:9/mcp"
    );
    let relay = &settings["mcpServers"]["github-ci"];
    assert_eq!(relay["command"], "/usr/local/bin/kodiai");
    assert_eq!(relay["args"], json!(["mcp", "github-ci"]));
    assert_eq!(relay["trust"], true);
    // The names the model sees for them (as Gemini CLI 0.61 gives them).
    assert_eq!(
        Cli::GeminiCli.mcp_tool_name("github-ci", "get_ci_status"),
        "mcp_github-ci_get_ci_status"
    );
    let socket = relay["env"]["KODIAI_TOOL_SOCKET"].as_str().unwrap();
    assert!(socket.ends_with("/tools.sock"), "{socket}");
    assert_eq!(relay["env"]["KODIAI_TOOL_KEY"].as_str().unwrap().len(), 64);
    // The socket went with the run.
    assert!(!std::path::Path::new(socket).exists());
    let env = fake.env();
    let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(get("GEMINI_API_KEY"), Some(KEY));
    assert_eq!(get("ANTHROPIC_API_KEY"), None);
    assert!(!env.iter().any(|(k, _)| k.starts_with("CARGO")));
    assert_eq!(get("GEMINI_CLI_HOME"), get("HOME"));
    assert!(
        get("HOME")
            .unwrap()
            .starts_with(scratch_in.to_str().unwrap()),
        "{env:?}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&scratch_in).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[tokio::test]
async fn gemini_clis_turn_limit_exit_ends_with_max_turns() {
    let fake = FakeCli::new("gemini-max-turns.jsonl", "", After::Exit(53));
    let (events, outcome) = start_cli(fake.task(Cli::GeminiCli)).collect().await;
    assert_eq!(outcome.reason, FinishReason::MaxTurns, "{events:?}");
    assert_eq!(outcome.error, None);
    assert_eq!(outcome.turns, 1);
}

#[tokio::test]
async fn gemini_clis_error_result_is_an_error_with_its_message() {
    let fake = FakeCli::new("gemini-error.jsonl", "", After::Exit(1));
    let (events, outcome) = start_cli(fake.task(Cli::GeminiCli)).collect().await;
    assert_eq!(outcome.reason, FinishReason::Error, "{events:?}");
    assert_eq!(
        outcome.error.as_deref(),
        Some(
            "gemini stopped with Error: [API Error: API key not valid. Please pass a valid API key.]"
        )
    );
    // The warning on the way is not an error of the run.
    assert_eq!(events.len(), 2, "{events:?}");
}

#[test]
fn a_backend_config_is_tagged_by_kind() {
    use kodiai_agent::backends::BackendConfig;
    let claude: BackendConfig =
        serde_json::from_value(json!({"kind": "claude-code", "path": "/opt/claude"})).unwrap();
    assert_eq!(
        claude.cli(),
        Some((Cli::ClaudeCode, PathBuf::from("/opt/claude")))
    );
    let gemini: BackendConfig = serde_json::from_value(json!({"kind": "gemini-cli"})).unwrap();
    assert_eq!(
        gemini.cli(),
        Some((Cli::GeminiCli, PathBuf::from("gemini")))
    );
    let native: BackendConfig = serde_json::from_value(json!({"kind": "native"})).unwrap();
    assert_eq!(native.cli(), None);
    assert!(serde_json::from_value::<BackendConfig>(json!({"kind": "codex"})).is_err());
}
