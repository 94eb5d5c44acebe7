//! The outgoing gate at the client: whatever a job hands a write method, a planted token never
//! reaches GitHub (asserted over every request the fake recorded), and kodiai's own handles
//! arrive neutralized.

use kodiai_github::rest::{NewReview, NewReviewComment};
use kodiai_test_support::github::FakeGithub;
use serde_json::json;

use super::*;

/// A classic-token-shaped string built at run time (never committed as one literal).
fn planted_token() -> String {
    let mut rng = fastrand::Rng::with_seed(11);
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let tail: String = (0..34)
        .map(|_| alphabet[rng.usize(..alphabet.len())] as char)
        .collect();
    format!("gh{}_A1{tail}", "p")
}

fn everything_sent(fake: &FakeGithub) -> String {
    fake.requests()
        .iter()
        .map(|r| format!("{} {} {}\n", r.method, r.path, r.body))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_planted_token_never_reaches_github_on_any_write() {
    let fake = FakeGithub::start().await;
    fake.add_pull("o/r", 9, json!({"title": "t"}));
    fake.set_pull_files("o/r", 9, vec![json!({"filename": "src/a.rs"})]);
    let client = app_client(&fake, options(&fake))
        .with_own_handles(["kodiai[bot]", "@kodiai"])
        .installation(Some(INSTALLATION));
    let token = planted_token();
    let leak = format!("Here is what I found: {token}\n\n<!-- kodiai:mention:o/r#9 -->");

    let comment = client
        .create_issue_comment("o", "r", 9, &leak)
        .await
        .unwrap();
    assert!(comment.body.contains("rotate"), "{}", comment.body);
    assert!(comment.body.contains("<!-- kodiai:mention:o/r#9 -->"));
    client
        .update_issue_comment("o", "r", comment.id, &format!("still {token}"))
        .await
        .unwrap();
    let pull = client.get_pull("o", "r", 9).await.unwrap();
    client
        .create_review(
            "o",
            "r",
            9,
            &NewReview {
                commit_id: pull.head.sha,
                body: Some(format!("summary {token}")),
                event: "COMMENT".into(),
                comments: vec![
                    NewReviewComment {
                        path: "src/a.rs".into(),
                        body: format!("```suggestion\nlet t = \"{token}\";\n```"),
                        line: 1,
                        side: "RIGHT".into(),
                        start_line: None,
                        start_side: None,
                    },
                    NewReviewComment {
                        path: "src/a.rs".into(),
                        body: "fine, @kodiai".into(),
                        line: 2,
                        side: "RIGHT".into(),
                        start_line: None,
                        start_side: None,
                    },
                ],
            },
        )
        .await
        .unwrap();
    let thread = fake.review_comments("o/r", 9)[0]["id"].as_u64().unwrap();
    client
        .reply_to_review_comment("o", "r", 9, thread, &format!("reply {token}"))
        .await
        .unwrap();

    let sent = everything_sent(&fake);
    assert!(!sent.contains(&token), "{sent}");
    assert!(
        !sent.contains(&token[4..20]),
        "a part of the token left: {sent}"
    );
    let review = &fake.reviews("o/r", 9)[0];
    assert!(review["body"].as_str().unwrap().contains("github_token"));
    assert!(
        review["comments"][0]["body"]
            .as_str()
            .unwrap()
            .contains("rotate")
    );
    assert_eq!(review["comments"][1]["body"], "fine, @\u{200d}kodiai");
}

#[tokio::test(start_paused = true)]
async fn own_handles_arrive_neutralized_and_other_text_unchanged() {
    let fake = FakeGithub::start().await;
    let client = app_client(&fake, options(&fake))
        .with_own_handles(["kodiai-dev", "kodiai-dev[bot]"])
        .installation(Some(INSTALLATION));
    let body = "Done, @alice. Ask @Kodiai-Dev again (`@kodiai-dev help`); I am @kodiai-dev[bot].";
    let posted = client
        .create_issue_comment("o", "r", 3, body)
        .await
        .unwrap();
    assert_eq!(
        posted.body,
        "Done, @alice. Ask @\u{200d}Kodiai-Dev again (`@kodiai-dev help`); I am @\u{200d}kodiai-dev[bot]."
    );
    // Without handles configured the gate still scans but changes no mention.
    let plain = installation(&fake)
        .create_issue_comment("o", "r", 3, "thanks @kodiai-dev")
        .await
        .unwrap();
    assert_eq!(plain.body, "thanks @kodiai-dev");
}
