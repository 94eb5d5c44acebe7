//! `[mcp.servers]`: the operator's MCP servers, whose tools every agent task gets.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use super::ConfigError;
use super::sources::{MASK, Sources};

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

pub(super) fn read(s: &mut Sources<'_>) -> Result<McpConfig, ConfigError> {
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
mod tests {
    use super::super::{Config, ConfigError, Env};
    use std::path::PathBuf;

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
