//! The REST calls kodiai makes, each a typed method on [`InstallationClient`] with the few fields
//! of GitHub's answer that kodiai reads (serde ignores the rest, so new fields never break us).

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::client::{InstallationClient, Result, body};

mod threads;

pub use threads::{CreatedPull, ReviewBody, ReviewComment};

/// The most pull request files GitHub lists (its own cap).
pub const MAX_PULL_FILES: usize = 3000;
/// The most pull request commits GitHub lists.
pub const MAX_PULL_COMMITS: usize = 250;
/// Comments on one issue or pull request that kodiai reads back.
pub const MAX_ISSUE_COMMENTS: usize = 5000;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct User {
    pub login: String,
    #[serde(default, rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    pub full_name: String,
    pub default_branch: String,
    #[serde(default)]
    pub private: bool,
    /// `https://github.com/owner/name.git`.
    #[serde(default)]
    pub clone_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Comment {
    pub id: u64,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub html_url: String,
    pub user: Option<User>,
    #[serde(default)]
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Reaction {
    pub id: u64,
    pub content: String,
}

/// What a reaction is put on.
#[derive(Debug, Clone, Copy)]
pub enum ReactionTarget {
    /// The issue or pull request itself (its opening post).
    Issue(u64),
    IssueComment(u64),
    ReviewComment(u64),
}

#[derive(Debug, Clone, Deserialize)]
pub struct GitRef {
    #[serde(rename = "ref")]
    pub name: String,
    pub sha: String,
    /// The repository the branch is in; `None` when the fork a pull request came from was
    /// deleted.
    #[serde(default)]
    pub repo: Option<HeadRepository>,
}

/// The repository of one side of a pull request.
#[derive(Debug, Clone, Deserialize)]
pub struct HeadRepository {
    pub full_name: String,
    #[serde(default)]
    pub clone_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub draft: bool,
    pub user: Option<User>,
    pub head: GitRef,
    pub base: GitRef,
    #[serde(default)]
    pub changed_files: Option<u64>,
    /// Whether the fork's owner lets maintainers (and so kodiai) push to its branch.
    #[serde(default)]
    pub maintainer_can_modify: bool,
    #[serde(default)]
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullFile {
    pub filename: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub additions: u64,
    #[serde(default)]
    pub deletions: u64,
    /// Absent for binary files and very large diffs.
    #[serde(default)]
    pub patch: Option<String>,
    #[serde(default)]
    pub previous_filename: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullCommit {
    pub sha: String,
    pub commit: CommitDetail,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CommitDetail {
    #[serde(default)]
    pub message: String,
}

/// A review to post: one summary and all its inline comments at once.
#[derive(Debug, Clone, Serialize)]
pub struct NewReview {
    pub commit_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// `COMMENT`, `APPROVE` or `REQUEST_CHANGES`.
    pub event: String,
    pub comments: Vec<NewReviewComment>,
}

/// An inline comment of a review, on a line (or a range from `start_line`) of the diff.
#[derive(Debug, Clone, Serialize)]
pub struct NewReviewComment {
    pub path: String,
    pub body: String,
    pub line: u64,
    /// `RIGHT` (the new side) or `LEFT`.
    pub side: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_side: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Review {
    pub id: u64,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub html_url: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckRuns {
    pub total_count: u64,
    pub check_runs: Vec<CheckRun>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckRun {
    pub id: u64,
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
}

/// The combined commit status (the older Statuses API, still used by many CI services).
#[derive(Debug, Clone, Deserialize)]
pub struct CombinedStatus {
    pub state: String,
    #[serde(default)]
    pub statuses: Vec<CommitStatus>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CommitStatus {
    pub context: String,
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub target_url: Option<String>,
}

/// `GET /repos/{owner}/{repo}/contents/{path}` for a file.
#[derive(Debug, Clone, Deserialize)]
pub struct FileContent {
    pub sha: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, rename = "type")]
    pub kind: String,
    /// `base64`, or `none` when the file is over 1 MB and GitHub sends no content.
    #[serde(default)]
    pub encoding: String,
    #[serde(default)]
    pub content: String,
}

impl InstallationClient {
    /// `GET` of one resource.
    async fn get_one<T: DeserializeOwned>(&self, route: &'static str, path: &[&str]) -> Result<T> {
        self.request(self.call(Method::GET, route, path)).await
    }

    /// `GET` of every page of a list, `max` items at most.
    async fn get_all<T: DeserializeOwned>(
        &self,
        route: &'static str,
        path: &[&str],
        max: usize,
    ) -> Result<Vec<T>> {
        self.paginate(self.call(Method::GET, route, path), max)
            .await
    }

    /// A `POST` or `PATCH` whose `body` is text kodiai wrote, passed through [`Self::gate`].
    async fn send_body<T: DeserializeOwned>(
        &self,
        method: Method,
        route: &'static str,
        path: &[&str],
        text: &str,
    ) -> Result<T> {
        let mut call = self.call(method, route, path);
        call.body = Some(serde_json::json!({ "body": self.gate(text) }));
        self.request(call).await
    }

    pub async fn get_repository(&self, owner: &str, repo: &str) -> Result<Repository> {
        self.get_one("/repos/{owner}/{repo}", &["repos", owner, repo])
            .await
    }

    pub async fn create_issue_comment(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        text: &str,
    ) -> Result<Comment> {
        let n = number.to_string();
        self.send_body(
            Method::POST,
            "/repos/{owner}/{repo}/issues/{number}/comments",
            &["repos", owner, repo, "issues", &n, "comments"],
            text,
        )
        .await
    }

    pub async fn update_issue_comment(
        &self,
        owner: &str,
        repo: &str,
        comment_id: u64,
        text: &str,
    ) -> Result<Comment> {
        let id = comment_id.to_string();
        self.send_body(
            Method::PATCH,
            "/repos/{owner}/{repo}/issues/comments/{comment_id}",
            &["repos", owner, repo, "issues", "comments", &id],
            text,
        )
        .await
    }

    /// Every comment of an issue or pull request (its conversation, not review comments).
    pub async fn list_issue_comments(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
    ) -> Result<Vec<Comment>> {
        let n = number.to_string();
        self.get_all(
            "/repos/{owner}/{repo}/issues/{number}/comments",
            &["repos", owner, repo, "issues", &n, "comments"],
            MAX_ISSUE_COMMENTS,
        )
        .await
    }

    /// A reaction (`+1`, `eyes`, `rocket`, …). GitHub answers 200 when it already exists.
    pub async fn create_reaction(
        &self,
        owner: &str,
        repo: &str,
        target: ReactionTarget,
        content: &str,
    ) -> Result<Reaction> {
        let (route, id, segments): (&'static str, String, [&str; 2]) = match target {
            ReactionTarget::Issue(n) => (
                "/repos/{owner}/{repo}/issues/{number}/reactions",
                n.to_string(),
                ["issues", ""],
            ),
            ReactionTarget::IssueComment(id) => (
                "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
                id.to_string(),
                ["issues", "comments"],
            ),
            ReactionTarget::ReviewComment(id) => (
                "/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions",
                id.to_string(),
                ["pulls", "comments"],
            ),
        };
        let mut path = vec!["repos", owner, repo];
        path.extend(segments.iter().filter(|s| !s.is_empty()));
        path.push(&id);
        path.push("reactions");
        let mut call = self.call(Method::POST, route, &path);
        call.body = Some(serde_json::json!({ "content": content }));
        self.request(call).await
    }

    pub async fn get_pull(&self, owner: &str, repo: &str, number: u64) -> Result<PullRequest> {
        let n = number.to_string();
        self.get_one(
            "/repos/{owner}/{repo}/pulls/{number}",
            &["repos", owner, repo, "pulls", &n],
        )
        .await
    }

    /// Every changed file (all pages, up to GitHub's 3,000).
    pub async fn list_pull_files(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
    ) -> Result<Vec<PullFile>> {
        let n = number.to_string();
        self.get_all(
            "/repos/{owner}/{repo}/pulls/{number}/files",
            &["repos", owner, repo, "pulls", &n, "files"],
            MAX_PULL_FILES,
        )
        .await
    }

    pub async fn list_pull_commits(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
    ) -> Result<Vec<PullCommit>> {
        let n = number.to_string();
        self.get_all(
            "/repos/{owner}/{repo}/pulls/{number}/commits",
            &["repos", owner, repo, "pulls", &n, "commits"],
            MAX_PULL_COMMITS,
        )
        .await
    }

    /// One review with all its inline comments (`POST /pulls/{n}/reviews`).
    pub async fn create_review(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        review: &NewReview,
    ) -> Result<Review> {
        let n = number.to_string();
        let mut call = self.call(
            Method::POST,
            "/repos/{owner}/{repo}/pulls/{number}/reviews",
            &["repos", owner, repo, "pulls", &n, "reviews"],
        );
        let mut review = review.clone();
        review.body = review.body.as_deref().map(|text| self.gate(text));
        for comment in &mut review.comments {
            comment.body = self.gate(&comment.body);
        }
        call.body = body(&review);
        self.request(call).await
    }

    /// A reply in a review comment's thread.
    pub async fn reply_to_review_comment(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        comment_id: u64,
        text: &str,
    ) -> Result<Comment> {
        let n = number.to_string();
        let id = comment_id.to_string();
        self.send_body(
            Method::POST,
            "/repos/{owner}/{repo}/pulls/{number}/comments/{comment_id}/replies",
            &[
                "repos", owner, repo, "pulls", &n, "comments", &id, "replies",
            ],
            text,
        )
        .await
    }

    /// Check runs of a commit (first 100, which is all a prompt needs).
    pub async fn list_check_runs(
        &self,
        owner: &str,
        repo: &str,
        git_ref: &str,
    ) -> Result<CheckRuns> {
        let mut call = self.call(
            Method::GET,
            "/repos/{owner}/{repo}/commits/{ref}/check-runs",
            &["repos", owner, repo, "commits", git_ref, "check-runs"],
        );
        call.url.query_pairs_mut().append_pair("per_page", "100");
        self.request(call).await
    }

    pub async fn combined_status(
        &self,
        owner: &str,
        repo: &str,
        git_ref: &str,
    ) -> Result<CombinedStatus> {
        self.get_one(
            "/repos/{owner}/{repo}/commits/{ref}/status",
            &["repos", owner, repo, "commits", git_ref, "status"],
        )
        .await
    }
}

// Issues (the review's linked issues, the mention's context) and files of the base branch.

/// `GET /repos/{owner}/{repo}/issues/{number}`: an issue (or a pull request, which GitHub also
/// answers here, with `pull_request` set).
#[derive(Debug, Clone, Deserialize)]
pub struct Issue {
    pub number: u64,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub state: String,
    pub user: Option<User>,
    #[serde(default)]
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Present when the issue is a pull request.
    #[serde(default)]
    pub pull_request: Option<serde_json::Value>,
}

/// A text file read at a ref by [`InstallationClient::get_text_file_at`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextFileAt {
    /// No such file at that ref (or a directory).
    Missing,
    Text {
        sha: String,
        text: String,
    },
    /// Over the size asked for, or not UTF-8 text: not read.
    Unreadable {
        size: u64,
    },
}

impl InstallationClient {
    pub async fn get_issue(&self, owner: &str, repo: &str, number: u64) -> Result<Issue> {
        let n = number.to_string();
        self.get_one(
            "/repos/{owner}/{repo}/issues/{number}",
            &["repos", owner, repo, "issues", &n],
        )
        .await
    }

    /// A text file at `git_ref` (a branch, tag or sha) through the contents API, when it is at
    /// most `max_bytes`. Not cached: unlike `.kodiai.yml`, these are read once per review.
    pub async fn get_text_file_at(
        &self,
        owner: &str,
        repo: &str,
        path: &str,
        git_ref: &str,
        max_bytes: u64,
    ) -> Result<TextFileAt> {
        use base64::Engine;
        const ROUTE: &str = "/repos/{owner}/{repo}/contents/{path}";
        let mut segments = vec!["repos", owner, repo, "contents"];
        segments.extend(path.split('/').filter(|s| !s.is_empty()));
        let mut call = self.call(Method::GET, ROUTE, &segments);
        call.url.query_pairs_mut().append_pair("ref", git_ref);
        let response = match self.send(call).await {
            Ok(r) => r,
            Err(e) if e.status() == Some(404) => return Ok(TextFileAt::Missing),
            Err(e) => return Err(e),
        };
        // A directory answers with a JSON array.
        let Ok(file) = response.json::<FileContent>(ROUTE) else {
            return Ok(TextFileAt::Missing);
        };
        if file.kind != "file" && !file.kind.is_empty() {
            return Ok(TextFileAt::Missing);
        }
        if file.size > max_bytes || file.encoding != "base64" {
            return Ok(TextFileAt::Unreadable { size: file.size });
        }
        let compact: String = file
            .content
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let text = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        Ok(match text {
            Some(text) => TextFileAt::Text {
                sha: file.sha,
                text,
            },
            None => TextFileAt::Unreadable { size: file.size },
        })
    }
}
