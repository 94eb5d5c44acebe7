//! A real MCP server for tests, built on rmcp only (not on kodiai's MCP code, so that the client
//! is tested against an independent server).
//!
//! ```text
//! kodiai-test-mcp                      serve over stdin and stdout
//! kodiai-test-mcp --http 127.0.0.1:0   serve streamable HTTP at /mcp; the first stdout line is
//!                                      the endpoint's URL
//! kodiai-test-mcp --exit-at-start MSG  write MSG to stderr and exit 1 (a server that cannot start)
//! ```
//!
//! Tools: `echo {text}`, `add {a, b}`, `fail {message}` (a tool error), `env {name}` (a variable
//! of this process, "" when unset: tests prove what the child was given), `header {name}` (a
//! request header, over HTTP), `spawn_sleeper` (starts a `sleep` in this process's group and
//! returns its pid: tests prove the whole group is killed).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test program: its output is its interface, a failure is a test failure"
)]

use std::io::Write as _;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, ServiceExt as _};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct TestServer;

fn tool(name: &'static str, description: &'static str, properties: Value, read_only: bool) -> Tool {
    let required: Vec<&String> = properties.as_object().unwrap().keys().collect();
    let schema = json!({"type": "object", "properties": properties, "required": required});
    let Value::Object(schema) = schema else {
        unreachable!()
    };
    Tool::new(name, description, Arc::new(schema))
        .with_annotations(ToolAnnotations::new().read_only(read_only))
}

fn text(value: impl Into<String>) -> Result<CallToolResponse, ErrorData> {
    Ok(CallToolResult::success(vec![ContentBlock::text(value.into())]).into())
}

impl ServerHandler for TestServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let string = json!({"type": "string"});
        let number = json!({"type": "number"});
        Ok(ListToolsResult::with_all_items(vec![
            tool("echo", "Returns its text.", json!({"text": string}), true),
            tool(
                "add",
                "Adds two numbers.",
                json!({"a": number, "b": number}),
                true,
            ),
            tool(
                "fail",
                "Always fails with the message.",
                json!({"message": string}),
                true,
            ),
            tool(
                "env",
                "The value of an environment variable of the server, or \"\".",
                json!({"name": string}),
                true,
            ),
            tool(
                "header",
                "The value of a request header (HTTP only), or \"\".",
                json!({"name": string}),
                true,
            ),
            tool(
                "spawn_sleeper",
                "Starts `sleep 600` in the server's process group; returns its pid.",
                json!({}),
                false,
            ),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = Value::Object(request.arguments.unwrap_or_default());
        let string = |key: &str| {
            args.get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| ErrorData::invalid_params(format!("`{key}` must be a string"), None))
        };
        match request.name.as_ref() {
            "echo" => text(string("text")?),
            "add" => {
                let number = |key: &str| {
                    args.get(key).and_then(Value::as_f64).ok_or_else(|| {
                        ErrorData::invalid_params(format!("`{key}` must be a number"), None)
                    })
                };
                text((number("a")? + number("b")?).to_string())
            }
            "fail" => {
                Ok(CallToolResult::error(vec![ContentBlock::text(string("message")?)]).into())
            }
            "env" => text(std::env::var(string("name")?).unwrap_or_default()),
            "header" => {
                let name = string("name")?;
                let value = context
                    .extensions
                    .get::<axum::http::request::Parts>()
                    .and_then(|parts| parts.headers.get(name.as_str()))
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                text(value)
            }
            "spawn_sleeper" => {
                let child = std::process::Command::new("sleep")
                    .arg("600")
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    // It keeps the server's stderr, as a real server's helper would: the client
                    // knows the group is gone when that pipe closes.
                    .spawn()
                    .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
                text(child.id().to_string())
            }
            other => Err(ErrorData::invalid_params(
                format!("no tool `{other}`"),
                None,
            )),
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => {
            let running = TestServer.serve(rmcp::transport::stdio()).await.unwrap();
            running.waiting().await.unwrap();
        }
        ["--http", addr] => {
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            let service: StreamableHttpService<TestServer, LocalSessionManager> =
                StreamableHttpService::new(
                    || Ok(TestServer),
                    Default::default(),
                    StreamableHttpServerConfig::default(),
                );
            let router = axum::Router::new().nest_service("/mcp", service);
            println!("http://{}/mcp", listener.local_addr().unwrap());
            std::io::stdout().flush().unwrap();
            axum::serve(listener, router).await.unwrap();
        }
        ["--exit-at-start", message] => {
            eprintln!("{message}");
            std::process::exit(1);
        }
        other => {
            eprintln!("kodiai-test-mcp: unexpected arguments {other:?}");
            std::process::exit(2);
        }
    }
}
