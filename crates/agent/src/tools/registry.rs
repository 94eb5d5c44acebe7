//! The registry (the tools of one task, by name) and the router (runs a model's calls against
//! it: unknown tools and bad arguments go back to the model, read-only batches run in parallel).

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::join_all;
use kodiai_protocol::{ToolCall, ToolSpec};

use super::{DynTool, ToolContext, ToolError, ToolOutput};

/// Why a tool could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Two tools with one name (for example an MCP tool that shadows a built-in one); the caller
    /// that assembles the task's tools decides which to keep.
    #[error("a tool named `{0}` is already registered")]
    Duplicate(String),
    /// The model APIs accept tool names of `[a-zA-Z0-9_-]{{1,64}}` only.
    #[error("`{0}` is not a valid tool name (1 to 64 of a-z, A-Z, 0-9, `_`, `-`)")]
    InvalidName(String),
}

/// The tools one task may use, in registration order (the order the model sees them in).
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: Vec<Arc<dyn DynTool>>,
    by_name: HashMap<String, usize>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

impl ToolRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool under its spec's name.
    pub fn register(&mut self, tool: Arc<dyn DynTool>) -> Result<(), RegistryError> {
        let name = tool.spec().name;
        if !valid_name(&name) {
            return Err(RegistryError::InvalidName(name));
        }
        if self.by_name.contains_key(&name) {
            return Err(RegistryError::Duplicate(name));
        }
        self.by_name.insert(name, self.tools.len());
        self.tools.push(tool);
        Ok(())
    }

    /// Adds several tools; stops at the first that cannot be added.
    pub fn register_all(
        &mut self,
        tools: impl IntoIterator<Item = Arc<dyn DynTool>>,
    ) -> Result<(), RegistryError> {
        tools.into_iter().try_for_each(|tool| self.register(tool))
    }

    /// The tool called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn DynTool>> {
        self.by_name.get(name).map(|&i| &self.tools[i])
    }

    /// The specs to send to the model.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.iter().map(|tool| tool.spec()).collect()
    }

    /// The names, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.tools.iter().map(|tool| tool.spec().name).collect()
    }

    /// How many tools there are.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One call's result, answering its [`ToolCall`] by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCallResult {
    /// The [`ToolCall::id`] this answers.
    pub call_id: String,
    /// The tool that was called.
    pub name: String,
    /// What the model gets back.
    pub output: ToolOutput,
}

/// A tool hit a broken invariant: the run must end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tool `{name}` (call {call_id}) failed fatally: {message}")]
pub struct FatalToolError {
    /// The call that failed.
    pub call_id: String,
    /// Its tool.
    pub name: String,
    /// What broke.
    pub message: String,
}

/// Runs tool calls against a registry.
#[derive(Debug, Clone, Default)]
pub struct ToolRouter {
    registry: Arc<ToolRegistry>,
}

impl ToolRouter {
    /// A router over these tools.
    pub fn new(registry: ToolRegistry) -> Self {
        Self {
            registry: Arc::new(registry),
        }
    }

    /// The tools it routes to.
    pub fn registry(&self) -> &ToolRegistry {
        &self.registry
    }

    /// Runs one call. Unknown tools, bad arguments and every [`ToolError::RespondToModel`] become
    /// an error result for the model; only [`ToolError::Fatal`] is an `Err`.
    pub async fn dispatch(
        &self,
        call: &ToolCall,
        ctx: &ToolContext,
    ) -> Result<ToolCallResult, FatalToolError> {
        let answer = |output| ToolCallResult {
            call_id: call.id.clone(),
            name: call.name.clone(),
            output,
        };
        let Some(tool) = self.registry.get(&call.name) else {
            return Ok(answer(ToolOutput::failure(format!(
                "there is no tool named `{}`; the tools are: {}",
                call.name,
                self.registry.names().join(", ")
            ))));
        };
        if ctx.cancel.is_cancelled() {
            return Ok(answer(ToolOutput::failure(
                "not run: the run was cancelled",
            )));
        }
        match tool.call_json(call.arguments.clone(), ctx).await {
            Ok(output) => Ok(answer(output)),
            Err(ToolError::RespondToModel(message)) => Ok(answer(ToolOutput::failure(message))),
            Err(ToolError::Fatal(message)) => Err(FatalToolError {
                call_id: call.id.clone(),
                name: call.name.clone(),
                message,
            }),
        }
    }

    /// Runs the calls of one model turn and returns one result per call, in the calls' order.
    /// When none of the called tools writes, they run in parallel; otherwise one after another,
    /// so that a write is never interleaved with the reads around it. The first fatal error stops
    /// the batch.
    pub async fn dispatch_all(
        &self,
        calls: &[ToolCall],
        ctx: &ToolContext,
    ) -> Result<Vec<ToolCallResult>, FatalToolError> {
        let read_only = calls.iter().all(|call| {
            self.registry
                .get(&call.name)
                .is_none_or(|tool| !tool.writes())
        });
        if read_only && calls.len() > 1 {
            return join_all(calls.iter().map(|call| self.dispatch(call, ctx)))
                .await
                .into_iter()
                .collect();
        }
        let mut results = Vec::with_capacity(calls.len());
        for call in calls {
            results.push(self.dispatch(call, ctx).await?);
        }
        Ok(results)
    }
}
