//! The calls of review threads and conversations: one issue or review comment, a pull
//! request's reviews and review comments, when a description was last edited (GraphQL), and
//! opening a pull request.

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Deserialize;

use super::{Comment, User};
use crate::client::{InstallationClient, Result};

/// Review comments and reviews of one pull request that kodiai reads back.
const MAX_REVIEW_ITEMS: usize = 3000;

/// A comment on a line of a pull request's diff.
#[derive(Debug, Clone, Deserialize)]
pub struct ReviewComment {
    pub id: u64,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub line: Option<u64>,
    #[serde(default)]
    pub in_reply_to_id: Option<u64>,
    #[serde(default)]
    pub diff_hunk: Option<String>,
    pub user: Option<User>,
    #[serde(default)]
    pub html_url: String,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

/// A submitted review (its summary body).
#[derive(Debug, Clone, Deserialize)]
pub struct ReviewBody {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub state: String,
    pub user: Option<User>,
    #[serde(default)]
    pub submitted_at: Option<DateTime<Utc>>,
    /// The commit the review is about.
    #[serde(default)]
    pub commit_id: Option<String>,
}

/// A pull request kodiai opened.
#[derive(Debug, Clone, Deserialize)]
pub struct CreatedPull {
    pub number: u64,
    #[serde(default)]
    pub html_url: String,
}

impl InstallationClient {
    /// When the body of issue or pull request `number` was last edited (GraphQL `lastEditedAt`;
    /// `None` when it never was). REST does not say: an issue's `updated_at` moves with every
    /// comment and label too.
    pub async fn body_edited_at(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
    ) -> Result<Option<DateTime<Utc>>> {
        const QUERY: &str = "query($owner: String!, $name: String!, $number: Int!) { \
             repository(owner: $owner, name: $name) { issueOrPullRequest(number: $number) { \
             ... on Issue { lastEditedAt } ... on PullRequest { lastEditedAt } } } }";
        #[derive(Deserialize)]
        struct Data {
            repository: Option<Repository>,
        }
        #[derive(Deserialize)]
        struct Repository {
            #[serde(rename = "issueOrPullRequest")]
            item: Option<Item>,
        }
        #[derive(Deserialize)]
        struct Item {
            #[serde(rename = "lastEditedAt")]
            last_edited_at: Option<DateTime<Utc>>,
        }
        let data: Data = self
            .graphql(
                QUERY,
                serde_json::json!({"owner": owner, "name": repo, "number": number}),
            )
            .await?;
        Ok(data
            .repository
            .and_then(|r| r.item)
            .and_then(|i| i.last_edited_at))
    }

    pub async fn get_issue_comment(&self, owner: &str, repo: &str, id: u64) -> Result<Comment> {
        let id = id.to_string();
        self.get_one(
            "/repos/{owner}/{repo}/issues/comments/{comment_id}",
            &["repos", owner, repo, "issues", "comments", &id],
        )
        .await
    }

    pub async fn get_review_comment(
        &self,
        owner: &str,
        repo: &str,
        id: u64,
    ) -> Result<ReviewComment> {
        let id = id.to_string();
        self.get_one(
            "/repos/{owner}/{repo}/pulls/comments/{comment_id}",
            &["repos", owner, repo, "pulls", "comments", &id],
        )
        .await
    }

    pub async fn update_review_comment(
        &self,
        owner: &str,
        repo: &str,
        id: u64,
        text: &str,
    ) -> Result<ReviewComment> {
        let id = id.to_string();
        self.send_body(
            Method::PATCH,
            "/repos/{owner}/{repo}/pulls/comments/{comment_id}",
            &["repos", owner, repo, "pulls", "comments", &id],
            text,
        )
        .await
    }

    /// Every review-thread comment of a pull request.
    pub async fn list_review_comments(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
    ) -> Result<Vec<ReviewComment>> {
        let n = number.to_string();
        self.get_all(
            "/repos/{owner}/{repo}/pulls/{number}/comments",
            &["repos", owner, repo, "pulls", &n, "comments"],
            MAX_REVIEW_ITEMS,
        )
        .await
    }

    pub async fn list_reviews(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
    ) -> Result<Vec<ReviewBody>> {
        let n = number.to_string();
        self.get_all(
            "/repos/{owner}/{repo}/pulls/{number}/reviews",
            &["repos", owner, repo, "pulls", &n, "reviews"],
            MAX_REVIEW_ITEMS,
        )
        .await
    }

    pub async fn get_review(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        id: u64,
    ) -> Result<ReviewBody> {
        let (n, id) = (number.to_string(), id.to_string());
        self.get_one(
            "/repos/{owner}/{repo}/pulls/{number}/reviews/{review_id}",
            &["repos", owner, repo, "pulls", &n, "reviews", &id],
        )
        .await
    }

    /// Opens a pull request from `head` (a branch of the repository) into `base`.
    pub async fn create_pull_request(
        &self,
        owner: &str,
        repo: &str,
        title: &str,
        head: &str,
        base: &str,
        body: &str,
    ) -> Result<CreatedPull> {
        let mut call = self.call(
            Method::POST,
            "/repos/{owner}/{repo}/pulls",
            &["repos", owner, repo, "pulls"],
        );
        call.body = Some(serde_json::json!({
            "title": self.gate(title), "head": head, "base": base, "body": self.gate(body),
            "maintainer_can_modify": true,
        }));
        self.request(call).await
    }
}
