//! What the agent is told about a mention: the issue or pull request, its conversation, its
//! reviews and, for a review comment, its thread; the diff of a pull request. Everything written
//! on GitHub goes through `sanitize_untrusted` first, and comments created or edited after the
//! trigger are left out, as is the description when it was edited after the trigger (TOCTOU:
//! an edit after the request must not change what kodiai acts on). What was written before the
//! trigger is `kodiai_github::sanitize::written_before`'s to say, so a comment or review without
//! a creation time is left out too.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use kodiai_github::client::{InstallationClient, Result};
use kodiai_github::rest::{PullFile, PullRequest, Repository, User};
use kodiai_github::sanitize::{sanitize_untrusted, written_before};
use kodiai_protocol::{MentionJob, MentionSource};

/// At most this much of one comment or body goes into the prompt.
const MAX_TEXT_CHARS: usize = 20_000;
/// At most this many conversation comments (the latest ones).
const MAX_COMMENTS: usize = 100;
/// At most this much of the pull request's patches; the other files are listed by name.
const MAX_DIFF_CHARS: usize = 120_000;

/// What was gathered.
pub struct Gathered {
    pub repository: Repository,
    /// The issue's or pull request's title (sanitized).
    pub title: String,
    pub pull: Option<PullRequest>,
    /// The context as markdown sections for the prompt.
    pub text: String,
    /// Comments (and the description) left out because they were written or edited after the
    /// trigger.
    pub left_out: usize,
}

fn clean(text: &str) -> String {
    let text = sanitize_untrusted(text);
    if text.chars().count() > MAX_TEXT_CHARS {
        let cut: String = text.chars().take(MAX_TEXT_CHARS).collect();
        format!("{cut}\n[… cut]")
    } else {
        text
    }
}

fn login(user: Option<&User>) -> String {
    user.map_or_else(|| "someone".to_owned(), |u| sanitize_untrusted(&u.login))
}

/// When the triggering comment, review or issue was written; `fallback` (the job's creation)
/// when GitHub does not say.
async fn trigger_time(
    client: &InstallationClient,
    job: &MentionJob,
    owner: &str,
    repo: &str,
    fallback: DateTime<Utc>,
) -> Result<DateTime<Utc>> {
    let found = match (job.source, job.comment_id) {
        (MentionSource::IssueComment, Some(id)) => client
            .get_issue_comment(owner, repo, id)
            .await
            .map(|c| c.created_at),
        (MentionSource::ReviewComment, Some(id)) => client
            .get_review_comment(owner, repo, id)
            .await
            .map(|c| c.created_at),
        (MentionSource::Review, Some(id)) => client
            .get_review(owner, repo, job.number, id)
            .await
            .map(|r| r.submitted_at),
        _ => Ok(None),
    };
    match found {
        Ok(at) => Ok(at.unwrap_or(fallback)),
        // Deleted since: the delivery's time is the cut-off.
        Err(e) if e.status() == Some(404) => Ok(fallback),
        Err(e) => Err(e),
    }
}

/// Gathers the context of `job`, leaving out what was written after the trigger.
pub async fn gather(
    client: &InstallationClient,
    job: &MentionJob,
    owner: &str,
    repo: &str,
    job_created: DateTime<Utc>,
) -> Result<Gathered> {
    let repository = client.get_repository(owner, repo).await?;
    let cutoff = trigger_time(client, job, owner, repo, job_created).await?;
    let mut text = String::new();
    let mut left_out = 0;
    // The description as it is now, unless it was edited after the request. A mention in an
    // issue's own body brings that body as delivered, so the current one is not shown.
    let shows_body = job.is_pull_request || job.source != MentionSource::Issue;
    let edited_after = shows_body
        && client
            .body_edited_at(owner, repo, job.number)
            .await?
            .is_some_and(|at| at > cutoff);
    let mut body_text = |body: Option<&str>| {
        if edited_after {
            left_out += 1;
            "_(The description was edited after the request; it is left out.)_".to_owned()
        } else {
            clean(body.unwrap_or_default())
        }
    };

    let (title, pull) = if job.is_pull_request {
        let pull = client.get_pull(owner, repo, job.number).await?;
        let title = clean(&pull.title);
        let _ = write!(
            text,
            "## Pull request #{} by {}: {title}\n\nBase `{}`, head `{}` ({}).\n\n",
            pull.number,
            login(pull.user.as_ref()),
            sanitize_untrusted(&pull.base.name),
            sanitize_untrusted(&pull.head.name),
            pull.head.sha,
        );
        let _ = write!(text, "{}\n\n", body_text(pull.body.as_deref()));
        (title, Some(pull))
    } else {
        let issue = client.get_issue(owner, repo, job.number).await?;
        let title = clean(&issue.title);
        let _ = write!(
            text,
            "## Issue #{} by {}: {title}\n\n",
            issue.number,
            login(issue.user.as_ref())
        );
        // For a mention in the issue's own body, the request below is that body (as it was
        // delivered); its current text may have been edited since.
        if job.source != MentionSource::Issue {
            let _ = write!(text, "{}\n\n", body_text(issue.body.as_deref()));
        }
        (title, None)
    };

    let comments = client.list_issue_comments(owner, repo, job.number).await?;
    let mut kept = Vec::new();
    for c in &comments {
        if Some(c.id) == job.comment_id && job.source == MentionSource::IssueComment {
            continue;
        }
        if written_before(c.created_at, c.updated_at, cutoff) {
            kept.push(c);
        } else if !c.body.contains("<!-- kodiai:") {
            // kodiai's own later comments (this job's tracking comment) are not news.
            left_out += 1;
        }
    }
    if !kept.is_empty() {
        text.push_str("## Conversation (oldest first)\n\n");
        let skip = kept.len().saturating_sub(MAX_COMMENTS);
        if skip > 0 {
            let _ = write!(text, "({skip} older comments not shown)\n\n");
        }
        for c in kept.iter().skip(skip) {
            let _ = write!(
                text,
                "### {} wrote\n\n{}\n\n",
                login(c.user.as_ref()),
                clean(&c.body)
            );
        }
    }

    if let Some(pull) = &pull {
        let reviews = client.list_reviews(owner, repo, pull.number).await?;
        let mut shown = String::new();
        for r in &reviews {
            let body = r.body.as_deref().unwrap_or_default();
            if body.trim().is_empty() || Some(r.id) == job.comment_id {
                continue;
            }
            if !written_before(r.submitted_at, None, cutoff) {
                left_out += 1;
                continue;
            }
            let _ = write!(
                shown,
                "### {} ({})\n\n{}\n\n",
                login(r.user.as_ref()),
                sanitize_untrusted(&r.state),
                clean(body)
            );
        }
        if !shown.is_empty() {
            text.push_str("## Reviews\n\n");
            text.push_str(&shown);
        }
        if job.source == MentionSource::ReviewComment
            && let Some(root) = job.reply_to
        {
            let thread: Vec<_> = client
                .list_review_comments(owner, repo, pull.number)
                .await?
                .into_iter()
                .filter(|c| c.id == root || c.in_reply_to_id == Some(root))
                .collect();
            if let Some(first) = thread.iter().find(|c| c.id == root) {
                let _ = write!(
                    text,
                    "## The review thread you were asked in: `{}` line {}\n\n",
                    sanitize_untrusted(&first.path),
                    first.line.map_or_else(|| "?".to_owned(), |l| l.to_string())
                );
                if let Some(hunk) = &first.diff_hunk {
                    let _ = write!(text, "```diff\n{}\n```\n\n", clean(hunk));
                }
            }
            for c in &thread {
                if Some(c.id) == job.comment_id {
                    continue;
                }
                if !written_before(c.created_at, c.updated_at, cutoff) {
                    left_out += 1;
                    continue;
                }
                let _ = write!(
                    text,
                    "### {} wrote\n\n{}\n\n",
                    login(c.user.as_ref()),
                    clean(&c.body)
                );
            }
        }
        let files = client.list_pull_files(owner, repo, pull.number).await?;
        text.push_str(&diff_section(&files));
    }

    Ok(Gathered {
        repository,
        title,
        pull,
        text,
        left_out,
    })
}

/// The patches of the changed files within [`MAX_DIFF_CHARS`]; the rest by name.
fn diff_section(files: &[PullFile]) -> String {
    let mut out = format!("## Changed files ({})\n\n", files.len());
    let mut used = 0;
    let mut not_shown = Vec::new();
    for f in files {
        let name = sanitize_untrusted(&f.filename);
        match &f.patch {
            Some(patch) if used + patch.len() <= MAX_DIFF_CHARS => {
                used += patch.len();
                let _ = write!(
                    out,
                    "### `{name}` ({}, +{} -{})\n\n```diff\n{}\n```\n\n",
                    f.status,
                    f.additions,
                    f.deletions,
                    sanitize_untrusted(patch)
                );
            }
            _ => not_shown.push(name),
        }
    }
    if !not_shown.is_empty() {
        let _ = write!(
            out,
            "Not shown (binary, too large, or over the budget; read them in the workspace): {}\n\n",
            not_shown
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comment_edited_after_the_trigger_is_not_from_before_it() {
        let t = |s: &str| Some(s.parse::<DateTime<Utc>>().unwrap());
        let cutoff = "2024-01-01T10:00:00Z".parse().unwrap();
        assert!(written_before(
            t("2024-01-01T09:00:00Z"),
            t("2024-01-01T09:30:00Z"),
            cutoff
        ));
        assert!(written_before(t("2024-01-01T10:00:00Z"), None, cutoff));
        assert!(!written_before(
            t("2024-01-01T09:00:00Z"),
            t("2024-01-01T10:00:01Z"),
            cutoff
        ));
        assert!(!written_before(t("2024-01-01T10:00:01Z"), None, cutoff));
    }

    #[test]
    fn a_comment_or_review_without_a_creation_time_is_left_out() {
        let cutoff = "2024-01-01T10:00:00Z".parse().unwrap();
        let earlier = Some("2024-01-01T09:00:00Z".parse::<DateTime<Utc>>().unwrap());
        // A comment without `created_at`, edited before the trigger or never; a review
        // without `submitted_at` is asked as the second.
        assert!(!written_before(None, earlier, cutoff));
        assert!(!written_before(None, None, cutoff));
    }
}
