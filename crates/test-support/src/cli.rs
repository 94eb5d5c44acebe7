//! [`FakeCli`]: a scripted stand-in for the Claude Code CLI that really uses the MCP servers it
//! is given. The program kodiai starts is a small bash script that connects to this fake (on
//! 127.0.0.1) and hands it its arguments; the fake then does what the real CLI does with them:
//! reads `--mcp-config`, starts every server in it (command, args and env as configured), lists
//! their tools, plays its script (text turns, and tool calls it makes over MCP as
//! `mcp__SERVER__TOOL`), and writes stream-json lines (`system` init, `assistant`, `user` tool
//! results, a last `result`) back through the script's stdout. Everything it got and every
//! answer its tool calls had is recorded in a [`CliRun`].

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The model the fake says it runs.
pub const FAKE_CLI_MODEL: &str = "claude-sonnet-4-5-20250929";

/// One turn of a script.
#[derive(Debug, Clone)]
pub enum Step {
    /// The model answers this text.
    Text(String),
    /// The model calls `tool` of MCP server `server`; the fake makes the call.
    Call {
        server: String,
        tool: String,
        arguments: Value,
    },
    /// The CLI's own `Write` tool: `content` into `path` under its working folder.
    Write { path: String, content: String },
}

impl Step {
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }

    pub fn write(path: &str, content: &str) -> Self {
        Self::Write {
            path: path.to_owned(),
            content: content.to_owned(),
        }
    }

    pub fn call(server: &str, tool: &str, arguments: Value) -> Self {
        Self::Call {
            server: server.to_owned(),
            tool: tool.to_owned(),
            arguments,
        }
    }
}

/// A tool call the fake made, and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolAnswer {
    pub server: String,
    pub tool: String,
    pub text: String,
    pub is_error: bool,
}

/// What one run of the fake got and did.
#[derive(Debug, Clone, Default)]
pub struct CliRun {
    /// The working folder it was started in.
    pub cwd: PathBuf,
    pub argv: Vec<String>,
    /// The `--mcp-config` file's JSON.
    pub mcp_config: Value,
    /// Each server's tools, as it listed them.
    pub tools: BTreeMap<String, Vec<String>>,
    /// Servers that did not start or answer, with why.
    pub failed: BTreeMap<String, String>,
    pub answers: Vec<ToolAnswer>,
}

impl CliRun {
    /// The value after `flag` in the arguments.
    pub fn arg(&self, flag: &str) -> Option<&str> {
        self.argv
            .iter()
            .position(|a| a == flag)
            .and_then(|i| self.argv.get(i + 1))
            .map(String::as_str)
    }
}

#[derive(Default)]
struct State {
    scripts: VecDeque<Vec<Step>>,
    runs: Vec<CliRun>,
}

/// The fake CLI: [`FakeCli::program`] is what `CLAUDE_CLI_PATH` points at.
pub struct FakeCli {
    _dir: tempfile::TempDir,
    program: PathBuf,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeCli {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeCli {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let dir = tempfile::tempdir().expect("temp dir");
        let program = dir.path().join("claude");
        // The working folder and the arguments go over the connection (the folder, their
        // count, then each NUL-terminated); what comes back is the CLI's stdout.
        let script = format!(
            "#!/bin/bash\n\
             exec 3<>/dev/tcp/127.0.0.1/{port} || exit 97\n\
             printf '%s\\n' \"$PWD\" \"$#\" >&3\n\
             printf '%s\\0' \"$@\" >&3\n\
             cat <&3\n"
        );
        std::fs::write(&program, script).expect("write the fake CLI");
        set_executable(&program);
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&shared)));
            }
        });
        Self {
            _dir: dir,
            program,
            state,
            server,
        }
    }

    /// The executable to run as `claude`.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Queues the script of the next run.
    pub fn push(&self, steps: Vec<Step>) -> &Self {
        lock(&self.state).scripts.push_back(steps);
        self
    }

    /// The runs so far.
    pub fn runs(&self) -> Vec<CliRun> {
        lock(&self.state).runs.clone()
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn set_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mut permissions = std::fs::metadata(path).expect("metadata").permissions();
    permissions.set_mode(0o755);
    std::fs::set_permissions(path, permissions).expect("chmod");
}

/// One run: the arguments, the servers, the script, the stream-json answer.
async fn serve(stream: TcpStream, state: Arc<Mutex<State>>) {
    let (read, mut out) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut cwd = String::new();
    let _ = read.read_line(&mut cwd).await;
    let mut run = CliRun {
        cwd: PathBuf::from(cwd.trim_end()),
        argv: read_argv(&mut read).await,
        ..CliRun::default()
    };
    let script = lock(&state).scripts.pop_front();
    let config_path = run.arg("--mcp-config").map(PathBuf::from);
    run.mcp_config = match config_path {
        Some(path) => tokio::fs::read(&path)
            .await
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(Value::Null),
        None => Value::Null,
    };
    let mut clients = BTreeMap::new();
    if let Some(servers) = run.mcp_config["mcpServers"].as_object() {
        for (name, entry) in servers {
            match connect(entry).await {
                Ok((client, child)) => {
                    let tools = client
                        .list_all_tools()
                        .await
                        .map(|tools| tools.iter().map(|t| t.name.to_string()).collect())
                        .unwrap_or_default();
                    run.tools.insert(name.clone(), tools);
                    clients.insert(name.clone(), (client, child));
                }
                Err(why) => {
                    run.failed.insert(name.clone(), why);
                }
            }
        }
    }
    let mut lines = vec![json!({
        "type": "system", "subtype": "init", "model": FAKE_CLI_MODEL,
        "tools": run.tools.iter().flat_map(|(s, tools)| tools.iter().map(move |t| format!("mcp__{s}__{t}"))).collect::<Vec<_>>(),
        "mcp_servers": run.tools.keys().map(|s| json!({"name": s, "status": "connected"})).collect::<Vec<_>>(),
    })];
    let Some(script) = script else {
        lines.push(
            json!({"type": "result", "subtype": "error_during_execution",
            "is_error": true, "num_turns": 0, "errors": ["the fake CLI has no script"]}),
        );
        write_lines(&mut out, &lines).await;
        lock(&state).runs.push(run);
        return;
    };
    write_lines(&mut out, &lines).await;
    let usage = json!({"input_tokens": 100, "output_tokens": 20});
    let mut last_text = String::new();
    for (turn, step) in script.iter().enumerate() {
        let id = format!("msg_{turn}");
        let content = match step {
            Step::Text(text) => {
                last_text.clone_from(text);
                json!({"type": "text", "text": text})
            }
            Step::Call {
                server,
                tool,
                arguments,
            } => json!({"type": "tool_use", "id": format!("toolu_{turn}"),
                        "name": format!("mcp__{server}__{tool}"), "input": arguments}),
            Step::Write { path, content } => json!({"type": "tool_use",
                "id": format!("toolu_{turn}"), "name": "Write",
                "input": {"file_path": path, "content": content}}),
        };
        let mut lines = vec![json!({"type": "assistant", "parent_tool_use_id": null,
            "message": {"id": id, "model": FAKE_CLI_MODEL, "role": "assistant",
                        "content": [content], "usage": usage}})];
        if let Step::Call {
            server,
            tool,
            arguments,
        } = step
        {
            let (text, is_error) = match clients.get(server) {
                Some((client, _)) => call(client, tool, arguments).await,
                None => (format!("no MCP server `{server}` is connected"), true),
            };
            run.answers.push(ToolAnswer {
                server: server.clone(),
                tool: tool.clone(),
                text: text.clone(),
                is_error,
            });
            lines.push(json!({"type": "user", "parent_tool_use_id": null,
                "message": {"role": "user", "content": [{"type": "tool_result",
                    "tool_use_id": format!("toolu_{turn}"),
                    "content": [{"type": "text", "text": text}], "is_error": is_error}]}}));
        }
        if let Step::Write { path, content } = step {
            let written = tokio::fs::write(run.cwd.join(path), content).await;
            let (text, is_error) = match written {
                Ok(()) => (format!("File created successfully at: {path}"), false),
                Err(e) => (e.to_string(), true),
            };
            lines.push(json!({"type": "user", "parent_tool_use_id": null,
                "message": {"role": "user", "content": [{"type": "tool_result",
                    "tool_use_id": format!("toolu_{turn}"), "content": text,
                    "is_error": is_error}]}}));
        }
        write_lines(&mut out, &lines).await;
    }
    // Like the CLI, the servers stop before the result is reported.
    for (_, (client, mut child)) in clients {
        let _ = client.cancel().await;
        let _ = child.wait().await;
    }
    lock(&state).runs.push(run);
    let result = json!({"type": "result", "subtype": "success", "is_error": false,
        "num_turns": script.len(), "result": last_text, "total_cost_usd": 0.0125,
        "usage": {"input_tokens": 100 * script.len(), "output_tokens": 20 * script.len()}});
    write_lines(&mut out, &[result]).await;
    let _ = out.shutdown().await;
}

async fn read_argv(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Vec<String> {
    let mut count = String::new();
    if read.read_line(&mut count).await.is_err() {
        return Vec::new();
    }
    let count: usize = count.trim().parse().unwrap_or(0);
    let mut argv = Vec::with_capacity(count);
    for _ in 0..count {
        let mut arg = Vec::new();
        if read.read_until(0, &mut arg).await.is_err() {
            break;
        }
        arg.pop();
        argv.push(String::from_utf8_lossy(&arg).into_owned());
    }
    argv
}

async fn write_lines(out: &mut tokio::net::tcp::OwnedWriteHalf, lines: &[Value]) {
    for line in lines {
        let _ = out.write_all(format!("{line}\n").as_bytes()).await;
    }
}

type Client = RunningService<RoleClient, ClientConfig>;

/// Starts a stdio server of an `mcpServers` entry as the CLI does (its env on top of a plain
/// `PATH`) and connects to it.
async fn connect(entry: &Value) -> Result<(Client, tokio::process::Child), String> {
    let command = entry["command"]
        .as_str()
        .ok_or_else(|| format!("not a stdio server: {entry}"))?;
    let args: Vec<&str> = entry["args"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let env: Vec<(&str, &str)> = entry["env"]
        .as_object()
        .map(|e| {
            e.iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    let mut child = tokio::process::Command::new(command)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {command}: {e}"))?;
    let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
        return Err("no pipes".to_owned());
    };
    let client = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("fake-claude", "1.0"),
    )
    .serve((stdout, stdin))
    .await;
    match client {
        Ok(client) => Ok((client, child)),
        Err(e) => {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr).await;
            }
            Err(format!("{e}: {}", stderr.trim()))
        }
    }
}

/// Calls `tool` and returns its text and whether it failed (a JSON-RPC error is a failure).
async fn call(client: &Client, tool: &str, arguments: &Value) -> (String, bool) {
    let mut params = CallToolRequestParams::new(tool.to_owned());
    if let Some(arguments) = arguments.as_object() {
        params = params.with_arguments(arguments.clone());
    }
    match client.call_tool(params).await {
        Ok(result) => {
            let text = result
                .content
                .iter()
                .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                .collect::<Vec<_>>()
                .join("\n");
            (text, result.is_error.unwrap_or(false))
        }
        Err(e) => (e.to_string(), true),
    }
}
