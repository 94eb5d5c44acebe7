//! The MCP client side: [`McpClients`] connects to a task's MCP servers, lists their tools and
//! wraps each as a [`DynTool`] named `server__tool`; the servers (and a stdio server's whole
//! process group) are stopped at the task's end.

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use kodiai_protocol::ToolSpec;
use process_wrap::tokio::{ChildWrapper, CommandWrap, ProcessGroup};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ContentBlock,
    Implementation,
};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{Peer, ServiceExt as _};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::ChildStderr;
use tokio_util::sync::CancellationToken;

use super::{McpError, McpServerConfig};
use crate::tools::{DynTool, ToolContext, ToolError, ToolOutput, ToolResult};

/// The longest stderr tail kept for a start error.
const STDERR_TAIL_BYTES: usize = 4 * 1024;

/// How long a child that failed to start may take to close its stderr.
const STDERR_GRACE: Duration = Duration::from_secs(2);

/// How long servers may take, each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McpTimeouts {
    /// From spawning (or connecting) to the answered `initialize` and `tools/list`.
    pub start: Duration,
    /// One tool call.
    pub call: Duration,
}

impl Default for McpTimeouts {
    fn default() -> Self {
        Self {
            start: Duration::from_secs(30),
            call: Duration::from_secs(300),
        }
    }
}

type Service = RunningService<RoleClient, ClientConfig>;

/// One connected server.
struct Connection {
    name: String,
    /// The child's process id (stdio servers).
    pid: Option<u32>,
    service: Service,
    /// A stdio server's child and its process group.
    group: Option<ChildGroup>,
}

/// How long a stdio server may take to exit once its stdin is closed, before its group is
/// killed.
const EXIT_GRACE: Duration = Duration::from_secs(3);

/// A stdio server's child, the leader of its own process group. Whatever the server started
/// is in that group too and is killed with it: when the task stops the server, or when this is
/// dropped (a task that ended without [`McpClients::shutdown`], a failed start).
struct ChildGroup {
    child: Box<dyn ChildWrapper>,
    stopped: bool,
    /// Reads the group's stderr; it ends when every process holding that pipe has exited.
    stderr: Option<StderrTail>,
}

impl ChildGroup {
    /// Waits for the leader (its stdin is closed), then kills the rest of the group and waits
    /// (at most [`STDERR_GRACE`]) until nothing holds the server's stderr any more.
    async fn stop(&mut self) {
        let exited = tokio::time::timeout(EXIT_GRACE, self.child.wait())
            .await
            .is_ok();
        let _ = self.child.start_kill();
        if !exited {
            let _ = self.child.wait().await;
        }
        self.stopped = true;
        if let Some(stderr) = self.stderr.take() {
            stderr.finish().await;
        }
    }
}

impl Drop for ChildGroup {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.start_kill();
        }
    }
}

/// The MCP servers of one task, connected, and their tools. Dropping it stops the servers in
/// the background; [`McpClients::shutdown`] stops them and waits.
pub struct McpClients {
    connections: Vec<Connection>,
    tools: Vec<Arc<dyn DynTool>>,
    /// A child of the task's token: cancelling either stops every server.
    stop: CancellationToken,
}

impl std::fmt::Debug for McpClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpClients")
            .field(
                "servers",
                &self.connections.iter().map(|c| &c.name).collect::<Vec<_>>(),
            )
            .field("tools", &self.tools.len())
            .finish()
    }
}

impl McpClients {
    /// Connects to every server with the default [`McpTimeouts`]; see [`McpClients::start_with`].
    pub async fn start(
        servers: &[(String, McpServerConfig)],
        cancel: CancellationToken,
    ) -> Result<Self, McpError> {
        Self::start_with(servers, McpTimeouts::default(), cancel).await
    }

    /// Connects to every server at once and lists their tools. The first server that cannot be
    /// started fails the whole start (the others are stopped). When `cancel` fires, the servers
    /// are stopped (their tools then answer that the server is gone).
    pub async fn start_with(
        servers: &[(String, McpServerConfig)],
        timeouts: McpTimeouts,
        cancel: CancellationToken,
    ) -> Result<Self, McpError> {
        for (name, config) in servers {
            config.validate(name)?;
        }
        let stop = cancel.child_token();
        let started = join_all(
            servers
                .iter()
                .map(|(name, config)| connect(name, config, timeouts, stop.clone())),
        )
        .await;
        let mut connections = Vec::new();
        let mut tools: Vec<Arc<dyn DynTool>> = Vec::new();
        let mut failure = None;
        for result in started {
            match result {
                Ok((connection, server_tools)) => {
                    connections.push(connection);
                    tools.extend(server_tools);
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(error) = failure {
            stop.cancel();
            for connection in connections {
                let _ = connection.service.cancel().await;
                if let Some(mut group) = connection.group {
                    group.stop().await;
                }
            }
            return Err(error);
        }
        Ok(Self {
            connections,
            tools,
            stop,
        })
    }

    /// The servers' tools, as the model sees them (`server__tool`).
    pub fn tools(&self) -> Vec<Arc<dyn DynTool>> {
        self.tools.clone()
    }

    /// The process ids of the stdio servers' children, by server name.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.connections
            .iter()
            .filter_map(|c| Some((c.name.clone(), c.pid?)))
            .collect()
    }

    /// Stops every server and waits: a stdio child gets its stdin closed and [`EXIT_GRACE`] to
    /// exit, then its whole process group is killed.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        for connection in std::mem::take(&mut self.connections) {
            // Closing the transport closes a stdio server's stdin: its cue to exit.
            if let Err(e) = connection.service.cancel().await {
                tracing::warn!(server = %connection.name, "stopping the MCP server failed: {e}");
            }
            if let Some(mut group) = connection.group {
                group.stop().await;
            }
        }
    }
}

impl Drop for McpClients {
    fn drop(&mut self) {
        // Each service closes its transport in the background; each child's group is killed as
        // its `ChildGroup` drops.
        self.stop.cancel();
    }
}

fn client_config() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("kodiai", env!("CARGO_PKG_VERSION")),
    )
}

async fn connect(
    name: &str,
    config: &McpServerConfig,
    timeouts: McpTimeouts,
    stop: CancellationToken,
) -> Result<(Connection, Vec<Arc<dyn DynTool>>), McpError> {
    let start_error = |message: String, stderr: String| McpError::Start {
        server: name.to_owned(),
        message,
        stderr,
    };
    let (service, group) = match config {
        McpServerConfig::Stdio {
            command,
            args,
            env,
            cwd,
        } => {
            let env = McpServerConfig::child_env(name, env, |key| std::env::var(key).ok())?;
            let mut child = CommandWrap::with_new(command, |child| {
                child
                    .args(args)
                    .env_clear()
                    .envs(env)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                if let Some(cwd) = cwd {
                    child.current_dir(cwd);
                }
            });
            child.wrap(ProcessGroup::leader());
            let mut group = ChildGroup {
                child: child.spawn().map_err(|e| {
                    start_error(format!("cannot run `{command}`: {e}"), String::new())
                })?,
                stopped: false,
                stderr: None,
            };
            let pipes = (group.child.stdout().take(), group.child.stdin().take());
            let (Some(stdout), Some(stdin)) = pipes else {
                return Err(start_error(
                    "the child's stdin or stdout is not a pipe".into(),
                    String::new(),
                ));
            };
            let stderr = StderrTail::spawn(name, group.child.stderr().take());
            let started = tokio::time::timeout(
                timeouts.start,
                client_config().serve_with_ct((stdout, stdin), stop),
            )
            .await;
            match started {
                Ok(Ok(service)) => {
                    group.stderr = Some(stderr);
                    (service, Some(group))
                }
                Ok(Err(e)) => {
                    return Err(start_error(
                        format!("no MCP handshake: {e}"),
                        stderr.finish().await,
                    ));
                }
                Err(_) => {
                    // Killed first, so that its stderr closes.
                    drop(group);
                    return Err(start_error(
                        format!(
                            "no answer to `initialize` within {} s",
                            timeouts.start.as_secs()
                        ),
                        stderr.finish().await,
                    ));
                }
            }
        }
        McpServerConfig::Http { url, headers } => {
            let headers = headers
                .iter()
                .map(|(key, value)| {
                    let bad = || McpError::Config {
                        server: name.to_owned(),
                        message: format!("header `{key}` cannot be sent"),
                    };
                    Ok((
                        reqwest::header::HeaderName::from_bytes(key.as_bytes())
                            .map_err(|_| bad())?,
                        reqwest::header::HeaderValue::from_str(value).map_err(|_| bad())?,
                    ))
                })
                .collect::<Result<HashMap<_, _>, McpError>>()?;
            let transport = StreamableHttpClientTransport::from_config(
                StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(headers),
            );
            let started = tokio::time::timeout(
                timeouts.start,
                client_config().serve_with_ct(transport, stop),
            )
            .await;
            match started {
                Ok(Ok(service)) => (service, None),
                Ok(Err(e)) => {
                    return Err(start_error(format!("no MCP handshake: {e}"), String::new()));
                }
                Err(_) => {
                    return Err(start_error(
                        format!(
                            "no answer to `initialize` within {} s",
                            timeouts.start.as_secs()
                        ),
                        String::new(),
                    ));
                }
            }
        }
    };
    let listed = tokio::time::timeout(timeouts.start, service.peer().list_all_tools()).await;
    let listed = match listed {
        Ok(Ok(listed)) => listed,
        Ok(Err(e)) => {
            let _ = service.cancel().await;
            let stderr = match group.and_then(|mut g| g.stderr.take()) {
                Some(stderr) => stderr.finish().await,
                None => String::new(),
            };
            return Err(start_error(format!("`tools/list` failed: {e}"), stderr));
        }
        Err(_) => {
            let _ = service.cancel().await;
            return Err(start_error(
                format!(
                    "no answer to `tools/list` within {} s",
                    timeouts.start.as_secs()
                ),
                String::new(),
            ));
        }
    };
    let mut tools: Vec<Arc<dyn DynTool>> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for tool in listed {
        let qualified = qualified_name(name, &tool.name);
        if !seen.insert(qualified.clone()) {
            tracing::warn!(server = name, tool = %tool.name, "MCP tool skipped: its name collides with another after cleaning");
            continue;
        }
        let read_only = tool
            .annotations
            .as_ref()
            .and_then(|a| a.read_only_hint)
            .unwrap_or(false);
        tools.push(Arc::new(McpTool {
            server: name.to_owned(),
            remote_name: tool.name.to_string(),
            spec: ToolSpec {
                name: qualified,
                description: tool
                    .description
                    .as_deref()
                    .unwrap_or("(no description)")
                    .to_owned(),
                input_schema: serde_json::Value::Object((*tool.input_schema).clone()),
            },
            read_only,
            peer: service.peer().clone(),
            call_timeout: timeouts.call,
        }));
    }
    tracing::debug!(server = name, tools = tools.len(), "MCP server started");
    Ok((
        Connection {
            name: name.to_owned(),
            pid: group.as_ref().and_then(|g| g.child.id()),
            group,
            service,
        },
        tools,
    ))
}

/// `server__tool`, cut to the 64 characters of `[a-zA-Z0-9_-]` the model APIs accept (other
/// characters become `_`).
fn qualified_name(server: &str, tool: &str) -> String {
    let cleaned: String = tool
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut name = format!("{server}__{cleaned}");
    name.truncate(64);
    name
}

/// One tool of an MCP server.
struct McpTool {
    server: String,
    /// The tool's name on its server.
    remote_name: String,
    spec: ToolSpec,
    /// The server says so; a hint from an untrusted server only decides parallel calls.
    read_only: bool,
    peer: Peer<RoleClient>,
    call_timeout: Duration,
}

impl DynTool for McpTool {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    fn writes(&self) -> bool {
        !self.read_only
    }

    fn call_json<'a>(
        &'a self,
        arguments: serde_json::Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, ToolResult> {
        Box::pin(async move {
            let arguments = match arguments {
                serde_json::Value::Object(map) => map,
                serde_json::Value::Null => serde_json::Map::new(),
                other => {
                    return Err(ToolError::respond(format!(
                        "the arguments of {} must be a JSON object, not {other}",
                        self.spec.name
                    )));
                }
            };
            if self.peer.is_transport_closed() {
                return Err(self.gone("it has stopped"));
            }
            let params =
                CallToolRequestParams::new(self.remote_name.clone()).with_arguments(arguments);
            let call = tokio::time::timeout(self.call_timeout, self.peer.call_tool(params));
            tokio::select! {
                result = call => match result {
                    Ok(Ok(result)) => Ok(output(result)),
                    Ok(Err(e)) => Err(self.gone(&e.to_string())),
                    Err(_) => Err(ToolError::respond(format!(
                        "MCP server `{}` did not answer {} within {} s",
                        self.server, self.remote_name, self.call_timeout.as_secs()
                    ))),
                },
                () = ctx.cancel.cancelled() => Err(ToolError::respond("not finished: the run was cancelled")),
            }
        })
    }
}

impl McpTool {
    /// The server cannot answer: the model learns it and may go on without the tool.
    fn gone(&self, why: &str) -> ToolError {
        ToolError::respond(format!(
            "MCP server `{}` could not run {}: {why}",
            self.server, self.remote_name
        ))
    }
}

/// What the model reads of a tool's result: its text blocks, other blocks summarized, or the
/// structured content when there is no text.
fn output(result: CallToolResult) -> ToolOutput {
    let mut parts: Vec<String> = result
        .content
        .iter()
        .map(|block| match block {
            ContentBlock::Text(text) => text.text.clone(),
            ContentBlock::Image(image) => format!("[image, {}]", image.mime_type),
            ContentBlock::Audio(_) => "[audio]".to_owned(),
            other => serde_json::to_string(other).unwrap_or_else(|_| "[resource]".to_owned()),
        })
        .collect();
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        parts.push(structured.to_string());
    }
    let text = parts.join("\n");
    if result.is_error == Some(true) {
        ToolOutput::failure(text)
    } else {
        ToolOutput::text(text)
    }
}

/// Reads a child's stderr for its whole life (so that a chatty server never blocks on a full
/// pipe), logs it, and keeps its last few KiB for a start error.
struct StderrTail {
    tail: Arc<Mutex<VecDeque<String>>>,
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl StderrTail {
    fn spawn(server: &str, stderr: Option<ChildStderr>) -> Self {
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let reader = stderr.map(|stderr| {
            let tail = tail.clone();
            let server = server.to_owned();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                let mut kept = 0usize;
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(server = %server, "MCP server stderr: {line}");
                    let Ok(mut tail) = tail.lock() else { break };
                    kept += line.len() + 1;
                    tail.push_back(line);
                    while kept > STDERR_TAIL_BYTES && tail.len() > 1 {
                        if let Some(old) = tail.pop_front() {
                            kept -= old.len() + 1;
                        }
                    }
                }
            })
        });
        Self { tail, reader }
    }

    /// The tail, once the child closed its stderr (or after [`STDERR_GRACE`]).
    async fn finish(mut self) -> String {
        if let Some(mut reader) = self.reader.take()
            && tokio::time::timeout(STDERR_GRACE, &mut reader)
                .await
                .is_err()
        {
            reader.abort();
        }
        let tail = self
            .tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        tail.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_are_valid_tool_names() {
        assert_eq!(qualified_name("test", "echo"), "test__echo");
        assert_eq!(qualified_name("fs", "read.file/v2"), "fs__read_file_v2");
        assert_eq!(qualified_name("s", &"x".repeat(100)).len(), 64);
    }

    #[test]
    fn results_keep_text_and_the_error_flag() {
        let ok = output(CallToolResult::success(vec![
            ContentBlock::text("one"),
            ContentBlock::text("two"),
        ]));
        assert_eq!(ok, ToolOutput::text("one\ntwo"));
        let failed = output(CallToolResult::error(vec![ContentBlock::text("boom")]));
        assert_eq!(failed, ToolOutput::failure("boom"));
    }
}
