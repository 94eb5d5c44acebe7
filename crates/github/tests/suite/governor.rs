use std::time::Duration;

use kodiai_test_support::github::FakeGithub;

use super::*;

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test(start_paused = true)]
async fn a_burst_of_200_comments_is_spaced_under_80_a_minute() {
    let fake = FakeGithub::start().await;
    let client = installation(&fake);
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let c = client.clone();
        tasks.spawn(async move {
            c.create_issue_comment("o", "r", 1, &format!("comment {i}"))
                .await
        });
    }
    // A read in the middle of the burst is not held back by it.
    tokio::task::yield_now().await;
    client.get_repository("o", "r").await.unwrap();
    let read_at = fake.requests_to("GET", "/repos/o/r")[0].at;
    assert!(read_at - start < Duration::from_secs(1));

    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(fake.issue_comments("o/r", 1).len(), 200, "none failed");
    let mut at: Vec<Duration> = fake
        .requests_to("POST", "/repos/o/r/issues/1/comments")
        .iter()
        .map(|r| r.at - start)
        .collect();
    at.sort();
    assert_eq!(at.len(), 200);
    for (i, t) in at.iter().enumerate() {
        let in_window = at[i..].iter().filter(|u| **u < *t + MINUTE).count();
        assert!(
            in_window <= 80,
            "{in_window} comments in the minute from {t:?}"
        );
    }
    assert!(at[79] < Duration::from_secs(1), "the first 80 go at once");
    assert!(
        at[80] >= MINUTE,
        "the 81st waits for the window: {:?}",
        at[80]
    );
    assert!(
        at[160] >= 2 * MINUTE,
        "the 161st two minutes in: {:?}",
        at[160]
    );
}

#[tokio::test(start_paused = true)]
async fn installations_are_governed_separately() {
    let fake = FakeGithub::start().await;
    let mut o = options(&fake);
    o.governor.per_minute = 3;
    let client = app_client(&fake, o);
    let start = tokio::time::Instant::now();
    for installation in [1, 2] {
        for _ in 0..3 {
            client
                .installation(Some(installation))
                .create_issue_comment("o", "r", installation, "x")
                .await
                .unwrap();
        }
    }
    assert!(
        tokio::time::Instant::now() - start < Duration::from_secs(1),
        "no waits"
    );
    client
        .installation(Some(1))
        .create_issue_comment("o", "r", 1, "x")
        .await
        .unwrap();
    assert!(
        tokio::time::Instant::now() - start >= MINUTE,
        "the fourth of installation 1 waited"
    );
}
