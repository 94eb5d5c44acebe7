//! The end of a review: the model's findings placed on the diff, repeats of findings posted
//! before dropped (by fingerprint), and one review posted with `post_review`, carrying the
//! review's hidden marker so that a re-run finds it instead of posting a second one.

use std::collections::HashSet;
use std::path::Path;

use kodiai_github::diff::anchor::{Placement, Unplaced, place};
use kodiai_github::diff::{Diff, Side};
use kodiai_github::rest::{NewReview, NewReviewComment};
use kodiai_github::review::{PostedReview, post_review};

use crate::github_tools::review::{fingerprint, side_text};
use crate::github_tools::{Finding, GithubScope};

/// The hidden marker of the review of `repository#number` at `head_sha` (SPEC §7).
pub(crate) fn review_marker(repository: &str, number: u64, head_sha: &str) -> String {
    format!(
        "<!-- kodiai:review:{}#{number}@{head_sha} -->",
        repository.to_lowercase()
    )
}

/// The marker of a review someone asked for in a mention: one more review of its head, keyed
/// by the mention's delivery as well, so that asking again reviews again while a re-run of one
/// request still finds the review it posted.
pub(crate) fn requested_review_marker(
    repository: &str,
    number: u64,
    head_sha: &str,
    delivery_id: &str,
) -> String {
    format!(
        "<!-- kodiai:review:{}#{number}@{head_sha}:requested:{delivery_id} -->",
        repository.to_lowercase()
    )
}

/// The marker of the comment a failed review leaves (one per pull request and head).
pub(crate) fn failure_marker(repository: &str, number: u64, head_sha: &str) -> String {
    format!(
        "<!-- kodiai:review-failed:{}#{number}@{head_sha} -->",
        repository.to_lowercase()
    )
}

/// A review kodiai already posted for this head: one whose body carries `marker`, or, for a
/// clean pull request's APPROVE (which has no body), an approval of `head_sha` by kodiai
/// (`approval_counts`; a requested review's APPROVE carries its marker, so an earlier approval
/// of the head is not it).
pub(crate) async fn find_posted(
    scope: &GithubScope,
    marker: &str,
    head_sha: &str,
    approval_counts: bool,
) -> Result<Option<u64>, kodiai_github::client::Error> {
    let reviews = scope
        .client
        .list_reviews(&scope.owner, &scope.repo, scope.number)
        .await?;
    let ours = |login: &str| {
        let login = login.to_lowercase();
        scope
            .own_handles
            .iter()
            .any(|h| h.to_lowercase() == login || format!("{}[bot]", h.to_lowercase()) == login)
    };
    Ok(reviews
        .into_iter()
        .find(|r| {
            r.state != "PENDING"
                && (r.body.as_deref().is_some_and(|b| b.contains(marker))
                    || (approval_counts
                        && r.state == "APPROVED"
                        && r.body.as_deref().is_none_or(|b| b.trim().is_empty())
                        && r.commit_id.as_deref() == Some(head_sha)
                        && r.user.as_ref().is_some_and(|u| ours(&u.login))))
        })
        .map(|r| r.id))
}

/// A finding placed on the diff, with its fingerprint.
#[derive(Debug, Clone)]
pub(crate) struct Placed {
    pub placement: Placement,
    pub fingerprint: String,
}

/// What is left to post after placing and filtering.
#[derive(Debug, Clone, Default)]
pub(crate) struct Prepared {
    pub comments: Vec<(NewReviewComment, String)>,
    pub unplaced: Vec<(Unplaced, String)>,
    pub moved: usize,
    /// Findings dropped because an earlier review of the pull request posted them.
    pub repeats: usize,
}

/// Places `findings` on `diff` and drops those whose fingerprint is in `posted` (or repeats
/// one of this review). `root` is the checkout the anchored code is read from when the diff
/// does not show it.
pub(crate) fn prepare(
    diff: &Diff,
    findings: &[Finding],
    posted: &HashSet<String>,
    root: Option<&Path>,
) -> Prepared {
    let mut out = Prepared::default();
    let mut seen = HashSet::new();
    for finding in findings {
        let placed = place_one(diff, finding, root);
        if posted.contains(&placed.fingerprint) || !seen.insert(placed.fingerprint.clone()) {
            out.repeats += 1;
            continue;
        }
        match placed.placement {
            Placement::Exact(c) => out.comments.push((c, placed.fingerprint)),
            Placement::Moved { comment, .. } => {
                out.moved += 1;
                out.comments.push((comment, placed.fingerprint));
            }
            Placement::Summary(u) => out.unplaced.push((u, placed.fingerprint)),
        }
    }
    out
}

fn place_one(diff: &Diff, finding: &Finding, root: Option<&Path>) -> Placed {
    let proposed = &finding.proposed;
    let placement = place(diff, proposed);
    let (path, side, start, line) = match &placement {
        Placement::Exact(c) | Placement::Moved { comment: c, .. } => (
            c.path.clone(),
            Side::parse(&c.side).unwrap_or(Side::Right),
            c.start_line.unwrap_or(c.line),
            c.line,
        ),
        Placement::Summary(u) => (
            u.path.clone(),
            proposed.side,
            u.start_line.unwrap_or(u.line).min(u.line),
            u.line.max(u.start_line.unwrap_or(u.line)),
        ),
    };
    let code = anchored_code(diff, root, &path, side, start, line);
    Placed {
        fingerprint: fingerprint(finding.rule.as_deref(), &proposed.body, &path, &code),
        placement,
    }
}

/// The text of lines `start..=end` of `side` of `path`: from the diff where it shows them, else
/// (new side) from the checkout.
fn anchored_code(
    diff: &Diff,
    root: Option<&Path>,
    path: &str,
    side: Side,
    start: u64,
    end: u64,
) -> String {
    let file = diff.file(path);
    let from_diff: Option<Vec<&str>> = file.and_then(|f| {
        (start..=end.min(start + 200))
            .map(|n| side_text(f, side, n))
            .collect()
    });
    if let Some(lines) = from_diff {
        return lines.join("\n");
    }
    if side == Side::Right
        && let Some(root) = root
        && !path.split('/').any(|part| part == "..")
        && let Ok(text) = std::fs::read_to_string(root.join(path))
    {
        let (skip, take) = (
            usize::try_from(start.saturating_sub(1)).unwrap_or(usize::MAX),
            usize::try_from(end.saturating_sub(start) + 1).unwrap_or(0),
        );
        return text
            .lines()
            .skip(skip)
            .take(take.min(200))
            .collect::<Vec<_>>()
            .join("\n");
    }
    String::new()
}

/// Posts the one review: `body` (gated, under the marker) with the inline comments (gated) and
/// the unplaced ones in its summary section.
pub(crate) async fn post(
    scope: &GithubScope,
    head_sha: &str,
    event: &str,
    body: Option<String>,
    prepared: &Prepared,
) -> Result<PostedReview, kodiai_github::client::Error> {
    let comments = prepared
        .comments
        .iter()
        .map(|(c, _)| NewReviewComment {
            body: scope.gate(&c.body),
            ..c.clone()
        })
        .collect();
    let unplaced: Vec<Unplaced> = prepared
        .unplaced
        .iter()
        .map(|(u, _)| Unplaced {
            body: scope.gate(&u.body),
            ..u.clone()
        })
        .collect();
    let review = NewReview {
        commit_id: head_sha.to_owned(),
        body,
        event: event.to_owned(),
        comments,
    };
    post_review(
        &scope.client,
        &scope.owner,
        &scope.repo,
        scope.number,
        review,
        &unplaced,
    )
    .await
}
