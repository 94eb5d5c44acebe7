use kodiai_github::rest::{NewReview, NewReviewComment, ReactionTarget};
use kodiai_test_support::github::FakeGithub;
use serde_json::json;

use super::*;

#[tokio::test(start_paused = true)]
async fn comments_are_created_updated_and_listed_across_pages() {
    let fake = FakeGithub::start().await;
    for i in 0..130 {
        fake.add_issue_comment("o/r", 3, "someone", &format!("c{i}"));
    }
    let client = installation(&fake);
    let mine = client
        .create_issue_comment("o", "r", 3, "working on it")
        .await
        .unwrap();
    assert_eq!(mine.user.as_ref().unwrap().login, "kodiai[bot]");
    let updated = client
        .update_issue_comment("o", "r", mine.id, "done")
        .await
        .unwrap();
    assert_eq!(updated.body, "done");
    let all = client.list_issue_comments("o", "r", 3).await.unwrap();
    assert_eq!(all.len(), 131);
    assert_eq!(all[0].body, "c0");
    assert_eq!(all[130].body, "done");
    let pages = fake.requests_to("GET", "/repos/o/r/issues/3/comments");
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0].query_param("per_page").as_deref(), Some("100"));
    assert_eq!(pages[1].query_param("page").as_deref(), Some("2"));
}

#[tokio::test(start_paused = true)]
async fn pull_requests_files_commits_reviews_and_reactions() {
    let fake = FakeGithub::start().await;
    fake.add_pull("o/r", 9, json!({"title": "Add parser", "draft": true}));
    let files: Vec<_> = (0..250)
        .map(|i| json!({"filename": format!("src/f{i}.rs"), "status": "modified", "additions": 1, "deletions": 0, "patch": "@@ -1 +1 @@\n-a\n+b"}))
        .collect();
    fake.set_pull_files("o/r", 9, files);
    fake.set_pull_commits(
        "o/r",
        9,
        vec![json!({"sha": "abc", "commit": {"message": "parser"}})],
    );
    let client = installation(&fake);

    let pull = client.get_pull("o", "r", 9).await.unwrap();
    assert_eq!(
        (pull.title.as_str(), pull.draft, pull.base.name.as_str()),
        ("Add parser", true, "main")
    );
    let files = client.list_pull_files("o", "r", 9).await.unwrap();
    assert_eq!(files.len(), 250);
    assert_eq!(files[249].filename, "src/f249.rs");
    assert_eq!(fake.requests_to("GET", "/repos/o/r/pulls/9/files").len(), 3);
    let commits = client.list_pull_commits("o", "r", 9).await.unwrap();
    assert_eq!(commits[0].commit.message, "parser");

    let review = client
        .create_review(
            "o",
            "r",
            9,
            &NewReview {
                commit_id: pull.head.sha.clone(),
                body: Some("Two findings.".into()),
                event: "COMMENT".into(),
                comments: vec![
                    NewReviewComment {
                        path: "src/f1.rs".into(),
                        body: "one".into(),
                        line: 1,
                        side: "RIGHT".into(),
                        start_line: None,
                        start_side: None,
                    },
                    NewReviewComment {
                        path: "src/f2.rs".into(),
                        body: "```suggestion\nb\n```".into(),
                        line: 3,
                        side: "RIGHT".into(),
                        start_line: Some(1),
                        start_side: Some("RIGHT".into()),
                    },
                ],
            },
        )
        .await
        .unwrap();
    assert_eq!(review.state, "COMMENTED");
    let posted = fake.reviews("o/r", 9);
    assert_eq!(posted[0]["comments"][1]["start_line"], 1);
    assert_eq!(posted[0]["commit_id"], pull.head.sha.as_str());
    let threads = fake.review_comments("o/r", 9);
    assert_eq!(threads.len(), 2);
    let thread_id = threads[0]["id"].as_u64().unwrap();
    let reply = client
        .reply_to_review_comment("o", "r", 9, thread_id, "fixed")
        .await
        .unwrap();
    assert_eq!(reply.body, "fixed");

    let comment = fake.add_issue_comment("o/r", 9, "alice", "@kodiai look");
    client
        .create_reaction("o", "r", ReactionTarget::IssueComment(comment), "eyes")
        .await
        .unwrap();
    client
        .create_reaction("o", "r", ReactionTarget::ReviewComment(thread_id), "+1")
        .await
        .unwrap();
    client
        .create_reaction("o", "r", ReactionTarget::Issue(9), "rocket")
        .await
        .unwrap();
    assert_eq!(
        fake.reactions("o/r"),
        [
            (format!("issues/comments/{comment}"), "eyes".to_owned()),
            (format!("pulls/comments/{thread_id}"), "+1".to_owned()),
            ("issues/9".to_owned(), "rocket".to_owned()),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_review_on_a_file_outside_the_pull_request_is_a_422() {
    let fake = FakeGithub::start().await;
    fake.add_pull("o/r", 2, json!({}));
    fake.set_pull_files("o/r", 2, vec![json!({"filename": "a.rs"})]);
    let err = installation(&fake)
        .create_review(
            "o",
            "r",
            2,
            &NewReview {
                commit_id: "x".into(),
                body: None,
                event: "COMMENT".into(),
                comments: vec![NewReviewComment {
                    path: "b.rs".into(),
                    body: "?".into(),
                    line: 1,
                    side: "RIGHT".into(),
                    start_line: None,
                    start_side: None,
                }],
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(422));
    assert!(fake.reviews("o/r", 2).is_empty());
}

#[tokio::test(start_paused = true)]
async fn ci_status_and_graphql() {
    let fake = FakeGithub::start().await;
    fake.set_check_runs(
        "o/r",
        "abc",
        vec![json!({"id": 1, "name": "test", "status": "completed", "conclusion": "failure"})],
    );
    fake.set_statuses(
        "o/r",
        "abc",
        vec![json!({"context": "ci/lint", "state": "success"})],
    );
    let client = installation(&fake);
    let runs = client.list_check_runs("o", "r", "abc").await.unwrap();
    assert_eq!(runs.check_runs[0].conclusion.as_deref(), Some("failure"));
    let status = client.combined_status("o", "r", "abc").await.unwrap();
    assert_eq!(
        (status.state.as_str(), status.statuses[0].context.as_str()),
        ("success", "ci/lint")
    );

    fake.push_graphql(json!({"data": {"repository": {"pullRequest": {"closingIssuesReferences": {"nodes": [{"number": 4}]}}}}}));
    let data: serde_json::Value = client
        .graphql("query($n: Int!) { repository(owner: \"o\", name: \"r\") { pullRequest(number: $n) { closingIssuesReferences(first: 10) { nodes { number } } } } }", json!({"n": 9}))
        .await
        .unwrap();
    assert_eq!(
        data["repository"]["pullRequest"]["closingIssuesReferences"]["nodes"][0]["number"],
        4
    );
    let sent = &fake.requests_to("POST", "/graphql")[0];
    assert_eq!(sent.body["variables"]["n"], 9);
    fake.push_graphql(
        json!({"data": null, "errors": [{"message": "Could not resolve to a Repository"}]}),
    );
    let err = client
        .graphql::<serde_json::Value>("query { viewer { login } }", json!({}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Could not resolve"), "{err}");
}
