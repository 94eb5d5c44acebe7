//! The agent's tools: what a tool is ([`Tool`], typed; [`DynTool`], the object-safe wrapper the
//! registry holds), the [`ToolRegistry`] of the tools one task may use, and the [`ToolRouter`]
//! that runs a model's calls against it. The built-in workspace tools (`read_file`, `list_files`,
//! `search`, `edit_file`, `write_file`, `git_diff`, `git_log`) and `run_command` live in the
//! submodules; every path they take goes through [`WorkspaceRoot`], which keeps them inside the
//! workspace.
//!
//! Two kinds of failure, as SPEC §7 says: [`ToolError::RespondToModel`] (bad arguments, a missing
//! file, a path outside the workspace, a non-zero exit) goes back to the model as the call's
//! result, marked as an error, and the run goes on; [`ToolError::Fatal`] (a broken invariant)
//! ends the run.

mod command;
mod confine;
mod files;
mod git;
pub(crate) mod process;
mod registry;
mod search;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use kodiai_protocol::ToolSpec;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

pub use command::{NetworkIsolation, RunCommand, RunCommandOptions};
pub use confine::WorkspaceRoot;
pub use files::{EditFile, ListFiles, ReadFile, WriteFile};
pub use git::{GitDiff, GitLog};
pub use registry::{FatalToolError, RegistryError, ToolCallResult, ToolRegistry, ToolRouter};
pub use search::Search;

/// What a finished tool call gives the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    /// The text the model reads.
    pub content: String,
    /// The call failed in a way the model can act on (the provider marks the result as an error).
    pub is_error: bool,
}

impl ToolOutput {
    /// A successful result.
    pub fn text(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: false,
        }
    }

    /// A failed result the model should see (a command's non-zero exit, for example).
    pub fn failure(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: true,
        }
    }
}

/// Why a tool call did not produce an output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The model can fix this (bad arguments, missing file, a path outside the workspace): the
    /// router turns it into a [`ToolOutput::failure`] for the model, and the run goes on.
    #[error("{0}")]
    RespondToModel(String),
    /// A broken invariant (the workspace is gone, a worker thread died): the router returns it as
    /// [`FatalToolError`] and the loop ends the run with it.
    #[error("{0}")]
    Fatal(String),
}

impl ToolError {
    /// Shorthand for [`ToolError::RespondToModel`].
    pub fn respond(message: impl Into<String>) -> Self {
        Self::RespondToModel(message.into())
    }
}

/// The result of one tool call.
pub type ToolResult = Result<ToolOutput, ToolError>;

/// What every call gets besides its arguments.
#[derive(Debug, Clone, Default)]
pub struct ToolContext {
    /// Cancelled when the run is cancelled: long tools (commands, git) stop and clean up.
    pub cancel: CancellationToken,
}

/// A tool with typed arguments. Implement this; the registry holds it as a [`DynTool`] (the
/// blanket impl parses the model's JSON into [`Tool::Args`] and derives the schema from it).
pub trait Tool: Send + Sync + 'static {
    /// The arguments; their JSON Schema (doc comments included) is what the model sees.
    type Args: DeserializeOwned + JsonSchema + Send;

    /// The name the model calls the tool by.
    fn name(&self) -> &str;

    /// What the tool does and when to use it, for the model.
    fn description(&self) -> String;

    /// Whether a call may change the workspace or the world. Calls to tools that do not write
    /// run in parallel when the model asks for several at once.
    fn writes(&self) -> bool;

    /// Runs one call.
    fn call(&self, args: Self::Args, ctx: &ToolContext) -> impl Future<Output = ToolResult> + Send;
}

/// The object-safe face of a tool, the one the registry holds. [`Tool`]s get it for free; tools
/// whose schema is only known at run time (MCP) implement it directly.
pub trait DynTool: Send + Sync {
    /// The tool as the model sees it.
    fn spec(&self) -> ToolSpec;

    /// See [`Tool::writes`].
    fn writes(&self) -> bool;

    /// Runs one call with the model's JSON arguments.
    fn call_json<'a>(
        &'a self,
        arguments: serde_json::Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, ToolResult>;
}

impl<T: Tool> DynTool for T {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name().to_owned(),
            description: self.description(),
            input_schema: args_schema::<T::Args>(),
        }
    }

    fn writes(&self) -> bool {
        Tool::writes(self)
    }

    fn call_json<'a>(
        &'a self,
        arguments: serde_json::Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, ToolResult> {
        Box::pin(async move {
            // Some models send `null` for a call without arguments.
            let arguments = if arguments.is_null() {
                serde_json::Value::Object(serde_json::Map::new())
            } else {
                arguments
            };
            let args: T::Args = serde_json::from_value(arguments).map_err(|e| {
                ToolError::respond(format!("invalid arguments for {}: {e}", self.name()))
            })?;
            self.call(args, ctx).await
        })
    }
}

/// The JSON Schema of a tool's arguments, without the keys the model APIs do not want at the top
/// of a tool's parameters (`$schema`, `title`).
fn args_schema<A: JsonSchema>() -> serde_json::Value {
    let mut schema = schemars::schema_for!(A).to_value();
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
        object.remove("title");
    }
    schema
}

/// Settings of the workspace tools.
#[derive(Debug, Clone)]
pub struct WorkspaceToolOptions {
    /// How long one `git diff` or `git log` may take.
    pub git_timeout: Duration,
    /// `run_command`, when enabled (off by default).
    pub run_command: Option<RunCommandOptions>,
}

impl Default for WorkspaceToolOptions {
    fn default() -> Self {
        Self {
            git_timeout: Duration::from_secs(30),
            run_command: None,
        }
    }
}

impl WorkspaceToolOptions {
    /// The defaults, with `run_command` (on its defaults) enabled if `run_command`.
    pub fn with_run_command(run_command: bool) -> Self {
        Self {
            run_command: run_command.then(RunCommandOptions::default),
            ..Self::default()
        }
    }
}

/// The built-in tools over one workspace: the file and git tools, and `run_command` when
/// `options.run_command` enables it (probing once whether its network can be cut).
pub async fn workspace_tools(
    root: &WorkspaceRoot,
    options: &WorkspaceToolOptions,
) -> Vec<Arc<dyn DynTool>> {
    let mut tools: Vec<Arc<dyn DynTool>> = vec![
        Arc::new(ReadFile::new(root.clone())),
        Arc::new(ListFiles::new(root.clone())),
        Arc::new(Search::new(root.clone())),
        Arc::new(EditFile::new(root.clone())),
        Arc::new(WriteFile::new(root.clone())),
        Arc::new(GitDiff::new(root.clone(), options.git_timeout)),
        Arc::new(GitLog::new(root.clone(), options.git_timeout)),
    ];
    if let Some(run) = &options.run_command {
        tools.push(Arc::new(RunCommand::new(root.clone(), run.clone()).await));
    }
    tools
}

/// Runs blocking work (file walks, file reads) off the runtime; a panic or a lost worker thread
/// is a broken invariant.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ToolError> + Send + 'static,
) -> Result<T, ToolError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ToolError::Fatal(format!("a tool's worker thread failed: {e}")))?
}
