//! The configuration of one MCP server (a serde-tagged enum: a stdio child process or a
//! streamable-HTTP endpoint) and the explicit environment a stdio server's child gets.
//!
//! Architecture Invariant: a child never inherits the host's environment. It gets a small
//! allow-list (`HOME`, `LANG`, a fixed `PATH`) plus what its configuration sets, and the
//! configuration may not set what changes how programs are loaded or found (`LD_PRELOAD`,
//! `LD_LIBRARY_PATH`, `DYLD_*`, `PATH`). Host secrets (`KODIAI_*`, `GITHUB_*` tokens,
//! `*_API_KEY`, `*_TOKEN`, `*_SECRET`) therefore never reach it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::McpError;

/// The `PATH` of every stdio server: the system folders, never the host's `PATH`.
pub const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How to reach one MCP server. In TOML: `transport = "stdio"` or `transport = "http"`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "transport", rename_all = "lowercase", deny_unknown_fields)]
pub enum McpServerConfig {
    /// A child process that speaks MCP on its stdin and stdout, started per task.
    Stdio {
        /// The program: a path, or a name looked up in [`SAFE_PATH`].
        command: String,
        #[serde(default)]
        args: Vec<String>,
        /// Variables set for the child on top of `HOME`, `LANG` and `PATH` (see
        /// [`McpServerConfig::child_env`] for the keys that are refused).
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// The child's working folder (default: kodiai's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cwd: Option<PathBuf>,
    },
    /// A streamable-HTTP endpoint.
    Http {
        url: url::Url,
        /// Headers sent with every request (an `Authorization` header, for example).
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
}

/// Values of `env` and `headers` may be credentials: they are never shown.
impl std::fmt::Debug for McpServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stdio {
                command,
                args,
                env,
                cwd,
            } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", args)
                .field("env", &env.keys().collect::<Vec<_>>())
                .field("cwd", cwd)
                .finish(),
            Self::Http { url, headers } => f
                .debug_struct("Http")
                .field("url", &url.as_str())
                .field("headers", &headers.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// Whether a variable is one the configuration may not set: the dynamic loader's (`LD_*`,
/// `DYLD_*`) and `PATH`.
fn refused_key(key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    upper == "PATH" || upper.starts_with("LD_") || upper.starts_with("DYLD_")
}

/// MCP server names: they become the `server__` prefix of tool names.
fn valid_server_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !name.contains("__")
        && !name.starts_with('_')
        && !name.ends_with('_')
}

impl McpServerConfig {
    /// Checks what can be checked without starting the server: the name, the environment keys,
    /// the headers. The error names the server and the bad key.
    pub fn validate(&self, name: &str) -> Result<(), McpError> {
        let bad = |message: String| McpError::Config {
            server: name.to_owned(),
            message,
        };
        if !valid_server_name(name) {
            return Err(bad(
                "a server name is 1 to 32 of a-z, A-Z, 0-9, `-` and single `_` (its tools are \
                 called `NAME__tool`)"
                    .into(),
            ));
        }
        match self {
            Self::Stdio { command, env, .. } => {
                if command.trim().is_empty() {
                    return Err(bad("`command` is empty".into()));
                }
                for key in env.keys() {
                    if refused_key(key) {
                        return Err(bad(format!(
                            "env key `{key}` is refused: it changes which programs and \
                             libraries the server loads"
                        )));
                    }
                    if key.is_empty() || key.contains(['=', '\0']) {
                        return Err(bad(format!("env key `{key}` is not a variable name")));
                    }
                }
                Ok(())
            }
            Self::Http { url, headers } => {
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(bad(format!("url `{url}`: expected an http(s) URL")));
                }
                for (key, value) in headers {
                    if reqwest::header::HeaderName::from_bytes(key.as_bytes()).is_err() {
                        return Err(bad(format!("header `{key}` is not a header name")));
                    }
                    if reqwest::header::HeaderValue::from_str(value).is_err() {
                        return Err(bad(format!(
                            "header `{key}` has a value that cannot be sent"
                        )));
                    }
                }
                Ok(())
            }
        }
    }

    /// The server as an entry of the `mcpServers` object the Claude Code and Gemini CLIs read
    /// (checked with [`McpServerConfig::validate`] first): `{command, args, env[, cwd]}` or
    /// `{type: "http", url, headers}`. The CLI starts the server itself, from its own clean
    /// environment.
    pub fn cli_entry(&self, name: &str) -> Result<serde_json::Value, McpError> {
        self.validate(name)?;
        Ok(match self {
            Self::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                let mut entry = serde_json::json!({"command": command, "args": args, "env": env});
                if let Some(cwd) = cwd {
                    entry["cwd"] = serde_json::json!(cwd);
                }
                entry
            }
            Self::Http { url, headers } => {
                serde_json::json!({"type": "http", "url": url.as_str(), "headers": headers})
            }
        })
    }

    /// The whole environment of a stdio server's child: `HOME` and `LANG` from `host`,
    /// [`SAFE_PATH`], then the configuration's `env`. Refused keys are
    /// an error naming the key. Nothing else of `host` is passed.
    pub fn child_env(
        name: &str,
        env: &BTreeMap<String, String>,
        host: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<(String, String)>, McpError> {
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        out.insert("PATH".into(), SAFE_PATH.into());
        for key in ["HOME", "LANG"] {
            if let Some(value) = host(key) {
                out.insert(key.into(), value);
            }
        }
        for (key, value) in env {
            if refused_key(key) {
                return Err(McpError::Config {
                    server: name.to_owned(),
                    message: format!(
                        "env key `{key}` is refused: it changes which programs and libraries \
                         the server loads"
                    ),
                });
            }
            out.insert(key.clone(), value.clone());
        }
        Ok(out.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn stdio(env: &[(&str, &str)]) -> McpServerConfig {
        McpServerConfig::Stdio {
            command: "server".into(),
            args: vec![],
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            cwd: None,
        }
    }

    #[test]
    fn the_config_is_a_tagged_enum() {
        let stdio: McpServerConfig = toml::from_str(
            "transport = \"stdio\"\ncommand = \"npx\"\nargs = [\"-y\", \"srv\"]\nenv = { A = \"1\" }\n",
        )
        .unwrap();
        assert_eq!(stdio, {
            let mut s = super::tests::stdio(&[("A", "1")]);
            if let McpServerConfig::Stdio { command, args, .. } = &mut s {
                *command = "npx".into();
                *args = vec!["-y".into(), "srv".into()];
            }
            s
        });
        let http: McpServerConfig = toml::from_str(
            "transport = \"http\"\nurl = \"https://mcp.example.com/mcp\"\nheaders = { Authorization = \"Bearer x\" }\n",
        )
        .unwrap();
        assert!(matches!(http, McpServerConfig::Http { ref headers, .. } if headers.len() == 1));
        let unknown = toml::from_str::<McpServerConfig>(
            "transport = \"stdio\"\ncommand = \"a\"\nenvs = {}\n",
        );
        assert!(unknown.is_err(), "unknown keys are refused");
        let other = toml::from_str::<McpServerConfig>("transport = \"ws\"\nurl = \"ws://x\"\n");
        assert!(other.is_err());
    }

    #[test]
    fn debug_hides_env_and_header_values() {
        let config = stdio(&[("SERVICE_TOKEN", "hunter2")]);
        let shown = format!("{config:?}");
        assert!(
            shown.contains("SERVICE_TOKEN") && !shown.contains("hunter2"),
            "{shown}"
        );
        let http: McpServerConfig = toml::from_str(
            "transport = \"http\"\nurl = \"https://x.test/mcp\"\nheaders = { Authorization = \"Bearer s3cr3t\" }\n",
        )
        .unwrap();
        assert!(!format!("{http:?}").contains("s3cr3t"));
    }

    #[test]
    fn loader_and_path_keys_are_refused_by_name() {
        for key in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "DYLD_INSERT_LIBRARIES",
            "PATH",
            "path",
        ] {
            let error = stdio(&[(key, "x")])
                .validate("srv")
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(&format!("`{key}`")) && error.contains("srv"),
                "{error}"
            );
            let error = McpServerConfig::child_env(
                "srv",
                &BTreeMap::from([(key.to_owned(), "x".to_owned())]),
                |_| None,
            )
            .unwrap_err()
            .to_string();
            assert!(error.contains(key), "{error}");
        }
        stdio(&[("RUST_LOG", "debug")]).validate("srv").unwrap();
    }

    #[test]
    fn server_names_make_valid_tool_prefixes() {
        let ok = stdio(&[]);
        for name in ["github", "my-server", "a_b", "x1"] {
            ok.validate(name).unwrap();
        }
        for name in [
            "",
            "a__b",
            "_a",
            "a_",
            "with space",
            "dot.ted",
            &"x".repeat(33),
        ] {
            assert!(ok.validate(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn the_child_env_is_the_allow_list_plus_the_config() {
        let host = |key: &str| match key {
            "HOME" => Some("/home/k".to_owned()),
            "LANG" => Some("C.UTF-8".to_owned()),
            "GITHUB_TOKEN" => Some("ghp_host".to_owned()),
            "PATH" => Some("/evil:/usr/bin".to_owned()),
            _ => None,
        };
        let env = McpServerConfig::child_env(
            "srv",
            &BTreeMap::from([("MODE".to_owned(), "test".to_owned())]),
            host,
        )
        .unwrap();
        assert_eq!(
            env,
            vec![
                ("HOME".to_owned(), "/home/k".to_owned()),
                ("LANG".to_owned(), "C.UTF-8".to_owned()),
                ("MODE".to_owned(), "test".to_owned()),
                ("PATH".to_owned(), SAFE_PATH.to_owned()),
            ]
        );
    }
}
