//! Tools on the wire: what a tool is to a model ([`ToolSpec`]) and a model's request to run one
//! ([`ToolCall`]). The LLM providers translate these to and from each API's own shapes; the agent's
//! tools, the MCP client and servers describe themselves with them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A tool as a model sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToolSpec {
    /// The name the model calls it by: `[a-zA-Z0-9_-]{1,64}` (MCP tools: `server__tool`).
    pub name: String,
    /// What the tool does and when to use it, for the model.
    pub description: String,
    /// A JSON Schema (an object schema) of the tool's arguments.
    #[schema(value_type = Object)]
    pub input_schema: serde_json::Value,
}

/// A model's request to run one tool, with its complete arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToolCall {
    /// The provider's id of this call; the tool's result answers it by this id.
    pub id: String,
    /// The [`ToolSpec::name`] of the tool to run.
    pub name: String,
    /// The arguments, as parsed JSON (an object for every API kodiai speaks).
    #[schema(value_type = Object)]
    pub arguments: serde_json::Value,
}
