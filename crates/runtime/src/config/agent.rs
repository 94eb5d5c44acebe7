//! `[agent]`: which backend runs agent tasks, and the tools it may use.

use std::path::PathBuf;

use serde::Serialize;

use super::ConfigError;
use super::llm::LlmConfig;
use super::sources::Sources;

/// The agent (SPEC §7): which backend runs tasks and which optional tools it may use.
#[derive(Debug, Clone, Serialize)]
pub struct AgentConfig {
    /// `native` (kodiai's loop over `[llm]`), `claude-code` or `gemini-cli`.
    pub backend: kodiai_agent::backends::BackendKind,
    /// Optional tools the agent may use: `run_command` is off unless named here (for the CLI
    /// backends it allows their shell).
    pub allowed_tools: Vec<String>,
    /// The Gemini CLI executable (`GEMINI_CLI_PATH`; default `gemini` on the search path).
    /// Claude Code's is `llm.claude_cli_path`.
    pub gemini_cli_path: Option<PathBuf>,
    /// `PATH` of the CLI backends' process (node and the CLIs must be on it); nothing else of
    /// the host's environment reaches them.
    pub cli_search_path: String,
    /// The kodiai executable a CLI backend starts as `kodiai mcp github-*` to reach a job's
    /// GitHub tools (`KODIAI_TOOL_SERVER`; default: this process's own executable).
    pub tool_server: Option<PathBuf>,
    /// Let the Gemini CLI trust the workspace (`GEMINI_CLI_TRUST_WORKSPACE`), which a headless
    /// run needs: it then loads the repository's `.gemini/` settings, extensions and `.env`, so
    /// only for repositories whose content is trusted. Off by default.
    pub gemini_trust_workspace: bool,
}

impl AgentConfig {
    /// Whether `allowed_tools` names `tool`.
    pub fn allows(&self, tool: &str) -> bool {
        self.allowed_tools.iter().any(|t| t == tool)
    }

    /// The configured backend with its CLI path (from here or `[llm]`).
    pub fn backend_config(
        &self,
        kind: kodiai_agent::backends::BackendKind,
        llm: &LlmConfig,
    ) -> kodiai_agent::backends::BackendConfig {
        use kodiai_agent::backends::{BackendConfig, BackendKind};
        match kind {
            BackendKind::Native => BackendConfig::Native,
            BackendKind::ClaudeCode => BackendConfig::ClaudeCode {
                path: llm.claude_cli_path.clone(),
            },
            BackendKind::GeminiCli => BackendConfig::GeminiCli {
                path: self.gemini_cli_path.clone(),
            },
        }
    }
}

pub(super) fn read(s: &mut Sources<'_>) -> Result<AgentConfig, ConfigError> {
    let tool_name = |t: &str| {
        (!t.is_empty()
            && t.len() <= 64
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .then(|| t.to_owned())
    };
    Ok(AgentConfig {
        backend: s
            .parse(
                "agent.backend",
                &["KODIAI_AGENT_BACKEND"],
                "native, claude-code or gemini-cli",
                |t| t.parse().ok(),
            )?
            .unwrap_or_default(),
        allowed_tools: s
            .parse(
                "agent.allowed_tools",
                &["KODIAI_ALLOWED_TOOLS"],
                "a comma-separated list of tool names such as run_command",
                |t| {
                    t.split(',')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .map(tool_name)
                        .collect()
                },
            )?
            .unwrap_or_default(),
        gemini_cli_path: s.parse(
            "agent.gemini_cli_path",
            &["GEMINI_CLI_PATH"],
            "a file path",
            |t| (!t.is_empty()).then(|| PathBuf::from(t)),
        )?,
        cli_search_path: s
            .parse(
                "agent.cli_search_path",
                &["KODIAI_CLI_SEARCH_PATH"],
                "a PATH-style list of folders",
                |t| (!t.is_empty()).then(|| t.to_owned()),
            )?
            .unwrap_or_else(|| kodiai_agent::backends::DEFAULT_PATH.to_owned()),
        tool_server: s.parse(
            "agent.tool_server",
            &["KODIAI_TOOL_SERVER"],
            "a file path",
            |t| (!t.is_empty()).then(|| PathBuf::from(t)),
        )?,
        gemini_trust_workspace: s
            .parse(
                "agent.gemini_trust_workspace",
                &["KODIAI_GEMINI_TRUST_WORKSPACE"],
                "true or false",
                |t| t.parse().ok(),
            )?
            .unwrap_or(false),
    })
}
