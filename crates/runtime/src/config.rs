//! The server's configuration: an optional `kodiai.toml`, overridden by environment variables,
//! parsed once at start into a [`Config`] that is passed down (never a global).
//!
//! Every setting has one key in the file and, for most, one environment variable (the names of
//! the seeds and SPEC §1). A bad value stops start-up with a [`ConfigError`]: one line naming the
//! key, the value (masked when it is a secret) and what is expected.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kodiai_protocol::JobKind;
use kodiai_store::DatabaseLocation;
use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, Serializer};

/// The process environment, captured once in `main` (tests pass their own).
pub type Env = BTreeMap<String, String>;

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_FILE: &str = "kodiai.toml";

/// What `config print` shows in place of a secret that is set.
const MASK: &str = "********";

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

#[derive(Debug, Clone, Serialize)]
pub struct ServerConfig {
    pub host: IpAddr,
    pub port: u16,
    /// A request that has no response by then gets 504.
    pub request_timeout_secs: u64,
    /// Largest request body accepted by the API (the webhook route has GitHub's own 25 MiB).
    pub body_limit_bytes: usize,
    /// After SIGTERM or SIGINT, in-flight requests get this long to finish.
    pub shutdown_grace_secs: u64,
    /// Origins allowed by CORS; empty means no cross-origin access. `*` allows any origin
    /// (without credentials).
    pub cors_allowed_origins: Vec<String>,
}

impl ServerConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DatabaseConfig {
    /// SQLite file or PostgreSQL URL; shown with its password masked.
    #[serde(serialize_with = "redacted_location")]
    pub url: DatabaseLocation,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when stdout is not a terminal, pretty otherwise.
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `RUST_LOG`-style filter, e.g. `info,kodiai=debug`.
    pub filter: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GithubConfig {
    pub app_id: Option<u64>,
    /// The App's private key, PEM text (read from a file when the setting is a path).
    #[serde(serialize_with = "masked")]
    pub private_key: Option<SecretString>,
    #[serde(serialize_with = "masked")]
    pub webhook_secret: Option<SecretString>,
    /// Personal-token mode, for a single user without an App.
    #[serde(serialize_with = "masked")]
    pub token: Option<SecretString>,
    pub api_url: url::Url,
    pub graphql_url: url::Url,
    /// The client's timeouts, retries, governor and caches (`github.*` keys of their own).
    #[serde(flatten)]
    pub client: GithubClientConfig,
    /// Earlier webhook secrets still accepted while the secret is rotated (beside
    /// `webhook_secret`).
    #[serde(serialize_with = "masked_list")]
    pub webhook_secrets: Vec<SecretString>,
    /// The App's slug: its events come from `<slug>[bot]`, which never triggers kodiai.
    pub app_slug: Option<String>,
    /// Another login whose events never trigger kodiai (the token's user in personal-token mode).
    pub bot_login: Option<String>,
}

impl GithubConfig {
    /// Every accepted webhook secret, the current one first.
    pub fn all_webhook_secrets(&self) -> Vec<SecretString> {
        self.webhook_secret
            .iter()
            .chain(&self.webhook_secrets)
            .cloned()
            .collect()
    }

    /// The logins of kodiai itself: events they cause never trigger it (no loops).
    pub fn own_logins(&self) -> Vec<String> {
        self.app_slug
            .iter()
            .map(|slug| format!("{slug}[bot]"))
            .chain(self.bot_login.iter().cloned())
            .collect()
    }
}

/// Who and what triggers kodiai from GitHub (SPEC §2: mention detection, who may trigger).
#[derive(Debug, Clone, Serialize)]
pub struct MentionsConfig {
    /// The handle that calls kodiai, with its `@`.
    pub trigger: String,
    /// Other handles that call it too (e.g. `@claude`).
    pub aliases: Vec<String>,
    /// Bot logins whose mentions and pull requests are acted on (`*`: any bot); other bots are
    /// ignored. kodiai's own logins never trigger it.
    pub allowed_bots: Vec<String>,
}

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

fn agent_config(s: &mut Sources<'_>) -> Result<AgentConfig, ConfigError> {
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

/// How kodiai's GitHub client behaves; the defaults follow GitHub's documented limits.
#[derive(Debug, Clone, Serialize)]
pub struct GithubClientConfig {
    /// Per attempt of a GitHub call.
    pub request_timeout_secs: u64,
    /// Retries of a call after 5xx, transport errors and rate limits.
    pub max_retries: u32,
    /// A rate limit asking for a longer wait fails the call (the job is retried later).
    pub max_rate_limit_wait_secs: u64,
    /// Content-creating calls (comments, reviews, reactions, pulls) per installation and minute.
    pub content_per_minute: u32,
    /// The same per hour.
    pub content_per_hour: u32,
    /// How long a collaborator permission answer is trusted.
    pub permission_cache_secs: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LlmConfig {
    /// The default model, `provider/model`.
    pub model: Option<String>,
    #[serde(serialize_with = "masked")]
    pub anthropic_api_key: Option<SecretString>,
    pub anthropic_base_url: url::Url,
    #[serde(serialize_with = "masked")]
    pub claude_code_oauth_token: Option<SecretString>,
    #[serde(serialize_with = "masked")]
    pub openai_api_key: Option<SecretString>,
    pub openai_base_url: Option<url::Url>,
    #[serde(serialize_with = "masked")]
    pub gemini_api_key: Option<SecretString>,
    pub gemini_base_url: url::Url,
    pub claude_cli_path: Option<PathBuf>,
    /// Azure OpenAI's `api-version` (`OPENAI_API_VERSION`), for the `azure` provider.
    pub azure_api_version: Option<String>,
    /// Models tried in order when the model is overloaded, rate limited or down after its
    /// retries, each `provider/model`.
    pub fallback_models: Vec<String>,
    /// Retries of one model call after the first attempt, before the next fallback.
    pub max_retries: u32,
    /// The first retry waits about this long (doubling, with jitter) unless the provider says
    /// `retry-after`.
    pub retry_base_ms: u64,
    /// No retry waits longer; a longer `retry-after` moves on to the next fallback.
    pub retry_max_secs: u64,
    pub connect_timeout_secs: u64,
    /// From sending a request to the response's headers.
    pub first_byte_timeout_secs: u64,
    /// Between two pieces of a streamed answer.
    pub idle_timeout_secs: u64,
    /// USD per million tokens by `provider/model` or model name, over the built-in list prices.
    pub prices: BTreeMap<String, kodiai_llm::Price>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuthConfig {
    /// Signs the API's session tokens.
    #[serde(serialize_with = "masked")]
    pub secret_key: Option<SecretString>,
    /// A bearer token with admin rights, for operators and scripts.
    #[serde(serialize_with = "masked")]
    pub admin_token: Option<SecretString>,
}

/// The job queue and its workers.
#[derive(Debug, Clone, Serialize)]
pub struct JobsConfig {
    /// Workers in this process: `serve` runs them beside HTTP (0: HTTP only), `kodiai worker`
    /// runs only them.
    pub workers: u32,
    /// Running jobs per concurrency key (a GitHub installation, an API user), at most.
    pub per_key_concurrency: u32,
    /// Jobs started per key and minute, on average (0: no rate limit).
    pub per_key_rate_per_minute: u32,
    /// Jobs a key may start at once before the rate applies.
    pub per_key_burst: u32,
    /// A running job whose worker has not renewed its lease for this long runs again elsewhere.
    pub lease_secs: u64,
    /// Idle workers look at the queue this often even without a notification.
    pub poll_interval_ms: u64,
    /// Runs of a job that keeps failing with transient errors, at most.
    pub max_attempts: u32,
    /// The first retry waits about this long; each next one twice as long (with jitter).
    pub backoff_base_secs: u64,
    /// No retry waits longer than this.
    pub backoff_max_secs: u64,
    /// A job running longer than this is cancelled and fails with reason `timeout`.
    pub timeout_secs: u64,
    /// Timeouts of single kinds, overriding `timeout_secs`.
    pub timeouts: BTreeMap<String, u64>,
    /// After its cancellation token fires, a handler has this long to return what it has.
    pub cancel_grace_secs: u64,
}

impl JobsConfig {
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    pub fn cancel_grace(&self) -> Duration {
        Duration::from_secs(self.cancel_grace_secs)
    }

    /// The timeout of one kind of job.
    pub fn timeout(&self, kind: JobKind) -> Duration {
        Duration::from_secs(
            self.timeouts
                .get(kind.as_str())
                .copied()
                .unwrap_or(self.timeout_secs),
        )
    }
}

/// Git workspaces: the mirror cache under `<data_dir>/workspaces`, and kodiai's commits.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspacesConfig {
    /// Mirrors not in use are evicted, least recently used first, above this size.
    pub cache_quota_mb: u64,
    /// Repositories larger than this are refused.
    pub max_repository_size_mb: u64,
    /// Each git command (fetch, checkout, push) is killed after this long.
    pub git_timeout_secs: u64,
    /// Author and committer of kodiai's commits (the App's bot account).
    pub commit_name: String,
    pub commit_email: String,
}

impl WorkspacesConfig {
    /// The workspace module's settings for the data folder `data_dir`.
    pub fn settings(&self, data_dir: &Path) -> kodiai_agent::workspace::Settings {
        const MIB: u64 = 1024 * 1024;
        kodiai_agent::workspace::Settings {
            root: data_dir.join("workspaces"),
            git_program: PathBuf::from("git"),
            git_timeout: Duration::from_secs(self.git_timeout_secs),
            cache_quota_bytes: self.cache_quota_mb.saturating_mul(MIB),
            max_repository_bytes: self.max_repository_size_mb.saturating_mul(MIB),
            identity: kodiai_agent::workspace::Identity::new(
                self.commit_name.clone(),
                self.commit_email.clone(),
            ),
        }
    }
}

fn workspaces_config(s: &mut Sources<'_>) -> Result<WorkspacesConfig, ConfigError> {
    const MEGABYTES: &str = "a size in MiB, at least 1";
    let name = |t: &str| {
        let t = t.trim();
        (!t.is_empty() && !t.contains(['<', '>', '\n'])).then(|| t.to_owned())
    };
    Ok(WorkspacesConfig {
        cache_quota_mb: s
            .parse(
                "workspaces.cache_quota_mb",
                &["KODIAI_WORKSPACES_CACHE_QUOTA_MB"],
                MEGABYTES,
                positive,
            )?
            .unwrap_or(20 * 1024),
        max_repository_size_mb: s
            .parse(
                "workspaces.max_repository_size_mb",
                &["KODIAI_MAX_REPOSITORY_SIZE_MB"],
                MEGABYTES,
                positive,
            )?
            .unwrap_or(2 * 1024),
        git_timeout_secs: s
            .parse(
                "workspaces.git_timeout_secs",
                &["KODIAI_GIT_TIMEOUT_SECS"],
                "a whole number of seconds, at least 1",
                positive,
            )?
            .unwrap_or(600),
        commit_name: s
            .parse(
                "workspaces.commit_name",
                &["KODIAI_COMMIT_NAME"],
                "a name without <, > or line breaks",
                name,
            )?
            .unwrap_or_else(|| "kodiai[bot]".to_owned()),
        commit_email: s
            .parse(
                "workspaces.commit_email",
                &["KODIAI_COMMIT_EMAIL"],
                "an e-mail address such as 123+kodiai[bot]@users.noreply.github.com",
                |t| name(t).filter(|t| t.contains('@')),
            )?
            .unwrap_or_else(|| "kodiai[bot]@users.noreply.github.com".to_owned()),
    })
}

/// MCP servers whose tools every agent task gets (`kodiai run` and the job workers), as
/// `server__tool`. File only, one table per server:
///
/// ```toml
/// [mcp.servers.docs]
/// transport = "stdio"            # a child process, started per task, stopped at its end
/// command = "docs-mcp"           # a path, or a name found in /usr/local/bin:/usr/bin:/bin
/// args = ["--readonly"]
/// env = { DOCS_MODE = "offline" } # the child gets only HOME, LANG, a fixed PATH and these
/// cwd = "/srv/docs"              # optional
///
/// [mcp.servers.search]
/// transport = "http"             # streamable HTTP
/// url = "https://mcp.example.com/mcp"
/// headers = { Authorization = "Bearer ..." }
/// ```
///
/// `env` may not set `LD_*`, `DYLD_*` or `PATH`; `env` and `headers` values are masked by
/// `config print`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct McpConfig {
    /// By server name (1 to 32 of a-z, A-Z, 0-9, `-`, single `_`).
    #[serde(serialize_with = "masked_mcp_servers")]
    pub servers: BTreeMap<String, kodiai_agent::mcp::McpServerConfig>,
}

impl McpConfig {
    /// The servers as [`kodiai_agent::mcp::McpClients::start`] takes them.
    pub fn server_list(&self) -> Vec<(String, kodiai_agent::mcp::McpServerConfig)> {
        self.servers
            .iter()
            .map(|(name, config)| (name.clone(), config.clone()))
            .collect()
    }
}

fn mcp_config(s: &mut Sources<'_>) -> Result<McpConfig, ConfigError> {
    use kodiai_agent::mcp::{McpError, McpServerConfig};
    s.known.insert("mcp.servers".to_owned());
    let mut servers = BTreeMap::new();
    let Some((path, table)) = &s.file else {
        return Ok(McpConfig { servers });
    };
    let Some(entries) = table
        .get("mcp")
        .and_then(|m| m.as_table())
        .and_then(|m| m.get("servers"))
    else {
        return Ok(McpConfig { servers });
    };
    let Some(entries) = entries.as_table() else {
        return Err(ConfigError::Invalid {
            origin: format!("mcp.servers in {}", path.display()),
            value: entries.to_string(),
            expected: "a table of servers, [mcp.servers.NAME]".into(),
        });
    };
    for (name, entry) in entries {
        let origin = format!("mcp.servers.{name} in {}", path.display());
        // The entry may hold credentials (env, headers): the error never shows its values.
        let config: McpServerConfig =
            entry
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    origin: origin.clone(),
                    value: MASK.into(),
                    expected: format!(
                        "transport = \"stdio\" with command (args, env, cwd), or transport = \"http\" with url (headers): {}",
                        e.message().trim()
                    ),
                })?;
        config.validate(name).map_err(|e| ConfigError::Invalid {
            origin: origin.clone(),
            value: name.clone(),
            expected: match e {
                McpError::Config { message, .. } => message,
                other => other.to_string(),
            },
        })?;
        if crate::engine::OWN_SERVERS.contains(&name.as_str()) {
            return Err(ConfigError::Invalid {
                origin,
                value: name.clone(),
                expected: "a name other than kodiai's own servers (github-comment, \
                           github-inline-comment, github-ci, github-files)"
                    .into(),
            });
        }
        servers.insert(name.clone(), config);
    }
    Ok(McpConfig { servers })
}

fn masked_mcp_servers<S: Serializer>(
    servers: &BTreeMap<String, kodiai_agent::mcp::McpServerConfig>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use kodiai_agent::mcp::McpServerConfig;
    let mask = |map: &BTreeMap<String, String>| {
        map.keys()
            .map(|k| (k.clone(), MASK.to_owned()))
            .collect::<BTreeMap<_, _>>()
    };
    let shown: BTreeMap<&String, McpServerConfig> = servers
        .iter()
        .map(|(name, config)| {
            let shown = match config {
                McpServerConfig::Stdio {
                    command,
                    args,
                    env,
                    cwd,
                } => McpServerConfig::Stdio {
                    command: command.clone(),
                    args: args.clone(),
                    env: mask(env),
                    cwd: cwd.clone(),
                },
                McpServerConfig::Http { url, headers } => McpServerConfig::Http {
                    url: url.clone(),
                    headers: mask(headers),
                },
            };
            (name, shown)
        })
        .collect();
    shown.serialize(serializer)
}

#[cfg(test)]
mod mcp_tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_sources(
            Some((PathBuf::from("kodiai.toml"), text.parse().unwrap())),
            &Env::new(),
        )
    }

    #[test]
    fn mcp_servers_are_read_from_the_file_and_printed_masked() {
        let config = load(
            "[mcp.servers.docs]\ntransport = \"stdio\"\ncommand = \"docs-mcp\"\nenv = { DOCS_TOKEN = \"tok-123\" }\n\n\
             [mcp.servers.search]\ntransport = \"http\"\nurl = \"https://mcp.example.com/mcp\"\nheaders = { Authorization = \"Bearer hdr-456\" }\n",
        )
        .unwrap();
        let names: Vec<_> = config
            .mcp
            .server_list()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["docs", "search"]);
        let printed = config.to_masked_toml().unwrap();
        assert!(
            !printed.contains("tok-123") && !printed.contains("hdr-456"),
            "{printed}"
        );
        assert!(printed.contains("docs-mcp"), "{printed}");
        assert!(!format!("{config:?}").contains("tok-123"));
    }

    #[test]
    fn bad_mcp_servers_name_the_server_and_the_key() {
        let refused = load(
            "[mcp.servers.docs]\ntransport = \"stdio\"\ncommand = \"x\"\nenv = { LD_PRELOAD = \"/tmp/a.so\" }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            refused.contains("mcp.servers.docs in kodiai.toml"),
            "{refused}"
        );
        assert!(refused.contains("`LD_PRELOAD`"), "{refused}");
        let unknown = load("[mcp.servers.docs]\ntransport = \"carrier-pigeon\"\n")
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("mcp.servers.docs"), "{unknown}");
        let secret = load(
            "[mcp.servers.s]\ntransport = \"http\"\nurl = \"https://x.test\"\nheaders = { A = \"hdr-789\" }\ntypo = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(!secret.contains("hdr-789"), "{secret}");
    }
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

    /// Builds the configuration from a parsed file (path and table) and an environment.
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

        let server = ServerConfig {
            host: s
                .parse(
                    "server.host",
                    &["KODIAI_HOST"],
                    "an IP address such as 0.0.0.0 or 127.0.0.1",
                    parse_host,
                )?
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
            port: s
                .parse("server.port", &["PORT"], "a port number (0-65535)", |t| {
                    t.parse().ok()
                })?
                .unwrap_or(8000),
            request_timeout_secs: s
                .parse(
                    "server.request_timeout_secs",
                    &["KODIAI_REQUEST_TIMEOUT_SECS"],
                    "a whole number of seconds, at least 1",
                    positive,
                )?
                .unwrap_or(30),
            body_limit_bytes: s
                .parse(
                    "server.body_limit_bytes",
                    &["KODIAI_BODY_LIMIT_BYTES"],
                    "a size in bytes, at least 1024",
                    |t| t.parse::<usize>().ok().filter(|n| *n >= 1024),
                )?
                .unwrap_or(2 * 1024 * 1024),
            shutdown_grace_secs: s
                .parse(
                    "server.shutdown_grace_secs",
                    &["KODIAI_SHUTDOWN_GRACE_SECS"],
                    "a whole number of seconds",
                    |t| t.parse().ok(),
                )?
                .unwrap_or(30),
            cors_allowed_origins: s
                .parse(
                    "server.cors_allowed_origins",
                    &["KODIAI_CORS_ORIGINS"],
                    "a comma-separated list of origins such as https://app.example.com, or *",
                    parse_origins,
                )?
                .unwrap_or_default(),
        };

        let database = DatabaseConfig {
            url: match s.get("database.url", &["DATABASE_URL"], Kind::Url)? {
                Some(v) => {
                    let parsed = DatabaseLocation::parse(&v.text);
                    match parsed {
                        Ok(location) => location,
                        Err(expected) => return Err(v.invalid(&expected)),
                    }
                }
                None => DatabaseLocation::Sqlite(data_dir.join("kodiai.db")),
            },
            max_connections: s
                .parse(
                    "database.max_connections",
                    &["KODIAI_DB_MAX_CONNECTIONS"],
                    "a whole number from 1 to 1000",
                    |t| t.parse::<u32>().ok().filter(|n| (1..=1000).contains(n)),
                )?
                .unwrap_or(10),
        };

        let log = LogConfig {
            format: s
                .parse(
                    "log.format",
                    &["LOG_FORMAT"],
                    "json, pretty or auto",
                    |t| match t {
                        "json" => Some(LogFormat::Json),
                        "pretty" | "text" => Some(LogFormat::Pretty),
                        "auto" => Some(LogFormat::Auto),
                        _ => None,
                    },
                )?
                .unwrap_or(LogFormat::Auto),
            filter: s
                .parse(
                    "log.filter",
                    &["RUST_LOG"],
                    "a log filter such as info or info,kodiai=debug",
                    |t| {
                        tracing_subscriber::EnvFilter::try_new(t)
                            .ok()
                            .map(|_| t.to_owned())
                    },
                )?
                .unwrap_or_else(|| "info".to_owned()),
        };

        let api_url = s
            .parse(
                "github.api_url",
                &["GITHUB_API_URL"],
                "an http(s) URL",
                parse_http_url,
            )?
            .unwrap_or_else(|| fixed_url("https://api.github.com"));
        let github = GithubConfig {
            app_id: s.parse(
                "github.app_id",
                &["GITHUB_APP_ID"],
                "the GitHub App's numeric id",
                |t| t.parse::<u64>().ok().filter(|n| *n > 0),
            )?,
            private_key: match s.get("github.private_key", &["GITHUB_PRIVATE_KEY"], Kind::Secret)? {
                Some(v) => Some(v.parse_with(
                    "PEM text or the path of a readable PEM file",
                    read_private_key,
                )?),
                None => None,
            },
            webhook_secret: s.secret("github.webhook_secret", &["GITHUB_WEBHOOK_SECRET"])?,
            token: s.secret("github.token", &["GITHUB_TOKEN"])?,
            api_url: api_url.clone(),
            graphql_url: s
                .parse(
                    "github.graphql_url",
                    &["GITHUB_GRAPHQL_URL"],
                    "an http(s) URL",
                    parse_http_url,
                )?
                .unwrap_or_else(|| graphql_url_of(&api_url)),
            client: github_client_config(&mut s)?,
            webhook_secrets: s
                .get(
                    "github.webhook_secrets",
                    &["GITHUB_WEBHOOK_SECRETS"],
                    Kind::Secret,
                )?
                .map(|raw| {
                    raw.text
                        .split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(|t| SecretString::from(t.to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
            app_slug: s.parse(
                "github.app_slug",
                &["GITHUB_APP_SLUG"],
                "the App's slug (letters, digits and dashes), as in github.com/apps/<slug>",
                parse_login,
            )?,
            bot_login: s.parse(
                "github.bot_login",
                &["KODIAI_BOT_LOGIN"],
                "a GitHub login",
                parse_login,
            )?,
        };
        if github.app_id.is_some() && github.private_key.is_none() {
            return Err(ConfigError::Invalid {
                origin: "GITHUB_PRIVATE_KEY".into(),
                value: String::new(),
                expected: "the App's private key, since GITHUB_APP_ID is set".into(),
            });
        }

        let llm = LlmConfig {
            model: s.parse(
                "llm.model",
                &["KODIAI_MODEL"],
                "provider/model, e.g. anthropic/claude-sonnet-4-5 or ollama/qwen2.5-coder",
                parse_model,
            )?,
            anthropic_api_key: s.secret("llm.anthropic_api_key", &["ANTHROPIC_API_KEY"])?,
            anthropic_base_url: s
                .parse(
                    "llm.anthropic_base_url",
                    &["ANTHROPIC_BASE_URL"],
                    "an http(s) URL",
                    parse_http_url,
                )?
                .unwrap_or_else(|| fixed_url("https://api.anthropic.com")),
            claude_code_oauth_token: s
                .secret("llm.claude_code_oauth_token", &["CLAUDE_CODE_OAUTH_TOKEN"])?,
            openai_api_key: s.secret("llm.openai_api_key", &["OPENAI_API_KEY"])?,
            openai_base_url: s.parse(
                "llm.openai_base_url",
                &["OPENAI_BASE_URL"],
                "an http(s) URL",
                parse_http_url,
            )?,
            gemini_api_key: s.secret("llm.gemini_api_key", &["GEMINI_API_KEY"])?,
            gemini_base_url: s
                .parse(
                    "llm.gemini_base_url",
                    &["GEMINI_BASE_URL"],
                    "an http(s) URL",
                    parse_http_url,
                )?
                .unwrap_or_else(|| fixed_url("https://generativelanguage.googleapis.com")),
            claude_cli_path: s.parse(
                "llm.claude_cli_path",
                &["CLAUDE_CLI_PATH"],
                "a file path",
                |t| (!t.is_empty()).then(|| PathBuf::from(t)),
            )?,
            azure_api_version: s.parse(
                "llm.azure_api_version",
                &["OPENAI_API_VERSION"],
                "an Azure OpenAI API version such as 2024-10-21",
                |t| (!t.is_empty()).then(|| t.to_owned()),
            )?,
            fallback_models: s
                .parse(
                    "llm.fallback_models",
                    &["KODIAI_FALLBACK_MODELS"],
                    "a comma-separated list of provider/model",
                    |t| {
                        t.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(parse_model)
                            .collect::<Option<Vec<_>>>()
                    },
                )?
                .unwrap_or_default(),
            max_retries: s
                .parse(
                    "llm.max_retries",
                    &["KODIAI_LLM_MAX_RETRIES"],
                    "a whole number from 0 to 20",
                    |t| t.parse::<u32>().ok().filter(|n| *n <= 20),
                )?
                .unwrap_or(3),
            retry_base_ms: s
                .parse(
                    "llm.retry_base_ms",
                    &["KODIAI_LLM_RETRY_BASE_MS"],
                    "a whole number of milliseconds, at least 1",
                    positive,
                )?
                .unwrap_or(1000),
            retry_max_secs: s
                .parse(
                    "llm.retry_max_secs",
                    &["KODIAI_LLM_RETRY_MAX_SECS"],
                    "a whole number of seconds, at least 1",
                    positive,
                )?
                .unwrap_or(60),
            connect_timeout_secs: s
                .parse(
                    "llm.connect_timeout_secs",
                    &["KODIAI_LLM_CONNECT_TIMEOUT_SECS"],
                    "a whole number of seconds, at least 1",
                    positive,
                )?
                .unwrap_or(10),
            first_byte_timeout_secs: s
                .parse(
                    "llm.first_byte_timeout_secs",
                    &["KODIAI_LLM_FIRST_BYTE_TIMEOUT_SECS"],
                    "a whole number of seconds, at least 1",
                    positive,
                )?
                .unwrap_or(120),
            idle_timeout_secs: s
                .parse(
                    "llm.idle_timeout_secs",
                    &["KODIAI_LLM_IDLE_TIMEOUT_SECS"],
                    "a whole number of seconds, at least 1",
                    positive,
                )?
                .unwrap_or(120),
            prices: llm_prices(&mut s)?,
        };

        let auth = AuthConfig {
            secret_key: s.secret("auth.secret_key", &["SECRET_KEY"])?,
            admin_token: s.secret("auth.admin_token", &["KODIAI_ADMIN_TOKEN"])?,
        };

        let jobs = jobs_config(&mut s)?;
        let workspaces = workspaces_config(&mut s)?;

        let mentions = MentionsConfig {
            trigger: s
                .parse(
                    "mentions.trigger",
                    &["KODIAI_TRIGGER"],
                    "a handle such as @kodiai",
                    parse_handle,
                )?
                .unwrap_or_else(|| "@kodiai".to_owned()),
            aliases: s
                .parse(
                    "mentions.aliases",
                    &["KODIAI_TRIGGER_ALIASES"],
                    "a comma-separated list of handles such as @claude",
                    |t| {
                        t.split(',')
                            .map(str::trim)
                            .filter(|h| !h.is_empty())
                            .map(parse_handle)
                            .collect()
                    },
                )?
                .unwrap_or_default(),
            allowed_bots: s
                .parse(
                    "mentions.allowed_bots",
                    &["KODIAI_ALLOWED_BOTS"],
                    "a comma-separated list of bot logins such as renovate[bot], or *",
                    |t| {
                        t.split(',')
                            .map(str::trim)
                            .filter(|b| !b.is_empty())
                            .map(|b| (b == "*").then(|| b.to_owned()).or_else(|| parse_login(b)))
                            .collect()
                    },
                )?
                .unwrap_or_default(),
        };

        let agent = agent_config(&mut s)?;
        let mcp = mcp_config(&mut s)?;

        s.reject_unknown_keys()?;
        Ok(Self {
            data_dir,
            tickets_root,
            server,
            database,
            log,
            github,
            llm,
            auth,
            jobs,
            workspaces,
            mentions,
            agent,
            mcp,
        })
    }

    /// The effective configuration as TOML, with every secret masked; usable as a `kodiai.toml`
    /// once the secrets are filled in.
    pub fn to_masked_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }
}

fn jobs_config(s: &mut Sources<'_>) -> Result<JobsConfig, ConfigError> {
    const WHOLE: &str = "a whole number";
    const POSITIVE: &str = "a whole number, at least 1";
    let count = |t: &str| t.parse::<u32>().ok();
    let at_least_one = |t: &str| t.parse::<u32>().ok().filter(|n| *n >= 1);
    let timeout_secs = s
        .parse(
            "jobs.timeout_secs",
            &["KODIAI_JOB_TIMEOUT_SECS"],
            POSITIVE,
            positive,
        )?
        .unwrap_or(1800);
    let mut timeouts = BTreeMap::new();
    for kind in JobKind::ALL {
        let key = format!("jobs.timeouts.{kind}");
        let var = format!("KODIAI_JOB_TIMEOUT_{}_SECS", kind.as_str().to_uppercase());
        let secs = s.parse(&key, &[var.as_str()], POSITIVE, positive)?;
        timeouts.insert(kind.as_str().to_owned(), secs.unwrap_or(timeout_secs));
    }
    let backoff_base_secs = s
        .parse(
            "jobs.backoff_base_secs",
            &["KODIAI_JOBS_BACKOFF_BASE_SECS"],
            POSITIVE,
            positive,
        )?
        .unwrap_or(10);
    let backoff_max_secs = s
        .parse(
            "jobs.backoff_max_secs",
            &["KODIAI_JOBS_BACKOFF_MAX_SECS"],
            POSITIVE,
            positive,
        )?
        .unwrap_or(600)
        .max(backoff_base_secs);
    Ok(JobsConfig {
        workers: s
            .parse(
                "jobs.workers",
                &["KODIAI_WORKERS"],
                "a whole number from 0 to 256",
                |t| t.parse::<u32>().ok().filter(|n| *n <= 256),
            )?
            .unwrap_or(4),
        per_key_concurrency: s
            .parse(
                "jobs.per_key_concurrency",
                &["KODIAI_JOBS_PER_KEY_CONCURRENCY"],
                POSITIVE,
                at_least_one,
            )?
            .unwrap_or(2),
        per_key_rate_per_minute: s
            .parse(
                "jobs.per_key_rate_per_minute",
                &["KODIAI_JOBS_PER_KEY_RATE_PER_MINUTE"],
                "a whole number (0 turns the rate limit off)",
                count,
            )?
            .unwrap_or(60),
        per_key_burst: s
            .parse(
                "jobs.per_key_burst",
                &["KODIAI_JOBS_PER_KEY_BURST"],
                POSITIVE,
                at_least_one,
            )?
            .unwrap_or(20),
        lease_secs: s
            .parse(
                "jobs.lease_secs",
                &["KODIAI_JOBS_LEASE_SECS"],
                POSITIVE,
                positive,
            )?
            .unwrap_or(60),
        poll_interval_ms: s
            .parse(
                "jobs.poll_interval_ms",
                &["KODIAI_JOBS_POLL_INTERVAL_MS"],
                "a whole number of milliseconds, at least 10",
                |t| t.parse::<u64>().ok().filter(|n| *n >= 10),
            )?
            .unwrap_or(1000),
        max_attempts: s
            .parse(
                "jobs.max_attempts",
                &["KODIAI_JOBS_MAX_ATTEMPTS"],
                POSITIVE,
                at_least_one,
            )?
            .unwrap_or(3),
        backoff_base_secs,
        backoff_max_secs,
        timeout_secs,
        timeouts,
        cancel_grace_secs: s
            .parse(
                "jobs.cancel_grace_secs",
                &["KODIAI_JOBS_CANCEL_GRACE_SECS"],
                WHOLE,
                |t| t.parse().ok(),
            )?
            .unwrap_or(10),
    })
}

/// `[llm.prices."provider/model"]` tables of `input`, `output`, `cache_read`, `cache_write` (USD
/// per million tokens; the cache prices default to the input price). File only: model names
/// hold dots and slashes that environment names cannot.
fn llm_prices(s: &mut Sources<'_>) -> Result<BTreeMap<String, kodiai_llm::Price>, ConfigError> {
    const EXPECTED: &str = "a table of input, output, cache_read and cache_write prices (USD per million tokens, at least 0)";
    s.known.insert("llm.prices".to_owned());
    let mut prices = BTreeMap::new();
    let Some((path, table)) = &s.file else {
        return Ok(prices);
    };
    let Some(entries) = table
        .get("llm")
        .and_then(|l| l.as_table())
        .and_then(|l| l.get("prices"))
    else {
        return Ok(prices);
    };
    let invalid = |origin: String, value: &toml::Value| ConfigError::Invalid {
        origin,
        value: value.to_string(),
        expected: EXPECTED.to_owned(),
    };
    let Some(entries) = entries.as_table() else {
        return Err(invalid(
            format!("llm.prices in {}", path.display()),
            entries,
        ));
    };
    for (model, entry) in entries {
        let origin = format!("llm.prices.{model:?} in {}", path.display());
        let number = |key: &str| -> Option<Option<f64>> {
            match entry.get(key) {
                None => Some(None),
                Some(toml::Value::Float(f)) if *f >= 0.0 => Some(Some(*f)),
                Some(toml::Value::Integer(i)) if *i >= 0 => Some(Some(*i as f64)),
                Some(_) => None,
            }
        };
        let known = entry.as_table().is_some_and(|t| {
            t.keys().all(|k| {
                matches!(
                    k.as_str(),
                    "input" | "output" | "cache_read" | "cache_write"
                )
            })
        });
        let parsed = (|| {
            let input = number("input")??;
            let output = number("output")??;
            Some(kodiai_llm::Price {
                input,
                output,
                cache_read: number("cache_read")?.unwrap_or(input),
                cache_write: number("cache_write")?.unwrap_or(input),
            })
        })();
        match parsed {
            Some(price) if known && !model.trim().is_empty() => {
                prices.insert(model.clone(), price);
            }
            _ => return Err(invalid(origin, entry)),
        }
    }
    Ok(prices)
}

fn github_client_config(s: &mut Sources<'_>) -> Result<GithubClientConfig, ConfigError> {
    const POSITIVE: &str = "a whole number, at least 1";
    let at_least_one = |t: &str| t.parse::<u32>().ok().filter(|n| *n >= 1);
    Ok(GithubClientConfig {
        request_timeout_secs: s
            .parse(
                "github.request_timeout_secs",
                &["KODIAI_GITHUB_TIMEOUT_SECS"],
                POSITIVE,
                positive,
            )?
            .unwrap_or(30),
        max_retries: s
            .parse(
                "github.max_retries",
                &["KODIAI_GITHUB_MAX_RETRIES"],
                "a whole number from 0 to 20",
                |t| t.parse::<u32>().ok().filter(|n| *n <= 20),
            )?
            .unwrap_or(5),
        max_rate_limit_wait_secs: s
            .parse(
                "github.max_rate_limit_wait_secs",
                &["KODIAI_GITHUB_MAX_RATE_LIMIT_WAIT_SECS"],
                POSITIVE,
                positive,
            )?
            .unwrap_or(900),
        content_per_minute: s
            .parse(
                "github.content_per_minute",
                &["KODIAI_GITHUB_CONTENT_PER_MINUTE"],
                POSITIVE,
                at_least_one,
            )?
            .unwrap_or(80),
        content_per_hour: s
            .parse(
                "github.content_per_hour",
                &["KODIAI_GITHUB_CONTENT_PER_HOUR"],
                POSITIVE,
                at_least_one,
            )?
            .unwrap_or(500),
        permission_cache_secs: s
            .parse(
                "github.permission_cache_secs",
                &["KODIAI_GITHUB_PERMISSION_CACHE_SECS"],
                "a whole number of seconds (0: ask GitHub every time)",
                |t| t.parse::<u64>().ok(),
            )?
            .unwrap_or(120),
    })
}

fn read_file(path: &Path) -> Result<(PathBuf, toml::Table), ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: shown.clone(),
        message: format!("cannot read the configuration file: {e}"),
    })?;
    let table = text.parse::<toml::Table>().map_err(|e| {
        let position = e
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!("line {line}, column {column}: ")
            })
            .unwrap_or_default();
        ConfigError::File {
            path: shown.clone(),
            message: format!("not valid TOML: {position}{}", e.message().trim()),
        }
    })?;
    Ok((path.to_owned(), table))
}

/// How a raw value may be shown in an error.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    /// Never shown.
    Secret,
    /// Shown with its password masked.
    Url,
}

/// One setting's raw text and where it came from.
struct Raw {
    text: String,
    origin: String,
    kind: Kind,
}

impl Raw {
    fn shown(&self) -> String {
        match self.kind {
            Kind::Plain => self.text.clone(),
            Kind::Secret => MASK.to_owned(),
            Kind::Url => kodiai_store::redact_url(&self.text),
        }
    }

    fn invalid(&self, expected: &str) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.clone(),
            value: self.shown(),
            expected: expected.to_owned(),
        }
    }

    fn parse_with<T>(
        &self,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        parse(self.text.trim()).ok_or_else(|| self.invalid(expected))
    }
}

struct Sources<'a> {
    file: Option<(PathBuf, toml::Table)>,
    env: &'a Env,
    /// Every file key asked for, so that the rest can be reported as unknown.
    known: BTreeSet<String>,
}

impl Sources<'_> {
    /// The raw value of a setting: the first non-empty environment variable of `vars`, else the
    /// file's non-empty `key` (dotted), else nothing.
    fn get(&mut self, key: &str, vars: &[&str], kind: Kind) -> Result<Option<Raw>, ConfigError> {
        self.known.insert(key.to_owned());
        for var in vars {
            if let Some(text) = self.env.get(*var).filter(|t| !t.trim().is_empty()) {
                return Ok(Some(Raw {
                    text: text.clone(),
                    origin: (*var).to_owned(),
                    kind,
                }));
            }
        }
        let Some((path, table)) = &self.file else {
            return Ok(None);
        };
        let mut parts = key.split('.').peekable();
        let mut current = table;
        while let Some(part) = parts.next() {
            let Some(value) = current.get(part) else {
                return Ok(None);
            };
            if parts.peek().is_some() {
                match value {
                    toml::Value::Table(inner) => current = inner,
                    _ => return Ok(None),
                }
                continue;
            }
            let origin = format!("{key} in {}", path.display());
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => {
                    let mut texts = Vec::with_capacity(items.len());
                    for item in items {
                        match item {
                            toml::Value::String(s) => texts.push(s.clone()),
                            other => texts.push(other.to_string()),
                        }
                    }
                    texts.join(",")
                }
                other => {
                    return Err(ConfigError::Invalid {
                        origin,
                        value: if kind == Kind::Secret {
                            MASK.into()
                        } else {
                            other.to_string()
                        },
                        expected: "a single value, not a table".into(),
                    });
                }
            };
            // An empty value means unset, in the file as in the environment (`config print`
            // writes unset secrets as "").
            if text.trim().is_empty() {
                return Ok(None);
            }
            return Ok(Some(Raw { text, origin, kind }));
        }
        Ok(None)
    }

    fn parse<T>(
        &mut self,
        key: &str,
        vars: &[&str],
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(key, vars, Kind::Plain)? {
            Some(raw) => raw.parse_with(expected, parse).map(Some),
            None => Ok(None),
        }
    }

    fn secret(&mut self, key: &str, vars: &[&str]) -> Result<Option<SecretString>, ConfigError> {
        Ok(self
            .get(key, vars, Kind::Secret)?
            .map(|raw| SecretString::from(raw.text.trim().to_owned())))
    }

    fn reject_unknown_keys(&self) -> Result<(), ConfigError> {
        let Some((path, table)) = &self.file else {
            return Ok(());
        };
        let mut stack: Vec<(String, &toml::Table)> = vec![(String::new(), table)];
        while let Some((prefix, table)) = stack.pop() {
            for (name, value) in table {
                let key = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                let is_section = self.known.iter().any(|k| k.starts_with(&format!("{key}.")));
                match value {
                    toml::Value::Table(inner) if is_section => stack.push((key, inner)),
                    _ if self.known.contains(&key) => {}
                    _ => {
                        return Err(ConfigError::UnknownKey {
                            path: path.display().to_string(),
                            key,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

fn positive(text: &str) -> Option<u64> {
    text.parse::<u64>().ok().filter(|n| *n > 0)
}

fn parse_host(text: &str) -> Option<IpAddr> {
    match text {
        "localhost" => Some(IpAddr::from([127, 0, 0, 1])),
        _ => text.parse().ok(),
    }
}

fn parse_http_url(text: &str) -> Option<url::Url> {
    url::Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// GitHub's GraphQL endpoint beside the REST API at `api`: `https://api.github.com/graphql`;
/// GitHub Enterprise Server's `https://HOST/api/graphql` beside `https://HOST/api/v3`; else
/// `graphql` under the API's path. Never github.com's for another host, where the token of that
/// host would go.
fn graphql_url_of(api: &url::Url) -> url::Url {
    let path = api.path().trim_end_matches('/');
    let graphql = match path.strip_suffix("/api/v3") {
        Some(prefix) => format!("{prefix}/api/graphql"),
        None => format!("{path}/graphql"),
    };
    let mut url = api.clone();
    url.set_path(&graphql);
    url.set_query(None);
    url
}

#[expect(
    clippy::expect_used,
    reason = "only called with literal URLs that parse"
)]
fn fixed_url(text: &str) -> url::Url {
    url::Url::parse(text).expect("a literal default URL")
}

fn parse_origins(text: &str) -> Option<Vec<String>> {
    let mut origins = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part == "*" {
            origins.push(part.to_owned());
            continue;
        }
        let url = url::Url::parse(part).ok()?;
        // An origin is scheme://host[:port]: no path, query or fragment.
        if !matches!(url.scheme(), "http" | "https")
            || url.host().is_none()
            || url.path() != "/"
            || url.query().is_some()
            || part.ends_with('/')
        {
            return None;
        }
        origins.push(part.to_owned());
    }
    Some(origins)
}

/// `provider/model` as it is when the provider is a plausible name and the model is not empty.
pub fn parse_model(text: &str) -> Option<String> {
    let (provider, model) = text.split_once('/')?;
    let provider_ok = !provider.is_empty()
        && provider
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    (provider_ok && !model.trim().is_empty()).then(|| text.to_owned())
}

/// PEM text as is (with `\n` escapes, as environment files often carry it, turned into newlines),
/// or the contents of the file it names.
fn read_private_key(text: &str) -> Option<SecretString> {
    let pem = if text.contains("-----BEGIN") {
        text.replace("\\n", "\n")
    } else {
        std::fs::read_to_string(text).ok()?
    };
    (pem.contains("-----BEGIN") && pem.contains("PRIVATE KEY-----"))
        .then(|| SecretString::from(pem))
}

/// A GitHub login or slug: letters, digits, dashes, and an optional `[bot]` suffix.
fn parse_login(text: &str) -> Option<String> {
    let name = text.strip_suffix("[bot]").unwrap_or(text);
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    ok.then(|| text.to_owned())
}

/// A mention handle: a login with or without its `@`; stored with it.
fn parse_handle(text: &str) -> Option<String> {
    let name = text.strip_prefix('@').unwrap_or(text);
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    ok.then(|| format!("@{name}"))
}

fn masked_list<S: Serializer>(secrets: &[SecretString], serializer: S) -> Result<S::Ok, S::Error> {
    let shown: Vec<&str> = secrets.iter().map(|_| MASK).collect();
    shown.serialize(serializer)
}

fn masked<S: Serializer>(secret: &Option<SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(s) if !s.expose_secret().is_empty() => serializer.serialize_str(MASK),
        _ => serializer.serialize_str(""),
    }
}

fn redacted_location<S: Serializer>(
    location: &DatabaseLocation,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&location.redacted())
}

#[cfg(test)]
mod tests;
