//! A task's tools served on its [`ToolSocket`] and reached through the relay a CLI starts
//! (`kodiai mcp github-*` runs [`relay`] on its stdin and stdout): a real rmcp client lists and
//! calls them over the relay; a wrong key, a group the task does not serve and a task that has
//! ended are refused with why.

use kodiai_agent::mcp::relay::relay;
use kodiai_agent::mcp::{McpError, ToolSocket};
use kodiai_agent::tools::{ToolRegistry, WorkspaceRoot, WorkspaceToolOptions, workspace_tools};
use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use serde_json::json;
use tokio_util::sync::CancellationToken;

async fn files_socket(dir: &std::path::Path, at: &std::path::Path) -> ToolSocket {
    let root = WorkspaceRoot::new(dir).unwrap();
    let mut registry = ToolRegistry::new();
    registry
        .register_all(workspace_tools(&root, &WorkspaceToolOptions::default()).await)
        .unwrap();
    ToolSocket::start(
        &at.join("tools.sock"),
        vec![("files".to_owned(), registry)],
        &CancellationToken::new(),
    )
    .unwrap()
}

fn key_of(socket: &ToolSocket) -> String {
    socket.relay_env()[1].1.clone()
}

#[tokio::test]
async fn a_client_reaches_the_tasks_tools_through_the_relay() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("notes.txt"), "kept in the task\n").unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let socket = files_socket(work.path(), scratch.path()).await;
    let env = socket.relay_env();
    assert_eq!(env[0].0, "KODIAI_TOOL_SOCKET");
    assert_eq!(env[1].0, "KODIAI_TOOL_KEY");
    assert_eq!(env[1].1.len(), 64, "a 32-byte key in hex");

    let (client_end, relay_end) = tokio::io::duplex(1 << 16);
    let (relay_in, relay_out) = tokio::io::split(relay_end);
    let path = socket.path().to_owned();
    let key = key_of(&socket);
    let relayed =
        tokio::spawn(async move { relay("files", &path, &key, relay_in, relay_out).await });
    let client = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("test-cli", "1.0"),
    )
    .serve(tokio::io::split(client_end))
    .await
    .expect("initialize is answered through the relay");
    assert_eq!(
        client
            .peer_info()
            .unwrap()
            .server_info
            .as_ref()
            .unwrap()
            .name,
        "kodiai-files"
    );
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "read_file"), "{tools:?}");
    let result = client
        .call_tool(
            CallToolRequestParams::new("read_file")
                .with_arguments(json!({"path": "notes.txt"}).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    let text = result.content[0].as_text().unwrap().text.clone();
    assert!(text.contains("kept in the task"), "{text}");

    // The task ends: the relay ends with it, and nothing is served any more.
    socket.shutdown().await;
    relayed.await.unwrap().unwrap();
    drop(client);
    let (_, relay_end) = tokio::io::duplex(64);
    let (relay_in, relay_out) = tokio::io::split(relay_end);
    let gone = relay(
        "files",
        &scratch.path().join("tools.sock"),
        "any",
        relay_in,
        relay_out,
    )
    .await;
    assert!(
        matches!(&gone, Err(McpError::Serve(m)) if m.contains("no task is serving tools")),
        "{gone:?}"
    );
}

#[tokio::test]
async fn a_wrong_key_or_an_unserved_group_is_refused_with_why() {
    let work = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let socket = files_socket(work.path(), scratch.path()).await;
    let key = key_of(&socket);
    for (group, key, why) in [
        ("files", "0".repeat(64), "wrong key".to_owned()),
        (
            "github-ci",
            key.clone(),
            "this task serves no tool group `github-ci` (it serves: files)".to_owned(),
        ),
    ] {
        let (_, relay_end) = tokio::io::duplex(64);
        let (relay_in, relay_out) = tokio::io::split(relay_end);
        let refused = relay(group, socket.path(), &key, relay_in, relay_out).await;
        assert_eq!(refused, Err(McpError::Serve(why)), "{group}");
    }
    socket.shutdown().await;
}
