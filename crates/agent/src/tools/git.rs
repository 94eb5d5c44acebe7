//! `git_diff` and `git_log`: git as a child process in the workspace, with a timeout and capped
//! output. Nothing the workspace contains may make git run a program: external diff drivers,
//! textconv filters and fsmonitor hooks are switched off on the command line.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::process::{self, ChildEnd, ChildSpec};
use super::{Tool, ToolContext, ToolError, ToolOutput, ToolResult, WorkspaceRoot};

/// Bytes of git output kept; a longer diff is cut with a note.
const GIT_OUTPUT_CAP: usize = 512 * 1024;
const DEFAULT_LOG_COUNT: u32 = 20;
const MAX_LOG_COUNT: u32 = 500;

/// `git_diff`.
#[derive(Debug, Clone)]
pub struct GitDiff {
    root: WorkspaceRoot,
    timeout: Duration,
}

impl GitDiff {
    /// `git_diff` over this workspace; each git run may take `timeout`.
    pub fn new(root: WorkspaceRoot, timeout: Duration) -> Self {
        Self { root, timeout }
    }
}

/// Arguments of `git_diff`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitDiffArgs {
    /// Compare against this revision (a branch, tag or commit) instead of the index.
    #[serde(default)]
    pub base: Option<String>,
    /// Show only what is staged (`git diff --cached`).
    #[serde(default)]
    pub staged: Option<bool>,
    /// Limit the diff to this file or directory, relative to the workspace root.
    #[serde(default)]
    pub path: Option<String>,
}

impl Tool for GitDiff {
    type Args = GitDiffArgs;

    fn name(&self) -> &str {
        "git_diff"
    }

    fn description(&self) -> String {
        "Show the uncommitted changes of the workspace as a unified diff (or against `base`), \
         followed by the list of untracked files."
            .to_owned()
    }

    fn writes(&self) -> bool {
        false
    }

    async fn call(&self, args: GitDiffArgs, ctx: &ToolContext) -> ToolResult {
        let mut diff = vec!["diff".to_owned(), "--no-color".to_owned()];
        diff.extend(["--no-ext-diff", "--no-textconv"].map(str::to_owned));
        if args.staged.unwrap_or(false) {
            diff.push("--cached".to_owned());
        }
        if let Some(base) = &args.base {
            diff.push(revision(base)?);
        }
        let pathspec = pathspec(&self.root, args.path.as_deref())?;
        diff.push("--".to_owned());
        diff.extend(pathspec.iter().cloned());
        let mut out = git(&self.root, self.timeout, diff, ctx).await?;
        if out.is_empty() {
            out.push_str("(no changes)\n");
        }

        let mut status = vec![
            "status".to_owned(),
            "--porcelain=v1".to_owned(),
            "--untracked-files=all".to_owned(),
            "--".to_owned(),
        ];
        status.extend(pathspec);
        let status = git(&self.root, self.timeout, status, ctx).await?;
        let untracked: Vec<&str> = status
            .lines()
            .filter_map(|line| line.strip_prefix("?? "))
            .collect();
        if !untracked.is_empty() {
            out.push_str("\nuntracked files (not in the diff):\n");
            for path in untracked {
                out.push_str(path);
                out.push('\n');
            }
        }
        Ok(ToolOutput::text(out))
    }
}

/// `git_log`.
#[derive(Debug, Clone)]
pub struct GitLog {
    root: WorkspaceRoot,
    timeout: Duration,
}

impl GitLog {
    /// `git_log` over this workspace; each git run may take `timeout`.
    pub fn new(root: WorkspaceRoot, timeout: Duration) -> Self {
        Self { root, timeout }
    }
}

/// Arguments of `git_log`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitLogArgs {
    /// How many commits, newest first (default 20, at most 500).
    #[serde(default)]
    pub max_count: Option<u32>,
    /// Start from this revision instead of HEAD (`main`, `v1.2`, `a1b2c3d`, `main..HEAD`).
    #[serde(default)]
    pub revision: Option<String>,
    /// Only commits that touch this file or directory, relative to the workspace root.
    #[serde(default)]
    pub path: Option<String>,
}

impl Tool for GitLog {
    type Args = GitLogArgs;

    fn name(&self) -> &str {
        "git_log"
    }

    fn description(&self) -> String {
        "Show the commit history: one line per commit with its short hash, date, author and \
         subject."
            .to_owned()
    }

    fn writes(&self) -> bool {
        false
    }

    async fn call(&self, args: GitLogArgs, ctx: &ToolContext) -> ToolResult {
        let count = args
            .max_count
            .unwrap_or(DEFAULT_LOG_COUNT)
            .clamp(1, MAX_LOG_COUNT);
        let mut log = vec![
            "log".to_owned(),
            "--no-color".to_owned(),
            format!("--max-count={count}"),
            "--date=short".to_owned(),
            "--format=%h %ad %an: %s".to_owned(),
        ];
        if let Some(revision) = &args.revision {
            log.push(revision_or_range(revision)?);
        }
        log.push("--".to_owned());
        log.extend(pathspec(&self.root, args.path.as_deref())?);
        let out = git(&self.root, self.timeout, log, ctx).await?;
        if out.is_empty() {
            return Ok(ToolOutput::text("(no commits)"));
        }
        Ok(ToolOutput::text(out))
    }
}

/// A revision the model gave, refused when git could read it as an option.
fn revision(raw: &str) -> Result<String, ToolError> {
    if raw.is_empty()
        || raw.starts_with('-')
        || raw.len() > 256
        || raw.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ToolError::respond(format!(
            "`{raw}` is not a revision (a branch, tag or commit)"
        )));
    }
    Ok(raw.to_owned())
}

fn revision_or_range(raw: &str) -> Result<String, ToolError> {
    for part in raw.split("..") {
        if !part.is_empty() {
            revision(part.trim_start_matches('.'))?;
        }
    }
    revision(raw)
}

/// The path as a literal pathspec relative to the root (git would read `:(…)` as magic).
fn pathspec(root: &WorkspaceRoot, raw: Option<&str>) -> Result<Vec<String>, ToolError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let path = root.resolve_maybe_missing(raw)?;
    Ok(vec![format!(":(literal){}", root.display(&path))])
}

/// Runs `git ARGS` in the workspace; its stdout, or the model's error with git's stderr.
async fn git(
    root: &WorkspaceRoot,
    timeout: Duration,
    args: Vec<String>,
    ctx: &ToolContext,
) -> Result<String, ToolError> {
    let mut full = vec![
        "-c".to_owned(),
        "core.fsmonitor=false".to_owned(),
        "-c".to_owned(),
        "core.quotepath=off".to_owned(),
        "--no-pager".to_owned(),
    ];
    full.extend(args);
    let spec = ChildSpec {
        program: "git".to_owned(),
        args: full,
        cwd: root.path().to_owned(),
        clear_env: false,
        // No lock on the index for `git status` (calls run in parallel); never a prompt.
        env: [("GIT_OPTIONAL_LOCKS", "0"), ("GIT_TERMINAL_PROMPT", "0")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .to_vec(),
        timeout,
        output_cap: GIT_OUTPUT_CAP,
    };
    let run = process::run(&spec, &ctx.cancel)
        .await
        .map_err(|e| ToolError::Fatal(format!("cannot run git: {e}")))?;
    match run.end {
        ChildEnd::TimedOut => Err(ToolError::respond(format!(
            "git took longer than {}s and was stopped",
            timeout.as_secs()
        ))),
        ChildEnd::Cancelled => Err(ToolError::respond("cancelled")),
        ChildEnd::Exited(status) if !status.success() => Err(ToolError::respond(format!(
            "git failed ({status}): {}",
            run.stderr.text().trim()
        ))),
        ChildEnd::Exited(_) => {
            let mut out = run.stdout.text();
            if run.stdout.dropped > 0 {
                out.push_str(&format!(
                    "\n(output cut: {} more bytes; narrow it with `path`)\n",
                    run.stdout.dropped
                ));
            }
            Ok(out)
        }
    }
}
