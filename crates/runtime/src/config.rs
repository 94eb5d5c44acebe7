//! The server's configuration: an optional `kodiai.toml`, overridden by environment variables,
//! parsed once at start into a [`Config`] that is passed down (never a global).
//!
//! Every setting has one key in the file and, for most, one environment variable (the names of
//! the seeds and SPEC §1). A bad value stops start-up with a [`ConfigError`]: one line naming the
//! key, the value (masked when it is a secret) and what is expected.
//!
//! One module per section reads its keys through [`sources`]; [`Config::from_sources`] walks
//! them in order. A new area's settings are one more module and one more line there.

mod agent;
mod auth;
mod database;
mod github;
mod jobs;
mod llm;
mod log;
mod mcp;
mod mentions;
mod server;
mod sources;
mod workspaces;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use agent::AgentConfig;
pub use auth::AuthConfig;
pub use database::DatabaseConfig;
pub use github::{GithubClientConfig, GithubConfig};
pub use jobs::JobsConfig;
pub use llm::{LlmConfig, parse_model};
pub use log::{LogConfig, LogFormat};
pub use mcp::McpConfig;
pub use mentions::MentionsConfig;
pub use server::ServerConfig;
pub use workspaces::WorkspacesConfig;

use sources::{Sources, read_file};

/// The process environment, captured once in `main` (tests pass their own).
pub type Env = BTreeMap<String, String>;

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_FILE: &str = "kodiai.toml";

/// The effective configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Where kodiai keeps its files: the SQLite database, repository mirrors, reports.
    pub data_dir: PathBuf,
    /// Where ticket workspaces are cloned (`TICKETS_ROOT`).
    pub tickets_root: PathBuf,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub github: GithubConfig,
    pub llm: LlmConfig,
    pub auth: AuthConfig,
    pub jobs: JobsConfig,
    pub workspaces: WorkspacesConfig,
    pub mentions: MentionsConfig,
    pub agent: AgentConfig,
    pub mcp: McpConfig,
}

/// A setting that cannot be used. Displays as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value does not parse. `value` is already masked when the setting is a secret.
    #[error("{origin} = {value:?}: expected {expected}")]
    Invalid {
        origin: String,
        value: String,
        expected: String,
    },
    /// The configuration file is missing, unreadable or not TOML.
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// A key in the file that kodiai does not know (usually a typo).
    #[error("{path}: unknown key `{key}`")]
    UnknownKey { path: String, key: String },
}

impl Config {
    /// Reads `file` (or `kodiai.toml` in the working folder, if present) and the environment.
    pub fn load(file: Option<&Path>, env: &Env) -> Result<Self, ConfigError> {
        let file = match file {
            Some(path) => Some(read_file(path)?),
            None if Path::new(DEFAULT_FILE).is_file() => Some(read_file(Path::new(DEFAULT_FILE))?),
            None => None,
        };
        Self::from_sources(file, env)
    }

    /// Builds the configuration from a parsed file (path and table) and an environment: each
    /// section in turn (the first bad value is the one reported), then the file's unknown keys.
    pub fn from_sources(
        file: Option<(PathBuf, toml::Table)>,
        env: &Env,
    ) -> Result<Self, ConfigError> {
        let mut s = Sources {
            file,
            env,
            known: BTreeSet::new(),
        };
        let folder = |t: &str| (!t.is_empty()).then(|| PathBuf::from(t));
        let data_dir = s
            .parse("data_dir", &["KODIAI_DATA_DIR"], "a folder path", folder)?
            .unwrap_or_else(|| PathBuf::from("./data"));
        let tickets_root = s
            .parse("tickets_root", &["TICKETS_ROOT"], "a folder path", folder)?
            .unwrap_or_else(|| data_dir.join("tickets"));
        let config = Self {
            server: server::read(&mut s)?,
            database: database::read(&mut s, &data_dir)?,
            log: log::read(&mut s)?,
            github: github::read(&mut s)?,
            llm: llm::read(&mut s)?,
            auth: auth::read(&mut s)?,
            jobs: jobs::read(&mut s)?,
            workspaces: workspaces::read(&mut s)?,
            mentions: mentions::read(&mut s)?,
            agent: agent::read(&mut s)?,
            mcp: mcp::read(&mut s)?,
            data_dir,
            tickets_root,
        };
        s.reject_unknown_keys()?;
        Ok(config)
    }

    /// The effective configuration as TOML, with every secret masked; usable as a `kodiai.toml`
    /// once the secrets are filled in.
    pub fn to_masked_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }
}

#[cfg(test)]
mod tests;
