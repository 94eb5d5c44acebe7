//! MCP, both ways. The client ([`McpClients`]): a task's MCP servers, from configuration
//! ([`McpServerConfig`]: a stdio child process or a streamable-HTTP endpoint), connected when
//! the task starts and stopped when it ends; their tools reach the model as `server__tool`
//! [`DynTool`](crate::tools::DynTool)s. The server ([`serve`]): any [`ToolRegistry`] offered to
//! an MCP client, which is how the CLI backends get kodiai's tools (`kodiai mcp NAME`); a task's
//! own tools reach a CLI through a [`ToolSocket`] and the relay the CLI starts ([`relay`]).
//!
//! Errors a server's tool returns go back to the model as failed results; so does a server that
//! died in the middle of a task. A server that cannot start fails the task's start with the tail
//! of its stderr.
//!
//! [`ToolRegistry`]: crate::tools::ToolRegistry

mod client;
mod config;
pub mod relay;
mod server;

pub use client::{McpClients, McpTimeouts};
pub use config::{McpServerConfig, SAFE_PATH};
pub use relay::{ToolSocket, relay_stdio};
pub use server::{serve, serve_stdio};

/// Why MCP servers could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McpError {
    /// A configuration that cannot work (a refused environment key, a bad name or header); the
    /// operator fixes the configuration.
    #[error("MCP server `{server}`: {message}")]
    Config { server: String, message: String },
    /// The server did not start or did not answer the handshake; `stderr` is the tail of what
    /// a stdio server wrote there. The task does not start.
    #[error("MCP server `{server}` did not start: {message}{}", stderr_suffix(.stderr))]
    Start {
        server: String,
        message: String,
        stderr: String,
    },
    /// Serving tools over MCP failed.
    #[error("MCP: {0}")]
    Serve(String),
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!("; its stderr: {}", stderr.trim())
    }
}
