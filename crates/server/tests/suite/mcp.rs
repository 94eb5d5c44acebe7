//! `kodiai mcp workspace --dir DIR` as the real binary, driven by a real rmcp client over its
//! stdin and stdout; and `kodiai run` with `[mcp.servers]` in its configuration, whose tools
//! (here: another `kodiai mcp workspace`) reach the model as `server__tool`.

use std::process::Stdio;

use kodiai_protocol::{AgentEvent, FinishReason};
use kodiai_test_support::llm::{Api, FakeLlm, Reply};
use pretty_assertions::assert_eq;
use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use serde_json::json;

const EXE: &str = env!("CARGO_BIN_EXE_kodiai");

fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "first line\nsecond line\n").unwrap();
    dir
}

#[tokio::test]
async fn kodiai_mcp_workspace_answers_a_real_mcp_client() {
    let dir = workspace();
    let cwd = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(EXE)
        .args(["mcp", "workspace", "--dir", dir.path().to_str().unwrap()])
        .current_dir(cwd.path())
        .env_remove("KODIAI_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let transport = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
    let client = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("test-client", "1.0"),
    )
    .serve(transport)
    .await
    .expect("initialize is answered");

    let info = client.peer_info().expect("the server introduced itself");
    let server = info.server_info.clone().expect("the server names itself");
    assert_eq!(server.name, "kodiai-workspace");
    assert!(info.capabilities.tools.is_some());

    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "read_file",
            "list_files",
            "search",
            "edit_file",
            "write_file",
            "git_diff",
            "git_log"
        ]
    );
    let read_file = &tools[0];
    assert_eq!(read_file.input_schema["type"], "object");
    assert!(read_file.input_schema["properties"].get("path").is_some());
    let read_only = |name: &str| {
        tools
            .iter()
            .find(|t| t.name == name)
            .and_then(|t| t.annotations.as_ref())
            .and_then(|a| a.read_only_hint)
    };
    assert_eq!(read_only("read_file"), Some(true));
    assert_eq!(read_only("edit_file"), Some(false));

    let args = |value: serde_json::Value| value.as_object().unwrap().clone();
    let result = client
        .call_tool(
            CallToolRequestParams::new("read_file")
                .with_arguments(args(json!({"path": "notes.txt"}))),
        )
        .await
        .unwrap();
    assert_ne!(result.is_error, Some(true));
    let text = result.content[0].as_text().unwrap().text.clone();
    assert!(
        text.contains("first line") && text.contains("second line"),
        "{text}"
    );

    // What the model could fix comes back as a tool error, as in the native loop.
    let outside = client
        .call_tool(
            CallToolRequestParams::new("read_file")
                .with_arguments(args(json!({"path": "../secret"}))),
        )
        .await
        .unwrap();
    assert_eq!(outside.is_error, Some(true));
    let bad = client
        .call_tool(
            CallToolRequestParams::new("read_file").with_arguments(args(json!({"offset": "x"}))),
        )
        .await
        .unwrap();
    assert_eq!(bad.is_error, Some(true));
    assert!(
        bad.content[0]
            .as_text()
            .unwrap()
            .text
            .contains("invalid arguments")
    );

    // Closing the client closes the server's stdin; it exits by itself, with 0.
    client.cancel().await.unwrap();
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn kodiai_mcp_refuses_a_missing_directory() {
    let output = tokio::process::Command::new(EXE)
        .args(["mcp", "workspace", "--dir", "/nonexistent/kodiai-dir"])
        .env_remove("KODIAI_CONFIG")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/kodiai-dir"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn kodiai_mcp_github_servers_need_a_running_job_and_its_key() {
    // Outside a job: one line naming what is missing, exit 2.
    let output = tokio::process::Command::new(EXE)
        .args(["mcp", "github-inline-comment"])
        .env_remove("KODIAI_CONFIG")
        .env_remove("KODIAI_TOOL_SOCKET")
        .env_remove("KODIAI_TOOL_KEY")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("KODIAI_TOOL_SOCKET"), "{stderr}");
    assert!(output.stdout.is_empty());

    // A socket with no job behind it: exit 1, and why.
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(EXE)
        .args(["mcp", "github-ci"])
        .env_remove("KODIAI_CONFIG")
        .env("KODIAI_TOOL_SOCKET", dir.path().join("tools.sock"))
        .env("KODIAI_TOOL_KEY", "not-the-key")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no task is serving tools"), "{stderr}");
    assert!(!stderr.contains("not-the-key"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn kodiai_run_gets_the_tools_of_its_configured_mcp_servers() {
    let dir = workspace();
    let docs = tempfile::tempdir().unwrap();
    std::fs::write(docs.path().join("guide.md"), "Always write tests.\n").unwrap();
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("kodiai.toml");
    std::fs::write(
        &config,
        format!(
            "[mcp.servers.docs]\ntransport = \"stdio\"\ncommand = {EXE:?}\nargs = [\"mcp\", \"workspace\", \"--dir\", {:?}]\n",
            docs.path().to_str().unwrap()
        ),
    )
    .unwrap();
    let fake = FakeLlm::start(Api::Anthropic).await;
    fake.push(Reply::tool_calls(&[(
        "toolu_1",
        "docs__read_file",
        json!({"path": "guide.md"}),
    )]));
    fake.push(Reply::text("The guide says to write tests."));
    let cwd = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(EXE)
        .args([
            "--config",
            config.to_str().unwrap(),
            "run",
            "--json",
            "--dir",
        ])
        .arg(dir.path())
        .arg("What does the guide say?")
        .current_dir(cwd.path())
        .env_remove("KODIAI_CONFIG")
        .env_remove("KODIAI_MODEL")
        .env("ANTHROPIC_API_KEY", "sk-ant-test-not-real")
        .env("ANTHROPIC_BASE_URL", fake.base_url())
        .env("KODIAI_MODEL", "anthropic/claude-haiku-4-5")
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let events: Vec<AgentEvent> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let results: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ToolResult {
                name,
                content,
                is_error,
                ..
            } => Some((
                name.clone(),
                content.contains("Always write tests."),
                *is_error,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(results, [("docs__read_file".to_owned(), true, false)]);
    assert!(matches!(
        events.last(),
        Some(AgentEvent::Finished {
            reason: FinishReason::Completed,
            ..
        })
    ));
    // The model was offered the MCP tools beside the built-in ones.
    let tools = fake.requests()[0].body["tools"].to_string();
    assert!(
        tools.contains("\"docs__read_file\"") && tools.contains("\"read_file\""),
        "{tools}"
    );
}

#[tokio::test]
async fn kodiai_run_fails_when_an_mcp_server_cannot_start() {
    let dir = workspace();
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("kodiai.toml");
    // `kodiai mcp` with a missing directory writes why to stderr and exits 2.
    std::fs::write(
        &config,
        format!(
            "[mcp.servers.docs]\ntransport = \"stdio\"\ncommand = {EXE:?}\nargs = [\"mcp\", \"workspace\", \"--dir\", \"/nonexistent/docs\"]\n"
        ),
    )
    .unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(EXE)
        .args(["--config", config.to_str().unwrap(), "run", "--dir"])
        .arg(dir.path())
        .arg("Anything.")
        .current_dir(cwd.path())
        .env_remove("KODIAI_CONFIG")
        .env("ANTHROPIC_API_KEY", "sk-ant-test-not-real")
        .env("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
        .env("KODIAI_MODEL", "anthropic/claude-haiku-4-5")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("MCP server `docs` did not start"),
        "{stderr}"
    );
    assert!(stderr.contains("/nonexistent/docs"), "{stderr}");
}
