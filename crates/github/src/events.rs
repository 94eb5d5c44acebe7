//! Typed webhook events: what kodiai reads from the deliveries it routes (SPEC §2). Only the
//! fields kodiai uses are declared and every other field is skipped, so GitHub adding fields
//! never breaks parsing; fields GitHub may send as `null` or leave out are `Option`s.
//!
//! [`Envelope`] is what every delivery has (action, installation, repository, sender), read
//! from any event, known or not; [`Event::parse`] reads a delivery by its `X-GitHub-Event`.

use serde::Deserialize;

/// The fields common to deliveries, read for every event (also unknown ones) to record them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub installation: Option<InstallationRef>,
    #[serde(default)]
    pub repository: Option<RepositoryRef>,
    #[serde(default)]
    pub sender: Option<Account>,
}

/// `installation` in an event: the App installation the delivery is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct InstallationRef {
    pub id: i64,
}

/// Just the name of a repository.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RepositoryRef {
    pub full_name: String,
}

/// A user, organization or bot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Account {
    pub login: String,
    pub id: i64,
    /// `User`, `Organization` or `Bot`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

impl Account {
    /// A GitHub App's bot user or another machine account (`type: Bot`, or a `[bot]` login).
    pub fn is_bot(&self) -> bool {
        self.kind.as_deref() == Some("Bot") || self.login.ends_with("[bot]")
    }
}

/// A repository as events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Repository {
    pub id: i64,
    pub name: String,
    pub full_name: String,
    #[serde(default)]
    pub private: bool,
    #[serde(default)]
    pub owner: Option<Account>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub default_branch: Option<String>,
}

/// A branch tip of a pull request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GitRef {
    #[serde(rename = "ref")]
    pub name: String,
    pub sha: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub draft: bool,
    pub state: String,
    pub user: Account,
    pub head: GitRef,
    pub base: GitRef,
    #[serde(default)]
    pub html_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    pub user: Account,
    /// Present when the issue is a pull request (comments on pull requests arrive as
    /// `issue_comment` on their issue).
    #[serde(default)]
    pub pull_request: Option<IssuePullRequest>,
    #[serde(default)]
    pub html_url: Option<String>,
}

/// The `pull_request` marker of an issue that is a pull request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IssuePullRequest {
    #[serde(default)]
    pub url: Option<String>,
}

/// A comment on an issue or pull request, or on a line of a pull request's diff.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Comment {
    pub id: u64,
    #[serde(default)]
    pub body: String,
    pub user: Account,
    #[serde(default)]
    pub html_url: Option<String>,
    /// Review comments: the comment this one answers, for replying in the same thread.
    #[serde(default)]
    pub in_reply_to_id: Option<u64>,
    /// Review comments: the file.
    #[serde(default)]
    pub path: Option<String>,
    /// Review comments: the commit the comment was made on.
    #[serde(default)]
    pub commit_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Review {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    pub user: Account,
    /// `approved`, `changes_requested`, `commented`, `dismissed`.
    pub state: String,
    #[serde(default)]
    pub commit_id: Option<String>,
}

/// `pull_request`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRequestEvent {
    pub action: String,
    pub number: u64,
    pub pull_request: PullRequest,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<InstallationRef>,
    pub sender: Account,
}

/// `issues`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IssuesEvent {
    pub action: String,
    pub issue: Issue,
    /// On `edited`: what changed, with the earlier values.
    #[serde(default)]
    pub changes: Option<Changes>,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<InstallationRef>,
    pub sender: Account,
}

/// The `changes` of an `edited` action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Changes {
    #[serde(default)]
    pub body: Option<Change>,
    #[serde(default)]
    pub title: Option<Change>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Change {
    #[serde(default)]
    pub from: Option<String>,
}

/// `issue_comment`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IssueCommentEvent {
    pub action: String,
    pub issue: Issue,
    pub comment: Comment,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<InstallationRef>,
    pub sender: Account,
}

/// `pull_request_review_comment`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReviewCommentEvent {
    pub action: String,
    pub comment: Comment,
    pub pull_request: PullRequest,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<InstallationRef>,
    pub sender: Account,
}

/// `pull_request_review`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReviewEvent {
    pub action: String,
    pub review: Review,
    pub pull_request: PullRequest,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<InstallationRef>,
    pub sender: Account,
}

/// `push`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PushEvent {
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub before: String,
    pub after: String,
    #[serde(default)]
    pub created: bool,
    #[serde(default)]
    pub deleted: bool,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<InstallationRef>,
    pub sender: Account,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WorkflowRun {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    pub head_sha: String,
    #[serde(default)]
    pub head_branch: Option<String>,
    pub status: Option<String>,
    #[serde(default)]
    pub conclusion: Option<String>,
}

/// `workflow_run`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WorkflowRunEvent {
    pub action: String,
    pub workflow_run: WorkflowRun,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<InstallationRef>,
    pub sender: Account,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckSuite {
    pub id: u64,
    pub head_sha: String,
    #[serde(default)]
    pub head_branch: Option<String>,
    pub status: Option<String>,
    #[serde(default)]
    pub conclusion: Option<String>,
}

/// `check_suite`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckSuiteEvent {
    pub action: String,
    pub check_suite: CheckSuite,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<InstallationRef>,
    pub sender: Account,
}

/// An App installation as `installation` events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Installation {
    pub id: i64,
    pub account: Account,
    #[serde(default)]
    pub app_slug: Option<String>,
    #[serde(default)]
    pub suspended_at: Option<String>,
}

/// A repository as installation events list it (fewer fields than [`Repository`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InstalledRepository {
    pub id: i64,
    pub name: String,
    pub full_name: String,
    #[serde(default)]
    pub private: bool,
}

/// `installation`: `created`, `deleted`, `suspend`, `unsuspend`, `new_permissions_accepted`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InstallationEvent {
    pub action: String,
    pub installation: Installation,
    /// The repositories granted (on `created`; absent or null otherwise).
    #[serde(default)]
    pub repositories: Option<Vec<InstalledRepository>>,
    pub sender: Account,
}

/// `installation_repositories`: `added`, `removed`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InstallationRepositoriesEvent {
    pub action: String,
    pub installation: Installation,
    #[serde(default)]
    pub repositories_added: Vec<InstalledRepository>,
    #[serde(default)]
    pub repositories_removed: Vec<InstalledRepository>,
    pub sender: Account,
}

/// `ping`: sent once when the webhook is created.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PingEvent {
    #[serde(default)]
    pub zen: Option<String>,
    #[serde(default)]
    pub hook_id: Option<u64>,
}

/// A delivery, read according to its `X-GitHub-Event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    PullRequest(Box<PullRequestEvent>),
    Issues(Box<IssuesEvent>),
    IssueComment(Box<IssueCommentEvent>),
    PullRequestReviewComment(Box<ReviewCommentEvent>),
    PullRequestReview(Box<ReviewEvent>),
    Push(Box<PushEvent>),
    WorkflowRun(Box<WorkflowRunEvent>),
    CheckSuite(Box<CheckSuiteEvent>),
    Installation(Box<InstallationEvent>),
    InstallationRepositories(Box<InstallationRepositoriesEvent>),
    Ping(PingEvent),
    /// An event kodiai does not route (recorded and ignored).
    Other(String),
}

/// The events [`Event::parse`] reads; every other name is [`Event::Other`].
pub const ROUTED_EVENTS: &[&str] = &[
    "pull_request",
    "issues",
    "issue_comment",
    "pull_request_review_comment",
    "pull_request_review",
    "push",
    "workflow_run",
    "check_suite",
    "installation",
    "installation_repositories",
    "ping",
];

impl Event {
    /// Reads `body` (JSON) as the event named `event`. The error is serde's (line, column,
    /// field), for the delivery's recorded reason.
    pub fn parse(event: &str, body: &[u8]) -> Result<Self, serde_json::Error> {
        fn read<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Box<T>, serde_json::Error> {
            serde_json::from_slice(body).map(Box::new)
        }
        Ok(match event {
            "pull_request" => Self::PullRequest(read(body)?),
            "issues" => Self::Issues(read(body)?),
            "issue_comment" => Self::IssueComment(read(body)?),
            "pull_request_review_comment" => Self::PullRequestReviewComment(read(body)?),
            "pull_request_review" => Self::PullRequestReview(read(body)?),
            "push" => Self::Push(read(body)?),
            "workflow_run" => Self::WorkflowRun(read(body)?),
            "check_suite" => Self::CheckSuite(read(body)?),
            "installation" => Self::Installation(read(body)?),
            "installation_repositories" => Self::InstallationRepositories(read(body)?),
            "ping" => Self::Ping(serde_json::from_slice(body)?),
            other => Self::Other(other.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_skipped_and_nulls_are_absent() {
        let body = br#"{"action":"opened","number":7,"new_field":{"x":1},
            "pull_request":{"number":7,"title":"t","body":null,"state":"open","draft":false,
              "user":{"login":"a","id":1,"type":"User","extra":true},
              "head":{"ref":"f","sha":"abc"},"base":{"ref":"main","sha":"def"}},
            "repository":{"id":2,"name":"r","full_name":"o/r","private":false},
            "sender":{"login":"a","id":1,"type":"User"}}"#;
        let Event::PullRequest(event) = Event::parse("pull_request", body).unwrap() else {
            panic!("not a pull request event");
        };
        assert_eq!(event.pull_request.body, None);
        assert_eq!(event.installation, None);
        assert_eq!(event.pull_request.head.sha, "abc");
    }

    #[test]
    fn bots_are_known_by_type_or_login() {
        let account = |login: &str, kind: Option<&str>| Account {
            login: login.into(),
            id: 1,
            kind: kind.map(str::to_owned),
        };
        assert!(account("renovate[bot]", None).is_bot());
        assert!(account("ci", Some("Bot")).is_bot());
        assert!(!account("octocat", Some("User")).is_bot());
    }

    #[test]
    fn unknown_events_are_other() {
        assert_eq!(
            Event::parse("star", b"not even json").unwrap(),
            Event::Other("star".into())
        );
    }
}
