//! Git for reviews, run as a child process on a checkout: whether a commit is there, the diff
//! between two commits as GitHub-style per-file patches (what the prompt builder takes), the
//! commit messages of a range. An incremental review diffs the last reviewed commit against the
//! head in the job's worktree; `kodiai review` diffs the base against `HEAD` in the user's
//! checkout.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use kodiai_github::diff::{Diff, LineKind};
use kodiai_github::rest::PullFile;

/// The longest one git command may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// How git is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitConfig {
    /// Without the system's and the user's configuration (a job's worktree on the server).
    Isolated,
    /// With them (the user's own checkout, for `kodiai review`).
    User,
}

/// Runs `git args…` in `dir`; its standard output, or git's message on failure. External
/// diff drivers, textconv and fsmonitor are never run.
pub async fn git(dir: &Path, config: GitConfig, args: &[&str]) -> Result<String, String> {
    let mut command = tokio::process::Command::new("git");
    command
        .args(["-c", "core.fsmonitor=", "-c", "core.quotepath=off"])
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if config == GitConfig::Isolated {
        command
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null");
    }
    let shown = args.first().copied().unwrap_or("");
    let output = tokio::time::timeout(GIT_TIMEOUT, command.output())
        .await
        .map_err(|_| format!("git {shown} took longer than {} s", GIT_TIMEOUT.as_secs()))?
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().next().unwrap_or("").trim();
        return Err(format!("git {shown} failed: {first}"));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether `sha` names a commit in the repository of `dir`.
pub async fn has_commit(dir: &Path, config: GitConfig, sha: &str) -> bool {
    if sha.starts_with('-') {
        return false;
    }
    git(
        dir,
        config,
        &["cat-file", "-e", &format!("{sha}^{{commit}}")],
    )
    .await
    .is_ok()
}

/// The changes from `from` to `to` as GitHub lists a pull request's files.
pub async fn diff_files(
    dir: &Path,
    config: GitConfig,
    from: &str,
    to: &str,
) -> Result<Vec<PullFile>, String> {
    if from.starts_with('-') || to.starts_with('-') {
        return Err("a revision may not start with '-'".into());
    }
    let text = git(
        dir,
        config,
        &[
            "diff",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "-M",
            from,
            to,
            "--",
        ],
    )
    .await?;
    Ok(pull_files(&text))
}

/// A whole `git diff` as per-file entries with GitHub's `patch` (the hunks only).
pub fn pull_files(diff_text: &str) -> Vec<PullFile> {
    let mut chunks: Vec<&str> = Vec::new();
    let mut start = None;
    let mut offset = 0;
    for line in diff_text.split_inclusive('\n') {
        if line.starts_with("diff --git ") {
            if let Some(s) = start {
                chunks.push(&diff_text[s..offset]);
            }
            start = Some(offset);
        }
        offset += line.len();
    }
    if let Some(s) = start {
        chunks.push(&diff_text[s..]);
    }
    chunks
        .into_iter()
        .filter_map(|chunk| {
            let diff = Diff::parse_git(chunk);
            let file = diff.files().first()?;
            let (mut additions, mut deletions) = (0, 0);
            for line in file.hunks.iter().flat_map(|h| &h.lines) {
                match line.kind {
                    LineKind::Added => additions += 1,
                    LineKind::Removed => deletions += 1,
                    LineKind::Context => {}
                }
            }
            let patch = (!file.binary && !file.hunks.is_empty())
                .then(|| {
                    chunk
                        .find("\n@@")
                        .map(|at| chunk[at + 1..].trim_end_matches('\n').to_owned())
                })
                .flatten();
            Some(PullFile {
                filename: file.path.clone(),
                status: file.status.as_str().to_owned(),
                additions,
                deletions,
                patch,
                previous_filename: file.previous_path.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn a_git_diff_becomes_github_style_files() {
        let text = "diff --git a/src/a.rs b/src/a.rs\nindex 1..2 100644\n--- a/src/a.rs\n+++ b/src/a.rs\n@@ -1,2 +1,2 @@\n fn a() {}\n-fn b() {}\n+fn c() {}\ndiff --git a/img.png b/img.png\nnew file mode 100644\nindex 0..1\nBinary files /dev/null and b/img.png differ\ndiff --git a/old.rs b/new.rs\nsimilarity index 100%\nrename from old.rs\nrename to new.rs\n";
        let files = pull_files(text);
        type Row<'a> = (&'a str, &'a str, u64, u64, Option<&'a str>, Option<&'a str>);
        let summary: Vec<Row> = files
            .iter()
            .map(|f| {
                (
                    f.filename.as_str(),
                    f.status.as_str(),
                    f.additions,
                    f.deletions,
                    f.patch.as_deref(),
                    f.previous_filename.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "src/a.rs",
                    "modified",
                    1,
                    1,
                    Some("@@ -1,2 +1,2 @@\n fn a() {}\n-fn b() {}\n+fn c() {}"),
                    None
                ),
                ("img.png", "added", 0, 0, None, None),
                ("new.rs", "renamed", 0, 0, None, Some("old.rs")),
            ]
        );
    }
}
