//! The review context (SPEC §8): everything a review needs to know about a pull request,
//! fetched from GitHub into a plain [`ReviewInput`], and the prompt built from it.
//!
//! Fetching ([`fetch_review_input`]) and building ([`build_review_prompt`]) are apart on
//! purpose: the fetch is all the IO (a handful of GitHub calls, some of them paged), the build
//! is a pure function of its input, fast enough for a 5,000-file pull request
//! (`kodiai bench review-context`) and snapshot-tested without a network.
//!
//! - `files.rs`: what kind of file a path is (source, test, docs, config) and which files are
//!   skipped outright (lock files, vendored, minified, generated, binary).
//! - `links.rs`: the issues a pull request body closes (`fixes #12`, `closes owner/repo#3`).
//! - `hunks.rs`: patches with the new side's line numbers, the numbers inline comments use.
//! - `prompt.rs`: the token budget, the ranking and packing of files, and the prompt text
//!   (the system prompt is the template `review_system.md`).

mod files;
pub mod git;
mod hunks;
mod links;
mod prompt;

#[cfg(test)]
mod tests;

use kodiai_github::client::{Error as GithubError, InstallationClient};
use kodiai_github::rest::{PullFile, TextFileAt};
use kodiai_github::sanitize::sanitize_untrusted;

use crate::repo_config::{PathSet, ReviewSettings};

pub use files::{FileKind, SkipReason};
pub use hunks::number_new_lines;
pub use links::{IssueRef, closing_references};
pub use prompt::{
    PromptBudget, ReviewPrompt, SkippedFile, build_review_prompt, context_window, estimate_tokens,
};

/// Linked issues fetched per pull request; more are named in the body anyway.
pub const MAX_LINKED_ISSUES: usize = 5;
/// The base branch's guideline files, in the order they are shown. Only the first
/// `CONTRIBUTING.md` found is read.
pub const GUIDELINE_FILES: [&str; 3] = ["AGENTS.md", "CONTRIBUTING.md", ".github/CONTRIBUTING.md"];
/// Larger guideline files are not read at all (the prompt shows at most
/// [`prompt::MAX_GUIDELINE_CHARS`] of those that are).
pub const MAX_GUIDELINE_BYTES: u64 = 256 * 1024;

/// Everything the review prompt is built from, as GitHub sent it (not yet sanitized: the
/// builder does that, so that nothing reaches the prompt without it).
#[derive(Debug, Clone)]
pub struct ReviewInput {
    /// `owner/name`.
    pub repository: String,
    pub number: u64,
    pub title: String,
    pub body: String,
    pub author: String,
    pub draft: bool,
    pub base: BranchRef,
    pub head: BranchRef,
    /// Every changed file GitHub lists (all pages, up to its 3,000).
    pub files: Vec<PullFile>,
    /// How many files the pull request changes by GitHub's count; more than `files.len()` when
    /// GitHub's list stops at 3,000.
    pub changed_files: u64,
    pub commits: Vec<CommitInfo>,
    pub ci: CiState,
    pub linked_issues: Vec<LinkedIssue>,
    pub instructions: ReviewInstructions,
    /// `.kodiai.yml`'s `review.paths` and `review.ignore_paths`.
    pub scope: ReviewScope,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchRef {
    pub name: String,
    pub sha: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub sha: String,
    pub message: String,
}

/// The head commit's CI: check runs and the combined commit status. `None` where GitHub did
/// not let kodiai see it (a missing permission), which the prompt says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CiState {
    pub checks: Option<Vec<CheckInfo>>,
    /// The combined state (`success`, `failure`, `pending`) and its statuses.
    pub status: Option<(String, Vec<StatusInfo>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckInfo {
    pub name: String,
    /// `queued`, `in_progress`, `completed`.
    pub status: String,
    pub conclusion: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusInfo {
    pub context: String,
    pub state: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedIssue {
    pub reference: IssueRef,
    pub title: String,
    pub body: String,
    pub state: String,
}

/// What the repository asks of a review.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReviewInstructions {
    /// `.kodiai.yml`'s `review.prompt`: replaces kodiai's default review focus.
    pub config_prompt: Option<String>,
    /// The base branch's `AGENTS.md` and `CONTRIBUTING.md`, as (path, text).
    pub guidelines: Vec<(String, String)>,
}

/// Which files `.kodiai.yml` has reviewed.
#[derive(Debug, Clone)]
pub struct ReviewScope {
    pub paths: PathSet,
    pub ignore_paths: PathSet,
}

impl ReviewScope {
    /// Every file.
    pub fn all() -> Self {
        Self {
            paths: PathSet::empty(),
            ignore_paths: PathSet::empty(),
        }
    }

    pub fn from_settings(review: &ReviewSettings) -> Self {
        Self {
            paths: review.paths.clone(),
            ignore_paths: review.ignore_paths.clone(),
        }
    }

    /// Why `path` is not reviewed under this scope, if it is not.
    pub fn excludes(&self, path: &str) -> Option<SkipReason> {
        if !self.paths.is_empty() && !self.paths.is_match(path) {
            return Some(SkipReason::OutsidePaths);
        }
        self.ignore_paths
            .first_match(path)
            .map(|pattern| SkipReason::IgnoredPath(pattern.to_owned()))
    }
}

/// Fetches the review context of pull request `number` of `owner/repo`: the pull request, all
/// its files and commits, the head's CI, the issues its body closes, and the guideline files
/// of its base branch (at the base sha, so a pull request cannot supply its own). `review` is
/// the repository's already-loaded `.kodiai.yml` review settings.
pub async fn fetch_review_input(
    client: &InstallationClient,
    owner: &str,
    repo: &str,
    number: u64,
    review: &ReviewSettings,
) -> Result<ReviewInput, GithubError> {
    let pull = client.get_pull(owner, repo, number).await?;
    let head_sha = pull.head.sha.clone();
    let base_sha = pull.base.sha.clone();
    let (files, commits, checks, status, guidelines) = tokio::try_join!(
        client.list_pull_files(owner, repo, number),
        client.list_pull_commits(owner, repo, number),
        optional(client.list_check_runs(owner, repo, &head_sha)),
        optional(client.combined_status(owner, repo, &head_sha)),
        fetch_guidelines(client, owner, repo, &base_sha),
    )?;

    let repository = format!("{owner}/{repo}");
    let body = pull.body.clone().unwrap_or_default();
    // Parsed from what a reader sees: a reference hidden in an HTML comment fetches nothing.
    let references = closing_references(&sanitize_untrusted(&body), &repository);
    let fetches = references
        .into_iter()
        .take(MAX_LINKED_ISSUES)
        .map(|reference| async move {
            let issue =
                optional(client.get_issue(&reference.owner, &reference.repo, reference.number))
                    .await?;
            Ok::<_, GithubError>(issue.map(|issue| LinkedIssue {
                title: issue.title,
                body: issue.body.unwrap_or_default(),
                state: issue.state,
                reference,
            }))
        });
    let linked_issues = futures::future::try_join_all(fetches)
        .await?
        .into_iter()
        .flatten()
        .collect();

    Ok(ReviewInput {
        repository,
        number,
        title: pull.title,
        body,
        author: pull.user.map(|u| u.login).unwrap_or_default(),
        draft: pull.draft,
        base: BranchRef {
            name: pull.base.name,
            sha: base_sha,
        },
        head: BranchRef {
            name: pull.head.name,
            sha: head_sha,
        },
        changed_files: pull.changed_files.unwrap_or(files.len() as u64),
        files,
        commits: commits
            .into_iter()
            .map(|c| CommitInfo {
                sha: c.sha,
                message: c.commit.message,
            })
            .collect(),
        ci: CiState {
            checks: checks.map(|runs| {
                runs.check_runs
                    .into_iter()
                    .map(|r| CheckInfo {
                        name: r.name,
                        status: r.status,
                        conclusion: r.conclusion,
                    })
                    .collect()
            }),
            status: status.map(|s| {
                let statuses = s
                    .statuses
                    .into_iter()
                    .map(|s| StatusInfo {
                        context: s.context,
                        state: s.state,
                        description: s.description,
                    })
                    .collect();
                (s.state, statuses)
            }),
        },
        linked_issues,
        instructions: ReviewInstructions {
            config_prompt: review.prompt.clone(),
            guidelines,
        },
        scope: ReviewScope::from_settings(review),
    })
}

/// The guideline files of the base commit that exist (absent ones are fine).
async fn fetch_guidelines(
    client: &InstallationClient,
    owner: &str,
    repo: &str,
    base_sha: &str,
) -> Result<Vec<(String, String)>, GithubError> {
    let reads = GUIDELINE_FILES.map(|path| async move {
        client
            .get_text_file_at(owner, repo, path, base_sha, MAX_GUIDELINE_BYTES)
            .await
            .map(|file| (path, file))
    });
    let mut found = Vec::new();
    let mut have_contributing = false;
    for (path, file) in futures::future::try_join_all(reads).await? {
        let TextFileAt::Text { text, .. } = file else {
            continue;
        };
        if path.ends_with("CONTRIBUTING.md") {
            if have_contributing {
                continue;
            }
            have_contributing = true;
        }
        found.push((path.to_owned(), text));
    }
    Ok(found)
}

/// `None` for what GitHub will not show this installation (403, 404, 410): the review goes
/// on without it. Other errors stay errors (a 5xx is retried by the job).
async fn optional<T>(
    call: impl std::future::Future<Output = Result<T, GithubError>>,
) -> Result<Option<T>, GithubError> {
    match call.await {
        Ok(value) => Ok(Some(value)),
        Err(e) if matches!(e.status(), Some(403 | 404 | 410)) => Ok(None),
        Err(e) => Err(e),
    }
}
