//! A delivery acknowledged with 202 is durable: the real `kodiai serve` is killed with SIGKILL
//! right after the answer, and after a restart on the same SQLite file its job runs.

use std::path::Path;
use std::time::Duration;

use kodiai_bench::ServeProcess;
use kodiai_protocol::{DeliveryOutcome, Job, JobState, WebhookAck};
use kodiai_test_support::github::FakeGithub;
use kodiai_test_support::webhooks::{WEBHOOK_SECRET, delivery_id, fixture, signature};

const EXE: &str = env!("CARGO_BIN_EXE_kodiai");
const TOKEN: &str = "restart-test-admin-token";
/// Fails the test if the job has not run by then (a lost job, not a slow machine).
const DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test]
async fn a_job_acknowledged_before_a_sigkill_runs_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kodiai.db").display());
    let client = reqwest::Client::new();
    let body = serde_json::to_vec(&fixture("pull_request/opened.payload.json")).unwrap();
    let id = delivery_id();

    // No workers: the job cannot run before the kill.
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("KODIAI_ADMIN_TOKEN", TOKEN),
        ("KODIAI_WORKERS", "0"),
    ];
    let mut first = ServeProcess::start(Path::new(EXE), dir.path(), &env)
        .await
        .unwrap();
    let response = client
        .post(format!("http://{}/webhooks/github", first.addr))
        .header("content-type", "application/json")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", &id)
        .header("x-hub-signature-256", signature(WEBHOOK_SECRET, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let ack: WebhookAck = response.json().await.unwrap();
    // SIGKILL at once: no graceful shutdown, nothing flushed on the way out.
    first.kill().await;
    let DeliveryOutcome::Job { job_id } = ack.outcome else {
        panic!("{ack:?}");
    };

    // The review job reads the repository's `.kodiai.yml` from GitHub: a fake one, in
    // personal-token mode, whose file skips this author, so that the job ends at its gate
    // (the review itself is `reviews.rs`'s).
    let github = FakeGithub::start().await;
    github
        .accept_token("restart-test-github-token")
        .add_repo("Codertocat/Hello-World", "main")
        .put_file(
            "Codertocat/Hello-World",
            ".kodiai.yml",
            "review:\n  skip_authors: [Codertocat]\n",
        );
    let api_url = github.api_url();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("KODIAI_ADMIN_TOKEN", TOKEN),
        ("KODIAI_WORKERS", "1"),
        ("GITHUB_TOKEN", "restart-test-github-token"),
        ("GITHUB_API_URL", api_url.as_str()),
    ];
    let mut second = ServeProcess::start(Path::new(EXE), dir.path(), &env)
        .await
        .unwrap();
    let base = format!("http://{}/api/v1/jobs/{job_id}", second.addr);
    // The job's event stream ends once the job is final: reading it to the end is the wait.
    let events = tokio::time::timeout(DEADLINE, async {
        client
            .get(format!("{base}/events"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
    .await
    .expect("the job did not finish after the restart");
    assert!(events.contains("event: finished"), "{events}");
    let job: Job = client
        .get(&base)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(job.delivery_id.as_deref(), Some(id.as_str()));
    let result = job.result.unwrap();
    assert_eq!(result["pull_number"], 2);
    assert_eq!(result["decision"], "skipped", "{result}");
    assert!(
        result["reason"].as_str().unwrap().contains("skip_authors"),
        "the gate ran with the repository's file: {result}"
    );
    second.kill().await;
}
