//! `run_command`: a shell command in the workspace, off unless the task enables it. It runs in
//! its own process group (the whole tree is killed at its end, at its timeout and on cancel),
//! with capped output and an environment built from nothing (`PATH`, a throw-away `HOME` and
//! `TMPDIR`, locale, and what the operator allows), so no host secret reaches it. Its network is
//! cut with a new network namespace (`unshare --net`, or inside a new user namespace when the
//! process is not privileged) where the kernel allows it; the probe runs once per tool.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::process::{self, ChildEnd, ChildSpec};
use super::{Tool, ToolContext, ToolError, ToolOutput, ToolResult, WorkspaceRoot, blocking};

/// Settings of `run_command`; its presence in [`super::WorkspaceToolOptions`] enables it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCommandOptions {
    /// A command's timeout when the model gives none.
    pub default_timeout: Duration,
    /// The longest timeout a model may ask for.
    pub max_timeout: Duration,
    /// Bytes kept of stdout and of stderr each.
    pub output_cap: usize,
    /// `PATH` in the command's environment.
    pub path: String,
    /// Further variables for the command (the operator's choice; never the host's environment).
    pub env: Vec<(String, String)>,
    /// Cut the command's network where the kernel allows it.
    pub deny_network: bool,
}

impl Default for RunCommandOptions {
    fn default() -> Self {
        Self {
            default_timeout: Duration::from_secs(120),
            max_timeout: Duration::from_secs(600),
            output_cap: 64 * 1024,
            path: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            env: Vec::new(),
            deny_network: true,
        }
    }
}

/// How `run_command` keeps commands off the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkIsolation {
    /// `unshare --net`: a new, empty network namespace (the process may create one).
    Namespace,
    /// `unshare --map-root-user --net`: the same inside a new user namespace (unprivileged).
    UserNamespace,
    /// The options allow the network.
    Allowed,
    /// Neither works here (no `unshare`, or the kernel refuses namespaces): commands have the
    /// host's network. The reason is in the tool's description and the log.
    Unavailable(String),
}

impl NetworkIsolation {
    fn prefix(&self) -> &'static [&'static str] {
        match self {
            Self::Namespace => &["unshare", "--net", "--"],
            Self::UserNamespace => &["unshare", "--map-root-user", "--net", "--"],
            Self::Allowed | Self::Unavailable(_) => &[],
        }
    }
}

/// `run_command`.
#[derive(Debug, Clone)]
pub struct RunCommand {
    root: WorkspaceRoot,
    options: RunCommandOptions,
    isolation: NetworkIsolation,
}

impl RunCommand {
    /// `run_command` over this workspace; probes the network isolation when it is wanted.
    pub async fn new(root: WorkspaceRoot, options: RunCommandOptions) -> Self {
        let isolation = if options.deny_network {
            probe_isolation(&root, &options).await
        } else {
            NetworkIsolation::Allowed
        };
        if let NetworkIsolation::Unavailable(reason) = &isolation {
            tracing::warn!(%reason, "run_command: commands will have network access");
        }
        Self {
            root,
            options,
            isolation,
        }
    }

    /// How commands are kept off the network.
    pub fn isolation(&self) -> &NetworkIsolation {
        &self.isolation
    }

    fn environment(&self, home: &std::path::Path) -> Vec<(String, String)> {
        let home = home.display().to_string();
        let mut env: Vec<(String, String)> = [
            ("PATH", self.options.path.as_str()),
            ("HOME", home.as_str()),
            ("TMPDIR", home.as_str()),
            ("LANG", "C.UTF-8"),
            ("LC_ALL", "C.UTF-8"),
            ("TERM", "dumb"),
            ("NO_COLOR", "1"),
            ("CI", "true"),
            ("GIT_TERMINAL_PROMPT", "0"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec();
        env.extend(self.options.env.iter().cloned());
        env
    }
}

/// Tries each way of cutting the network with a trivial command.
async fn probe_isolation(root: &WorkspaceRoot, options: &RunCommandOptions) -> NetworkIsolation {
    let mut last = String::from("`unshare` could not be run");
    for candidate in [NetworkIsolation::Namespace, NetworkIsolation::UserNamespace] {
        let mut args: Vec<String> = candidate.prefix()[1..]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        args.push("true".to_owned());
        let spec = ChildSpec {
            program: candidate.prefix()[0].to_owned(),
            args,
            cwd: root.path().to_owned(),
            clear_env: true,
            env: vec![("PATH".to_owned(), options.path.clone())],
            timeout: Duration::from_secs(10),
            output_cap: 4096,
        };
        match process::run(&spec, &tokio_util::sync::CancellationToken::new()).await {
            Ok(run) if matches!(run.end, ChildEnd::Exited(status) if status.success()) => {
                return candidate;
            }
            Ok(run) => last = format!("{}: {}", spec.args.join(" "), run.stderr.text().trim()),
            Err(e) => last = format!("unshare: {e}"),
        }
    }
    NetworkIsolation::Unavailable(last)
}

/// Arguments of `run_command`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunCommandArgs {
    /// The command, run by `sh -c` (pipes, `&&` and redirections work).
    pub command: String,
    /// Stop it after this many seconds (default and maximum are set by the operator).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// The directory to run it in, relative to the workspace root (default: the root).
    #[serde(default)]
    pub workdir: Option<String>,
}

impl Tool for RunCommand {
    type Args = RunCommandArgs;

    fn name(&self) -> &str {
        "run_command"
    }

    fn description(&self) -> String {
        let network = match &self.isolation {
            NetworkIsolation::Namespace | NetworkIsolation::UserNamespace => {
                "It has no network access."
            }
            NetworkIsolation::Allowed | NetworkIsolation::Unavailable(_) => {
                "It has network access."
            }
        };
        format!(
            "Run a shell command (`sh -c`) in the workspace and get its exit code, stdout and \
             stderr (each cut after {} bytes). It is stopped after {}s unless `timeout_secs` \
             says otherwise (at most {}s), and every process it started is stopped when it ends. \
             {network} The environment is minimal: HOME is an empty temporary directory.",
            self.options.output_cap,
            self.options.default_timeout.as_secs(),
            self.options.max_timeout.as_secs(),
        )
    }

    fn writes(&self) -> bool {
        true
    }

    async fn call(&self, args: RunCommandArgs, ctx: &ToolContext) -> ToolResult {
        if args.command.trim().is_empty() {
            return Err(ToolError::respond("the command is empty"));
        }
        let cwd = self
            .root
            .resolve_existing(args.workdir.as_deref().unwrap_or("."))?;
        if !cwd.is_dir() {
            return Err(ToolError::respond(format!(
                "workdir `{}` is not a directory",
                self.root.display(&cwd)
            )));
        }
        let timeout = args
            .timeout_secs
            .map_or(self.options.default_timeout, Duration::from_secs)
            .min(self.options.max_timeout);
        let home = blocking(|| {
            tempfile::Builder::new()
                .prefix("kodiai-run-")
                .tempdir()
                .map_err(|e| ToolError::Fatal(format!("cannot create a temporary HOME: {e}")))
        })
        .await?;

        let prefix = self.isolation.prefix();
        let mut argv: Vec<String> = prefix.iter().map(|s| (*s).to_owned()).collect();
        argv.extend(["sh".to_owned(), "-c".to_owned(), args.command.clone()]);
        let spec = ChildSpec {
            program: argv.remove(0),
            args: argv,
            cwd,
            clear_env: true,
            env: self.environment(home.path()),
            timeout,
            output_cap: self.options.output_cap,
        };
        let run = process::run(&spec, &ctx.cancel).await;
        // Removing the HOME may walk a tree the command left there.
        tokio::task::spawn_blocking(move || drop(home));
        let run = run.map_err(|e| ToolError::respond(format!("cannot start the command: {e}")))?;

        let (headline, ok) = match run.end {
            ChildEnd::Exited(status) => match status.code() {
                Some(0) => ("exit code: 0".to_owned(), true),
                Some(code) => (format!("exit code: {code}"), false),
                None => (format!("ended by a signal ({status})"), false),
            },
            ChildEnd::TimedOut => (
                format!(
                    "timed out after {}s: the command and every process it started were killed",
                    timeout.as_secs()
                ),
                false,
            ),
            ChildEnd::Cancelled => (
                "cancelled: the command and every process it started were killed".to_owned(),
                false,
            ),
        };
        let mut out = format!("{headline} ({:.1}s)", run.elapsed.as_secs_f64());
        for (name, captured) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
            out.push_str(&format!("\n--- {name} ---\n"));
            out.push_str(&captured.text());
            if captured.dropped > 0 {
                out.push_str(&format!("\n({} more bytes cut)", captured.dropped));
            }
            if captured.cut_short {
                out.push_str("\n(a process that left the command's group kept this stream open)");
            }
        }
        Ok(if ok {
            ToolOutput::text(out)
        } else {
            ToolOutput::failure(out)
        })
    }
}
