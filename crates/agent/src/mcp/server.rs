//! The MCP server side: [`serve`] offers the tools of a [`ToolRegistry`] to an MCP client (the
//! Claude Code and Gemini CLIs, through `kodiai mcp NAME`), with the same argument checks and
//! the same two kinds of failure as in the native loop.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::IntoTransport;
use rmcp::{ErrorData, ServerHandler, ServiceExt as _};
use tokio_util::sync::CancellationToken;

use super::McpError;
use crate::tools::{ToolContext, ToolError, ToolRegistry};

/// Serves `registry` over `transport` until the client goes away or `cancel` fires.
pub async fn serve<T, E, A>(
    registry: ToolRegistry,
    name: &str,
    transport: T,
    cancel: CancellationToken,
) -> Result<(), McpError>
where
    T: IntoTransport<RoleServer, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let handler = RegistryServer {
        registry: Arc::new(registry),
        name: name.to_owned(),
        cancel: cancel.clone(),
    };
    let running = handler
        .serve_with_ct(transport, cancel)
        .await
        .map_err(|e| McpError::Serve(format!("the client's handshake failed: {e}")))?;
    running
        .waiting()
        .await
        .map_err(|e| McpError::Serve(format!("the server task failed: {e}")))?;
    Ok(())
}

/// Serves `registry` on this process's stdin and stdout (stdout carries nothing else).
pub async fn serve_stdio(
    registry: ToolRegistry,
    name: &str,
    cancel: CancellationToken,
) -> Result<(), McpError> {
    serve(registry, name, rmcp::transport::stdio(), cancel).await
}

#[derive(Clone)]
struct RegistryServer {
    registry: Arc<ToolRegistry>,
    name: String,
    cancel: CancellationToken,
}

impl RegistryServer {
    fn tools(&self) -> Vec<Tool> {
        self.registry
            .specs()
            .into_iter()
            .map(|spec| {
                let writes = self.registry.get(&spec.name).is_none_or(|t| t.writes());
                let schema = match spec.input_schema {
                    serde_json::Value::Object(map) => map,
                    _ => serde_json::Map::new(),
                };
                Tool::new(spec.name, spec.description, Arc::new(schema))
                    .with_annotations(ToolAnnotations::new().read_only(!writes))
            })
            .collect()
    }
}

impl ServerHandler for RegistryServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_server_info(
            Implementation::new(format!("kodiai-{}", self.name), env!("CARGO_PKG_VERSION")),
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools().into_iter().find(|tool| tool.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(tool) = self.registry.get(&request.name) else {
            return Err(ErrorData::invalid_params(
                format!(
                    "there is no tool named `{}`; the tools are: {}",
                    request.name,
                    self.registry.names().join(", ")
                ),
                None,
            ));
        };
        // The client's cancellation of this request, or the server's end, stops the call.
        let cancel = self.cancel.child_token();
        let request_cancel = context.ct.clone();
        let linked = cancel.clone();
        let link = tokio::spawn(async move {
            request_cancel.cancelled().await;
            linked.cancel();
        });
        let ctx = ToolContext {
            cancel: cancel.clone(),
        };
        let arguments = request
            .arguments
            .map_or(serde_json::Value::Null, serde_json::Value::Object);
        let result = tool.call_json(arguments, &ctx).await;
        link.abort();
        match result {
            Ok(output) if output.is_error => {
                Ok(CallToolResult::error(vec![ContentBlock::text(output.content)]).into())
            }
            Ok(output) => {
                Ok(CallToolResult::success(vec![ContentBlock::text(output.content)]).into())
            }
            Err(ToolError::RespondToModel(message)) => {
                Ok(CallToolResult::error(vec![ContentBlock::text(message)]).into())
            }
            Err(ToolError::Fatal(message)) => Err(ErrorData::internal_error(message, None)),
        }
    }
}
