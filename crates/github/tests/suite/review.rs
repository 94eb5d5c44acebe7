//! `post_review` against the fake GitHub: one visible review whatever GitHub refuses, the
//! refused comments in its summary, and no pending review left behind.

use kodiai_github::diff::anchor::{SUMMARY_HEADING, SummaryReason, Unplaced};
use kodiai_github::rest::{NewReview, NewReviewComment};
use kodiai_github::review::{PROBE_MARKER, post_review};
use kodiai_test_support::github::{FakeGithub, Scripted};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::*;

const REVIEWS: &str = "/repos/o/r/pulls/5/reviews";
const HEAD: &str = "1111111111111111111111111111111111111111";

async fn fake_with_pull() -> FakeGithub {
    let fake = FakeGithub::start().await;
    fake.add_pull("o/r", 5, json!({}));
    fake
}

fn comment(path: &str, line: u64, body: &str) -> NewReviewComment {
    NewReviewComment {
        path: path.to_owned(),
        body: body.to_owned(),
        line,
        side: "RIGHT".to_owned(),
        start_line: None,
        start_side: None,
    }
}

fn review(comments: Vec<NewReviewComment>) -> NewReview {
    NewReview {
        commit_id: HEAD.to_owned(),
        body: Some("Two things to look at.\n\n<!-- kodiai:review:o/r#5 -->".to_owned()),
        event: "COMMENT".to_owned(),
        comments,
    }
}

fn five_comments() -> Vec<NewReviewComment> {
    (1..=5)
        .map(|i| comment("src/a.rs", i * 10, &format!("finding {i}")))
        .collect()
}

/// (path, line, body) of a review's inline comments as the fake stored them.
fn inline(review: &Value) -> Vec<(String, u64, String)> {
    review["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_owned(),
                c["line"].as_u64().unwrap(),
                c["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// POSTs to the reviews endpoint that were to be visible (they have an `event`).
fn visible_posts(fake: &FakeGithub) -> usize {
    fake.requests_to("POST", REVIEWS)
        .iter()
        .filter(|r| r.body.get("event").is_some())
        .count()
}

#[tokio::test(start_paused = true)]
async fn all_good_comments_are_one_post() {
    let fake = fake_with_pull().await;
    let client = installation(&fake);
    let unplaced = [Unplaced {
        path: "src/b.rs".into(),
        start_line: None,
        line: 99,
        body: "far from the diff".into(),
        reason: SummaryReason::OutsideDiff,
    }];
    let posted = post_review(&client, "o", "r", 5, review(five_comments()), &unplaced)
        .await
        .unwrap();
    assert_eq!(
        (posted.posted.len(), posted.dropped.len(), posted.probes),
        (5, 0, 0)
    );
    assert_eq!(fake.requests_to("POST", REVIEWS).len(), 1);
    let reviews = fake.reviews("o/r", 5);
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0]["id"], json!(posted.review.id));
    assert_eq!(inline(&reviews[0]).len(), 5);
    let body = reviews[0]["body"].as_str().unwrap();
    assert!(body.starts_with("Two things to look at."), "{body}");
    assert!(body.contains("<!-- kodiai:review:o/r#5 -->"), "{body}");
    assert!(body.contains(SUMMARY_HEADING), "{body}");
    assert!(
        body.contains("**`src/b.rs:99`**\n\nfar from the diff"),
        "{body}"
    );
}

#[tokio::test(start_paused = true)]
async fn one_bad_comment_among_five_goes_to_the_summary() {
    let fake = fake_with_pull().await;
    fake.reject_review_line("o/r", "src/a.rs", 30);
    let client = installation(&fake);
    let posted = post_review(&client, "o", "r", 5, review(five_comments()), &[])
        .await
        .unwrap();

    let dropped: Vec<_> = posted.dropped.iter().map(|c| c.line).collect();
    assert_eq!(dropped, vec![30]);
    let kept: Vec<_> = posted.posted.iter().map(|c| c.line).collect();
    assert_eq!(kept, vec![10, 20, 40, 50]);

    let reviews = fake.reviews("o/r", 5);
    assert_eq!(
        reviews.len(),
        1,
        "one review, no pending one left: {reviews:?}"
    );
    assert_eq!(reviews[0]["state"], "COMMENTED");
    assert_eq!(reviews[0]["id"], json!(posted.review.id));
    let lines: Vec<_> = inline(&reviews[0]).into_iter().map(|c| c.1).collect();
    assert_eq!(lines, vec![10, 20, 40, 50]);
    let body = reviews[0]["body"].as_str().unwrap();
    assert!(body.contains("**`src/a.rs:30`**\n\nfinding 3"), "{body}");
    assert!(!body.contains("finding 1"), "{body}");
    // The only review comments left are the four posted ones (probe comments went with probes).
    assert_eq!(fake.review_comments("o/r", 5).len(), 4);

    // Two visible attempts (the refused one and the final one); probes were pending and deleted.
    assert_eq!(visible_posts(&fake), 2);
    let probes = fake.requests_to("POST", REVIEWS).len() - 2;
    assert_eq!(probes, posted.probes);
    assert!(
        probes <= 4,
        "bisection, not one probe per comment: {probes}"
    );
    let deletes = fake
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE" && r.path.starts_with("/repos/o/r/pulls/5/reviews/"))
        .count();
    let accepted = fake
        .requests_to("POST", REVIEWS)
        .iter()
        .filter(|r| r.body.get("event").is_none() && r.status == 200)
        .count();
    assert_eq!(deletes, accepted);
    assert!(
        fake.requests_to("POST", REVIEWS)
            .iter()
            .filter(|r| r.body.get("event").is_none())
            .all(|r| r.body["body"] == PROBE_MARKER)
    );
}

#[tokio::test(start_paused = true)]
async fn several_bad_comments_and_a_bad_range_start_are_all_found() {
    let fake = fake_with_pull().await;
    let mut comments: Vec<_> = (1..=8)
        .map(|i| comment("src/a.rs", i * 10, &format!("finding {i}")))
        .collect();
    comments[6].start_line = Some(65);
    comments[6].start_side = Some("RIGHT".into());
    fake.reject_review_line("o/r", "src/a.rs", 10);
    fake.reject_review_line("o/r", "src/a.rs", 65);
    let client = installation(&fake);
    let posted = post_review(&client, "o", "r", 5, review(comments), &[])
        .await
        .unwrap();
    let dropped: Vec<_> = posted.dropped.iter().map(|c| c.line).collect();
    assert_eq!(dropped, vec![10, 70]);
    let visible = fake.visible_reviews("o/r", 5);
    assert_eq!(visible.len(), 1);
    assert!(fake.pending_reviews("o/r", 5).is_empty());
    assert_eq!(inline(&visible[0]).len(), 6);
    let body = visible[0]["body"].as_str().unwrap();
    assert!(body.contains("**`src/a.rs:65-70`**"), "{body}");
    assert!(body.contains("**`src/a.rs:10`**"), "{body}");
}

#[tokio::test(start_paused = true)]
async fn a_server_error_is_retried_into_one_review() {
    let fake = fake_with_pull().await;
    fake.script(Scripted::new("POST", REVIEWS, 500));
    let client = installation(&fake);
    let posted = post_review(&client, "o", "r", 5, review(five_comments()), &[])
        .await
        .unwrap();
    assert_eq!(posted.posted.len(), 5);
    let statuses: Vec<_> = fake
        .requests_to("POST", REVIEWS)
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![500, 200]);
    assert_eq!(fake.reviews("o/r", 5).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_no_comment_explains_still_posts_the_review() {
    let fake = fake_with_pull().await;
    // GitHub refuses the whole review once, yet every comment passes as a probe.
    fake.script(Scripted::new("POST", REVIEWS, 422).json(json!({
        "message": "Unprocessable Entity",
        "errors": ["Pull request review thread start line must be part of the same hunk as the line."],
    })));
    let client = installation(&fake);
    let comments = vec![comment("src/a.rs", 1, "one"), comment("src/a.rs", 2, "two")];
    let posted = post_review(&client, "o", "r", 5, review(comments), &[])
        .await
        .unwrap();
    assert_eq!((posted.posted.len(), posted.dropped.len()), (0, 2));
    let visible = fake.visible_reviews("o/r", 5);
    assert_eq!(visible.len(), 1);
    assert!(inline(&visible[0]).is_empty());
    let body = visible[0]["body"].as_str().unwrap();
    assert!(body.contains("**`src/a.rs:1`**\n\none") && body.contains("**`src/a.rs:2`**\n\ntwo"));
    assert!(fake.pending_reviews("o/r", 5).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_probe_left_by_a_crash_is_deleted_first() {
    let fake = fake_with_pull().await;
    let client = installation(&fake);
    // A crashed run's probe (pending, with the marker); it makes the next pending review fail.
    let stale = client
        .request::<Value>({
            let mut call = client.call(
                reqwest::Method::POST,
                "/repos/{owner}/{repo}/pulls/{number}/reviews",
                &["repos", "o", "r", "pulls", "5", "reviews"],
            );
            call.body = Some(json!({"commit_id": HEAD, "body": PROBE_MARKER, "comments": []}));
            call
        })
        .await
        .unwrap();
    assert_eq!(fake.pending_reviews("o/r", 5).len(), 1);
    fake.script(Scripted::new("POST", REVIEWS, 422).json(json!({
        "message": "Unprocessable Entity", "errors": ["User can only have one pending review per pull request"],
    })));
    let posted = post_review(&client, "o", "r", 5, review(five_comments()), &[])
        .await
        .unwrap();
    assert_eq!((posted.posted.len(), posted.dropped.len()), (5, 0));
    assert!(fake.pending_reviews("o/r", 5).is_empty());
    assert_eq!(fake.visible_reviews("o/r", 5).len(), 1);
    let stale_path = format!("{REVIEWS}/{}", stale["id"]);
    assert_eq!(fake.requests_to("DELETE", &stale_path).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_refused_review_without_comments_is_an_error() {
    let fake = fake_with_pull().await;
    fake.script(Scripted::new("POST", REVIEWS, 422).json(json!({"message": "Validation Failed"})));
    let client = installation(&fake);
    let err = post_review(&client, "o", "r", 5, review(Vec::new()), &[])
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(422));
    assert_eq!(fake.requests_to("POST", REVIEWS).len(), 1);
    assert!(fake.reviews("o/r", 5).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_token_in_a_comment_never_leaves_in_a_probe_either() {
    let fake = fake_with_pull().await;
    fake.reject_review_line("o/r", "src/a.rs", 30);
    let client = installation(&fake);
    // Built at run time, so that no token-shaped string is committed.
    let token = format!("ghp_{}", "Zq8".repeat(12));
    let mut comments = five_comments();
    comments[1].body = format!("use {token} here");
    post_review(&client, "o", "r", 5, review(comments), &[])
        .await
        .unwrap();
    let probes = fake
        .requests_to("POST", REVIEWS)
        .into_iter()
        .filter(|r| r.body.get("event").is_none())
        .count();
    assert!(probes > 0, "the refusal made probes");
    for request in fake.requests() {
        assert!(
            !request.body.to_string().contains(&token),
            "{} {}: {}",
            request.method,
            request.path,
            request.body
        );
    }
}
