//! Posting a review so that it is never lost and never posted twice: [`post_review`].
//!
//! GitHub creates a review with all its inline comments or not at all: one comment on a line it
//! will not resolve ("Pull request review thread line must be part of the diff", "… start line
//! must be part of the same hunk as the line") fails the whole `POST /pulls/{n}/reviews` with a
//! 422 that does not say which comment. [`crate::diff::anchor`] checks every anchor first, so a
//! 422 means the diff we checked against and GitHub's disagree (a push in between, a patch GitHub
//! truncated); it must still not cost the review.
//!
//! On a 422 the offending comments are found by bisection over **pending reviews**: a review
//! created without `event` is PENDING, visible only to its author, and validated exactly like a
//! submitted one; it is deleted (`DELETE /pulls/{n}/reviews/{id}`) as soon as it was accepted.
//! This is how qodo-ai/pr-agent verifies comments after a 422 (one pending review per comment);
//! bisection needs about `k·log₂(n)` probes for `k` bad comments among `n` instead of `n`. GitHub
//! has no dry run, and posting comments one at a time as visible ones would notify people.
//! Nothing visible is created while bisecting; then the one visible review is posted without the
//! rejected comments, which go into its body's summary with their `path:line`.
//!
//! Invariants: at most one visible review per call (the only visible POSTs are the first one,
//! which GitHub refused whole, and the final one); GitHub allows one pending review per author
//! and pull request, so probes run one after another, each deleted before the next; probes carry
//! [`PROBE_MARKER`] so that one left behind by a crash is recognised and deleted by the next run
//! (never a person's own pending review, in personal-token mode). 5xx answers are retried inside
//! the client; any other error ends the call with nothing visible posted.

use reqwest::Method;
use serde::Deserialize;

use crate::client::{Error, InstallationClient, Result, body};
use crate::diff::anchor::{SummaryReason, Unplaced, append_section, summary_section};
use crate::rest::{NewReview, NewReviewComment, Review};

/// The body of a pending review made to test comments, so that one left over is known as ours.
pub const PROBE_MARKER: &str = "<!-- kodiai:review-probe -->";

/// The most pending reviews one post makes. With more bad comments than the bisection can
/// isolate within this, the comments still in question go to the summary.
pub const MAX_PROBES: usize = 32;

const REVIEWS: &str = "/repos/{owner}/{repo}/pulls/{number}/reviews";
const REVIEW: &str = "/repos/{owner}/{repo}/pulls/{number}/reviews/{review_id}";

/// A review that was posted.
#[derive(Debug, Clone)]
pub struct PostedReview {
    pub review: Review,
    /// The inline comments GitHub took.
    pub posted: Vec<NewReviewComment>,
    /// The inline comments GitHub refused; they are in the body's summary section.
    pub dropped: Vec<NewReviewComment>,
    /// Pending reviews made to find `dropped`.
    pub probes: usize,
}

/// Posts `review` as one review on pull request `number`, with `unplaced` (comments that
/// [`crate::diff::anchor::plan`] sent to the summary) listed in a summary section after its body.
/// On a 422 the comments GitHub refuses are found, moved to the summary, and the review is posted
/// without them (the module comment says how).
pub async fn post_review(
    client: &InstallationClient,
    owner: &str,
    repo: &str,
    number: u64,
    review: NewReview,
    unplaced: &[Unplaced],
) -> Result<PostedReview> {
    let pull = Pull {
        client,
        owner,
        repo,
        number,
        number_text: number.to_string(),
    };
    let first = NewReview {
        body: append_section(review.body.as_deref(), &summary_section(unplaced)),
        ..review.clone()
    };
    match client.create_review(owner, repo, number, &first).await {
        Ok(posted) => {
            return Ok(PostedReview {
                review: posted,
                posted: review.comments,
                dropped: Vec::new(),
                probes: 0,
            });
        }
        Err(e) if is_unprocessable(&e) && !review.comments.is_empty() => {
            tracing::warn!(
                comments = review.comments.len(),
                error = %e,
                "GitHub refused the review; looking for the comments it cannot place"
            );
        }
        Err(e) => return Err(e),
    }

    // A probe a crashed run left behind blocks every new one: delete it, and try once more.
    if pull.delete_stale_probes().await? > 0 {
        match client.create_review(owner, repo, number, &first).await {
            Ok(posted) => {
                return Ok(PostedReview {
                    review: posted,
                    posted: review.comments,
                    dropped: Vec::new(),
                    probes: 0,
                });
            }
            Err(e) if is_unprocessable(&e) => {}
            Err(e) => return Err(e),
        }
    }

    let mut bisection = Bisection {
        pull: &pull,
        commit_id: &review.commit_id,
        comments: &review.comments,
        probes: 0,
    };
    let rejected = bisection.rejected().await?;
    let probes = bisection.probes;
    tracing::info!(
        rejected = rejected.len(),
        comments = review.comments.len(),
        probes,
        "comments GitHub refuses go to the review summary"
    );
    // Every comment passes on its own but not all together (or GitHub changed its answer):
    // the review goes out with all of them in the summary.
    let rejected = if rejected.is_empty() {
        (0..review.comments.len()).collect()
    } else {
        rejected
    };
    let (kept, dropped) = split(review.comments.clone(), &rejected);
    match post_without(&pull, &review, unplaced, kept.clone(), &dropped).await {
        Ok(posted) => Ok(PostedReview {
            review: posted,
            posted: kept,
            dropped,
            probes,
        }),
        Err(e) if is_unprocessable(&e) && !kept.is_empty() => {
            let mut dropped = dropped;
            dropped.extend(kept);
            let posted = post_without(&pull, &review, unplaced, Vec::new(), &dropped).await?;
            Ok(PostedReview {
                review: posted,
                posted: Vec::new(),
                dropped,
                probes,
            })
        }
        Err(e) => Err(e),
    }
}

/// Posts `review` with only `kept` inline, `unplaced` and `dropped` in the summary.
async fn post_without(
    pull: &Pull<'_>,
    review: &NewReview,
    unplaced: &[Unplaced],
    kept: Vec<NewReviewComment>,
    dropped: &[NewReviewComment],
) -> Result<Review> {
    let mut summary = unplaced.to_vec();
    summary.extend(
        dropped
            .iter()
            .map(|c| Unplaced::from_comment(c, SummaryReason::RejectedByGithub)),
    );
    let last = NewReview {
        commit_id: review.commit_id.clone(),
        body: append_section(review.body.as_deref(), &summary_section(&summary)),
        event: review.event.clone(),
        comments: kept,
    };
    pull.client
        .create_review(pull.owner, pull.repo, pull.number, &last)
        .await
}

/// `comments` split into those not at the `rejected` indices (sorted) and those at them.
fn split(
    comments: Vec<NewReviewComment>,
    rejected: &[usize],
) -> (Vec<NewReviewComment>, Vec<NewReviewComment>) {
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for (i, c) in comments.into_iter().enumerate() {
        if rejected.binary_search(&i).is_ok() {
            dropped.push(c);
        } else {
            kept.push(c);
        }
    }
    (kept, dropped)
}

fn is_unprocessable(e: &Error) -> bool {
    e.status() == Some(422)
}

/// One pull request's review endpoints.
struct Pull<'a> {
    client: &'a InstallationClient,
    owner: &'a str,
    repo: &'a str,
    number: u64,
    /// `number` as a path segment.
    number_text: String,
}

#[derive(Debug, Deserialize)]
struct ListedReview {
    id: u64,
    #[serde(default)]
    state: String,
    #[serde(default)]
    body: Option<String>,
}

impl Pull<'_> {
    fn segments<'s>(&'s self, tail: &[&'s str]) -> Vec<&'s str> {
        let mut segments = vec!["repos", self.owner, self.repo, "pulls", &self.number_text];
        segments.extend_from_slice(tail);
        segments
    }

    /// A pending review with `comments`: `Some(id)` when GitHub accepts them, `None` on a 422.
    async fn create_pending(
        &self,
        commit_id: &str,
        comments: &[&NewReviewComment],
    ) -> Result<Option<u64>> {
        let mut call = self
            .client
            .call(Method::POST, REVIEWS, &self.segments(&["reviews"]));
        // Probes leave kodiai too: their comment bodies pass the same gate as the review's.
        let comments: Vec<NewReviewComment> = comments
            .iter()
            .map(|c| NewReviewComment {
                body: self.client.gate(&c.body),
                ..(*c).clone()
            })
            .collect();
        // No `event`: the review stays PENDING, seen by nobody but its author.
        call.body = body(&serde_json::json!({
            "commit_id": commit_id,
            "body": PROBE_MARKER,
            "comments": comments,
        }));
        match self.client.request::<Review>(call).await {
            Ok(review) => Ok(Some(review.id)),
            Err(e) if is_unprocessable(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn delete_pending(&self, review_id: u64) -> Result<()> {
        let id = review_id.to_string();
        let mut call = self
            .client
            .call(Method::DELETE, REVIEW, &self.segments(&["reviews", &id]));
        // Deleting our own invisible draft creates nothing; it does not wait for the governor.
        call.creates_content = false;
        self.client.send(call).await.map(drop)
    }

    /// Deletes pending reviews that carry [`PROBE_MARKER`]; returns how many.
    async fn delete_stale_probes(&self) -> Result<usize> {
        let call = self
            .client
            .call(Method::GET, REVIEWS, &self.segments(&["reviews"]));
        let reviews: Vec<ListedReview> = self.client.paginate(call, 1000).await?;
        let mut deleted = 0;
        for review in reviews {
            if review.state == "PENDING"
                && review
                    .body
                    .as_deref()
                    .is_some_and(|b| b.contains(PROBE_MARKER))
            {
                self.delete_pending(review.id).await?;
                deleted += 1;
            }
        }
        if deleted > 0 {
            tracing::warn!(
                deleted,
                "deleted pending review probes left by an earlier run"
            );
        }
        Ok(deleted)
    }
}

/// What the bisection knows of a set of comments.
#[derive(Debug, Clone, Copy)]
enum Known {
    /// GitHub refused exactly this set.
    Fails,
    /// Its complement in a refused set passed, so it should fail.
    Inferred,
    Unknown,
}

/// The search for the comments GitHub refuses.
struct Bisection<'a> {
    pull: &'a Pull<'a>,
    commit_id: &'a str,
    comments: &'a [NewReviewComment],
    probes: usize,
}

impl Bisection<'_> {
    /// Whether GitHub accepts the comments at `indices` together (as a pending review, deleted
    /// at once).
    async fn accepts(&mut self, indices: &[usize]) -> Result<bool> {
        self.probes += 1;
        let comments: Vec<&NewReviewComment> = indices.iter().map(|&i| &self.comments[i]).collect();
        match self.pull.create_pending(self.commit_id, &comments).await? {
            Some(id) => {
                self.pull.delete_pending(id).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The indices (sorted) of the comments GitHub refuses, knowing that it refuses all of them
    /// together. A failing set is split in halves; when the first half passes, the second is
    /// taken to fail without asking (it did, unless the failure was not one comment's), and a
    /// single comment is dropped only after GitHub refused it on its own.
    async fn rejected(&mut self) -> Result<Vec<usize>> {
        let mut rejected = Vec::new();
        let mut stack: Vec<(Vec<usize>, Known)> =
            vec![((0..self.comments.len()).collect(), Known::Fails)];
        while let Some((set, known)) = stack.pop() {
            if set.is_empty() {
                continue;
            }
            let ask = match known {
                Known::Fails => false,
                Known::Inferred => set.len() == 1,
                Known::Unknown => true,
            };
            if ask {
                if self.probes >= MAX_PROBES {
                    rejected.extend(set);
                    continue;
                }
                if self.accepts(&set).await? {
                    continue;
                }
            }
            if set.len() == 1 || self.probes >= MAX_PROBES {
                rejected.extend(set);
                continue;
            }
            let (left, right) = set.split_at(set.len() / 2);
            let (left, right) = (left.to_vec(), right.to_vec());
            if self.accepts(&left).await? {
                stack.push((right, Known::Inferred));
            } else {
                stack.push((right, Known::Unknown));
                stack.push((left, Known::Fails));
            }
        }
        rejected.sort_unstable();
        Ok(rejected)
    }
}
