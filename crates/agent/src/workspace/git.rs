//! Running `git` as a child process: a clean environment (no host secrets, no host or system
//! git configuration, no prompts), a timeout that kills the whole process group, and the
//! installation token passed per command as an `http.<origin>/.extraHeader` through
//! `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`, so that it never reaches a
//! command line, a file or a log line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use process_wrap::tokio::{CommandWrap, KillOnDrop, ProcessGroup};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::WorkspaceError;

/// The only `PATH` git sees: enough for git to find itself and its helpers, nothing from the
/// host's environment.
const CHILD_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Configuration every git command runs with, whatever the repository says.
const FIXED_CONFIG: &[(&str, &str)] = &[
    // No credential helper may store or hand out anything: the header is the only credential.
    ("credential.helper", ""),
    // Hooks of a repository are the repository's code; kodiai does not run them.
    ("core.hooksPath", "/dev/null"),
    ("protocol.version", "2"),
    // Automatic gc and maintenance stay in the foreground, inside the timeout and the process
    // group, instead of a daemon outliving the command.
    ("gc.autoDetach", "false"),
    ("maintenance.autoDetach", "false"),
    ("advice.detachedHead", "false"),
    ("init.defaultBranch", "main"),
    ("checkout.workers", "0"),
];

/// A remote repository and the token that may read it (and, for pushes, write to it).
#[derive(Clone)]
pub struct Remote {
    /// `https://github.com/owner/name.git`, or any smart-HTTP URL; without credentials.
    pub url: Url,
    /// The installation token (GitHub: sent as Basic `x-access-token:<token>`).
    pub token: SecretString,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url.as_str())
            .field("token", &"********")
            .finish()
    }
}

impl Remote {
    /// Checks that the URL is http(s) and carries no user name or password (a credential in a
    /// URL ends up in `.git/config`, in `FETCH_HEAD` and in logs).
    pub fn new(url: Url, token: SecretString) -> Result<Self, WorkspaceError> {
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(WorkspaceError::InvalidInput(format!(
                "remote URL {url} is not an http(s) URL"
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(WorkspaceError::InvalidInput(
                "remote URL must not carry credentials; pass the token separately".into(),
            ));
        }
        Ok(Self { url, token })
    }

    /// `host[:port]/path` without `.git`: the repository's name in the mirror cache.
    pub fn cache_key(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        let port = self.url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let path = self.url.path().trim_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path);
        format!("{host}{port}/{path}")
    }

    /// The per-command configuration that authenticates to this remote's origin only.
    pub(crate) fn auth(&self) -> Auth {
        let origin = self.url.origin().ascii_serialization();
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("x-access-token:{}", self.token.expose_secret()));
        Auth {
            key: format!("http.{origin}/.extraHeader"),
            header: SecretString::from(format!("Authorization: Basic {basic}")),
        }
    }
}

/// An `http.<origin>/.extraHeader` setting: its key, and the header, a secret.
pub(crate) struct Auth {
    key: String,
    header: SecretString,
}

/// How git is run: the program, the folder it gets as `HOME`, the timeout of each command.
#[derive(Debug, Clone)]
pub(crate) struct Git {
    pub program: PathBuf,
    pub home: PathBuf,
    pub timeout: Duration,
}

/// What a finished git command printed.
#[derive(Debug)]
pub(crate) struct GitOutput {
    pub stdout: String,
}

impl Git {
    /// Runs `git args…` in `cwd`, with `auth` when it talks to a remote and `env` for extra
    /// variables (the commit identity). Fails on a non-zero exit with git's message.
    pub async fn run(
        &self,
        cwd: &Path,
        args: &[&str],
        auth: Option<&Auth>,
        env: &[(&str, &str)],
    ) -> Result<GitOutput, WorkspaceError> {
        let shown = args.join(" ");
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", CHILD_PATH)
            .env("HOME", &self.home)
            .env("LC_ALL", "C")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut config: Vec<(String, OsString)> = FIXED_CONFIG
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        if let Some(auth) = auth {
            config.push((
                auth.key.clone(),
                OsString::from(auth.header.expose_secret()),
            ));
        }
        command.env("GIT_CONFIG_COUNT", config.len().to_string());
        for (i, (key, value)) in config.into_iter().enumerate() {
            command.env(format!("GIT_CONFIG_KEY_{i}"), key);
            command.env(format!("GIT_CONFIG_VALUE_{i}"), value);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        tracing::debug!(cwd = %cwd.display(), args = %shown, "git");

        let mut wrapped = CommandWrap::from(command);
        wrapped.wrap(ProcessGroup::leader()).wrap(KillOnDrop);
        let child = wrapped.spawn().map_err(|e| WorkspaceError::Git {
            command: shown.clone(),
            message: format!("cannot start {}: {e}", self.program.display()),
        })?;
        // Dropping the future on timeout (or when the job is cancelled) drops the child, which
        // kills its process group: git and its remote helpers.
        let output =
            match tokio::time::timeout(self.timeout, Box::into_pin(child.wait_with_output())).await
            {
                Ok(Ok(output)) => output,
                Ok(Err(e)) => {
                    return Err(WorkspaceError::Git {
                        command: shown,
                        message: format!("waiting for git: {e}"),
                    });
                }
                Err(_) => {
                    return Err(WorkspaceError::Timeout {
                        command: shown,
                        after: self.timeout,
                    });
                }
            };
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            return Ok(GitOutput { stdout });
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message = summarize(&stderr, output.status);
        tracing::debug!(args = %shown, %message, "git failed");
        if is_auth_failure(&stderr) {
            return Err(WorkspaceError::Authentication { message });
        }
        Err(WorkspaceError::Git {
            command: shown,
            message,
        })
    }
}

/// What git said went wrong, on one line: its `fatal:`/`error:` lines when there are any (the
/// advice around them spans many lines), else its last lines.
fn summarize(stderr: &str, status: std::process::ExitStatus) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("hint:"))
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("fatal:") || l.starts_with("error:") || l.starts_with('!'))
        .collect();
    let chosen = if errors.is_empty() { &lines } else { &errors };
    let tail = chosen[chosen.len().saturating_sub(3)..].join("; ");
    if tail.is_empty() {
        format!("git exited with {status}")
    } else {
        tail
    }
}

fn is_auth_failure(stderr: &str) -> bool {
    let lower = stderr.to_ascii_lowercase();
    lower.contains("authentication failed")
        || lower.contains("could not read username")
        || lower.contains("could not read password")
        || lower.contains("the requested url returned error: 401")
        || lower.contains("the requested url returned error: 403")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(url: &str) -> Result<Remote, WorkspaceError> {
        Remote::new(Url::parse(url).unwrap(), SecretString::from("t0ken"))
    }

    #[test]
    fn cache_key_is_host_port_and_path_without_git_suffix() {
        assert_eq!(
            remote("https://github.com/o/r.git").unwrap().cache_key(),
            "github.com/o/r"
        );
        assert_eq!(
            remote("http://127.0.0.1:8080/o/r/").unwrap().cache_key(),
            "127.0.0.1:8080/o/r"
        );
    }

    #[test]
    fn urls_with_credentials_or_other_schemes_are_refused() {
        assert!(remote("https://x-access-token:abc@github.com/o/r.git").is_err());
        assert!(remote("ssh://github.com/o/r.git").is_err());
        assert!(remote("file:///tmp/r.git").is_err());
    }

    #[test]
    fn errors_are_summarized_by_their_fatal_lines() {
        use std::os::unix::process::ExitStatusExt as _;
        let stderr = "fatal: Unable to create '/m/refs/heads/main.lock': File exists.\n\nAnother git process seems to be running in this repository.\nremove the file manually to continue.\n";
        assert_eq!(
            summarize(stderr, std::process::ExitStatus::from_raw(128 << 8)),
            "fatal: Unable to create '/m/refs/heads/main.lock': File exists."
        );
        assert_eq!(
            summarize("", std::process::ExitStatus::from_raw(1 << 8)),
            "git exited with exit status: 1"
        );
    }

    #[test]
    fn the_header_is_scoped_to_the_origin_and_debug_hides_the_token() {
        let r = remote("https://github.com/o/r.git").unwrap();
        let auth = r.auth();
        assert_eq!(auth.key, "http.https://github.com/.extraHeader");
        assert_eq!(
            auth.header.expose_secret(),
            "Authorization: Basic eC1hY2Nlc3MtdG9rZW46dDBrZW4="
        );
        assert!(!format!("{r:?}").contains("t0ken"));
    }
}
