use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kodiai_github::client::Error;
use kodiai_test_support::github::{FakeGithub, Scripted};

use super::*;

const COMMENTS: &str = "/repos/o/r/issues/1/comments";

/// The gaps between the recorded attempts of `method path`, on tokio's clock.
fn gaps(fake: &FakeGithub, method: &str, path: &str) -> Vec<Duration> {
    let at: Vec<_> = fake
        .requests_to(method, path)
        .iter()
        .map(|r| r.at)
        .collect();
    at.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn a_secondary_limit_is_retried_after_its_retry_after() {
    let fake = FakeGithub::start().await;
    fake.script(Scripted::secondary_limit("POST", COMMENTS, 30));
    let client = installation(&fake);
    let comment = client
        .create_issue_comment("o", "r", 1, "hello")
        .await
        .unwrap();
    assert_eq!(comment.body, "hello");
    let attempts = fake.requests_to("POST", COMMENTS);
    assert_eq!(
        attempts.iter().map(|r| r.status).collect::<Vec<_>>(),
        [403, 201]
    );
    let gap = gaps(&fake, "POST", COMMENTS)[0];
    assert!(
        gap >= Duration::from_secs(30) && gap < Duration::from_secs(31),
        "{gap:?}"
    );
    assert_eq!(fake.issue_comments("o/r", 1).len(), 1, "posted once");
}

#[tokio::test(start_paused = true)]
async fn a_secondary_limit_without_retry_after_waits_a_minute() {
    let fake = FakeGithub::start().await;
    fake.script(
        Scripted::new("POST", COMMENTS, 403)
            .json(serde_json::json!({"message": "You have exceeded a secondary rate limit and have been temporarily blocked from content creation."})),
    );
    installation(&fake)
        .create_issue_comment("o", "r", 1, "x")
        .await
        .unwrap();
    assert!(gaps(&fake, "POST", COMMENTS)[0] >= Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn a_primary_limit_is_retried_after_its_reset_time() {
    let fake = FakeGithub::start().await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    fake.script(Scripted::primary_limit(
        "GET",
        "/repos/o/r/pulls/5",
        now + 45,
    ));
    fake.add_pull("o/r", 5, serde_json::json!({}));
    let pull = installation(&fake).get_pull("o", "r", 5).await.unwrap();
    assert_eq!(pull.number, 5);
    let gap = gaps(&fake, "GET", "/repos/o/r/pulls/5")[0];
    // Until the reset second has passed (the header has whole seconds).
    assert!(
        gap >= Duration::from_secs(44) && gap <= Duration::from_secs(47),
        "{gap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_429_is_retried_after_its_retry_after() {
    let fake = FakeGithub::start().await;
    fake.script(Scripted::new("GET", "/repos/o/r", 429).header("retry-after", "7"));
    pat_client(&fake, options(&fake))
        .get_repository("o", "r")
        .await
        .unwrap();
    let gap = gaps(&fake, "GET", "/repos/o/r")[0];
    assert!(
        gap >= Duration::from_secs(7) && gap < Duration::from_secs(8),
        "{gap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn server_errors_back_off_and_then_succeed() {
    let fake = FakeGithub::start().await;
    fake.script(Scripted::new("GET", "/repos/o/r", 502).times(2));
    pat_client(&fake, options(&fake))
        .get_repository("o", "r")
        .await
        .unwrap();
    let gaps = gaps(&fake, "GET", "/repos/o/r");
    assert_eq!(gaps.len(), 2);
    assert!(gaps[0] >= Duration::from_secs(1), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_secs(2), "doubled: {gaps:?}");
}

#[tokio::test(start_paused = true)]
async fn server_errors_give_up_after_the_retries_as_transient() {
    let fake = FakeGithub::start().await;
    fake.script(Scripted::new("GET", "/repos/o/r", 500).times(10));
    let mut o = options(&fake);
    o.max_retries = 2;
    let err = pat_client(&fake, o)
        .get_repository("o", "r")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert!(err.is_transient());
    assert_eq!(fake.requests_to("GET", "/repos/o/r").len(), 3);
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_not_retried() {
    let fake = FakeGithub::start().await;
    let client = pat_client(&fake, options(&fake));
    let err = client.get_pull("o", "r", 404).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert!(!err.is_transient());
    assert!(
        err.to_string()
            .contains("/repos/{owner}/{repo}/pulls/{number}"),
        "{err}"
    );
    fake.script(
        Scripted::new("POST", COMMENTS, 422)
            .json(serde_json::json!({"message": "Validation Failed"})),
    );
    let err = client
        .create_issue_comment("o", "r", 1, "x")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Validation Failed"), "{err}");
    assert_eq!(fake.requests_to("POST", COMMENTS).len(), 1);
    // A 403 that is not a rate limit is a permission problem: not retried either.
    fake.script(
        Scripted::new("GET", "/repos/o/r", 403)
            .json(serde_json::json!({"message": "Resource not accessible by integration"})),
    );
    let err = client.get_repository("o", "r").await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert_eq!(fake.requests_to("GET", "/repos/o/r").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_wait_longer_than_allowed_fails_at_once_as_rate_limited() {
    let fake = FakeGithub::start().await;
    fake.script(Scripted::secondary_limit("POST", COMMENTS, 3600));
    let err = installation(&fake)
        .create_issue_comment("o", "r", 1, "x")
        .await
        .unwrap_err();
    match &err {
        Error::RateLimited { retry_after, .. } => {
            assert_eq!(*retry_after, Duration::from_secs(3600))
        }
        other => panic!("{other:?}"),
    }
    assert!(err.is_transient());
    assert_eq!(fake.requests_to("POST", COMMENTS).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_github_is_a_transient_transport_error() {
    let fake = FakeGithub::start().await;
    let mut o = options(&fake);
    drop(fake);
    // Nothing listens there any more.
    o.max_retries = 1;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    o.api_url = url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let client = kodiai_github::client::GithubClient::personal_token(
        secrecy::SecretString::from("t".to_owned()),
        o,
    )
    .unwrap();
    let err = client
        .installation(None)
        .get_repository("o", "r")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test(start_paused = true)]
async fn a_read_that_times_out_is_tried_again_a_write_is_not() {
    let fake = FakeGithub::start().await;
    let mut o = options(&fake);
    o.timeout = Duration::from_secs(10);
    let client = pat_client(&fake, o);
    fake.script(Scripted::slow("GET", "/repos/o/r", Duration::from_secs(60)));
    client.get_repository("o", "r").await.unwrap();
    let attempts = fake.requests_to("GET", "/repos/o/r");
    assert_eq!(
        attempts.iter().map(|r| r.status).collect::<Vec<_>>(),
        [0, 200]
    );
    assert!(attempts[1].at - attempts[0].at >= Duration::from_secs(10));

    // A POST that timed out may have been applied: not repeated, a transport error.
    fake.script(Scripted::slow("POST", COMMENTS, Duration::from_secs(60)));
    let err = client
        .create_issue_comment("o", "r", 1, "x")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(fake.requests_to("POST", COMMENTS).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_graphql_rate_limit_is_waited_out_until_its_reset() {
    let fake = FakeGithub::start().await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    fake.script(
        Scripted::new("POST", "/graphql", 200)
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", &(now + 20).to_string())
            .header("x-ratelimit-resource", "graphql")
            .json(serde_json::json!({"errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded"}]})),
    );
    fake.push_graphql(serde_json::json!({"data": {"viewer": {"login": "kodiai"}}}));
    let data: serde_json::Value = installation(&fake)
        .graphql("query { viewer { login } }", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(data["viewer"]["login"], "kodiai");
    let gap = gaps(&fake, "POST", "/graphql")[0];
    assert!(
        gap >= Duration::from_secs(19) && gap <= Duration::from_secs(22),
        "{gap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn calls_are_counted_by_route_and_status_with_the_remaining_limit() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    // The test runtime is single-threaded, so a thread-local recorder sees every task.
    let _guard = metrics::set_default_local_recorder(&recorder);
    let fake = FakeGithub::start().await;
    fake.script(Scripted::secondary_limit("POST", COMMENTS, 5));
    let client = pat_client(&fake, options(&fake));
    client.create_issue_comment("o", "r", 1, "x").await.unwrap();
    let _ = client.get_pull("o", "r", 77).await;
    let text = handle.render();
    let has = |needle: &str| {
        text.lines()
            .any(|l| l.contains("github_requests_total") && l.contains(needle))
    };
    assert!(
        has(r#"route="/repos/{owner}/{repo}/issues/{number}/comments",status="403""#),
        "{text}"
    );
    assert!(
        has(r#"route="/repos/{owner}/{repo}/issues/{number}/comments",status="201""#),
        "{text}"
    );
    assert!(
        has(r#"route="/repos/{owner}/{repo}/pulls/{number}",status="404""#),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("github_rate_limit_remaining{resource=\"core\"} 4999")),
        "{text}"
    );
    assert!(text.contains("github_rate_limited_total"), "{text}");
    assert!(!text.contains(PAT), "no token in metrics");
}
