//! The review and mention jobs against the fake GitHub, through the real server and its
//! webhook: what ingress could not decide from the payload (the repository's `.kodiai.yml` from
//! the default branch, the sender's permission) is decided by the job, after the 202.

use crate::suite::harness::{TestApp, TestAppBuilder};
use kodiai_protocol::{Job, JobState};
use kodiai_test_support::github::FakeGithub;
use kodiai_test_support::webhooks::fixture;
use serde_json::{Value, json};

use super::common::{REPO, deliver_job as deliver, github_app, run_next_job};

async fn app(fake: &FakeGithub, builder: TestAppBuilder) -> Option<TestApp> {
    github_app(builder, fake).spawn().await
}

/// Runs the queued job with kodiai's own handlers for the app's configuration, as a worker
/// would, and returns it finished. (A mention that passes its gates goes on to the work, which
/// these tests give nothing to work with, no model and no repository: those are run with
/// [`run_next_job`], whatever their end.)
async fn run_job(app: &TestApp, job_id: &str) -> Job {
    let job = run_next_job(app, job_id).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    job
}

/// The permission a mention job's gate let its sender through with (its log line
/// "SENDER (PERMISSION) asked …"), if it did.
async fn gate_permission(app: &TestApp, job_id: &str) -> Option<String> {
    let events = app
        .state()
        .store
        .events_after(job_id, 0, 1000)
        .await
        .unwrap();
    events.iter().find_map(|e| {
        let message = e.data["message"].as_str()?;
        let (_, rest) = message.split_once(" (")?;
        let (permission, tail) = rest.split_once(") asked ")?;
        tail.starts_with("@kodiai").then(|| permission.to_owned())
    })
}

/// Whether a review job's gate let it through (its log line "review of …").
async fn passed_review_gate(app: &TestApp, job_id: &str) -> bool {
    let events = app
        .state()
        .store
        .events_after(job_id, 0, 1000)
        .await
        .unwrap();
    events.iter().any(|e| {
        e.data["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("review of "))
    })
}

fn mention(body: &str, login: &str) -> Value {
    let mut payload = fixture("issue_comment/created.with-installation.payload.json");
    payload["comment"]["body"] = json!(body);
    payload["comment"]["id"] = json!(fastrand::u64(1..1_000_000_000));
    for at in ["/comment/user", "/sender"] {
        payload.pointer_mut(at).unwrap()["login"] = json!(login);
    }
    payload
}

fn permission_requests(fake: &FakeGithub) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.path.ends_with("/permission"))
        .count()
}

app_test!(
    a_mention_from_a_reader_is_refused_by_its_job_with_the_reason_and_one_reply,
    builder | builder | {
        let fake = FakeGithub::start().await;
        let Some(app) = app(&fake, builder).await else {
            return;
        };
        fake.set_permission(REPO, "Codertocat", "read");
        let job_id = deliver(
            &app,
            "issue_comment",
            &mention("@kodiai fix the tests", "Codertocat"),
        )
        .await;
        // The 202 came before anything was asked of GitHub: the check is the job's.
        assert_eq!(permission_requests(&fake), 0);

        let job = run_job(&app, &job_id).await;
        let result = job.result.unwrap();
        assert_eq!(result["decision"], "refused", "{result}");
        assert!(
            result["reason"].as_str().unwrap().contains("read access"),
            "{result}"
        );
        assert_eq!(result["replied"], true);
        assert_eq!(permission_requests(&fake), 1);
        let replies = fake.issue_comments(REPO, 1);
        assert_eq!(replies.len(), 1, "{replies:?}");
        let body = replies[0]["body"].as_str().unwrap();
        assert!(
            body.contains("<!-- kodiai:refused:codertocat -->"),
            "{body}"
        );
        assert!(
            !body.contains("@Codertocat"),
            "the reply must not notify: {body}"
        );

        // Asking again on the same thread: refused again, but no second reply.
        let again = deliver(
            &app,
            "issue_comment",
            &mention("@kodiai please?", "Codertocat"),
        )
        .await;
        let result = run_job(&app, &again).await.result.unwrap();
        assert_eq!(result["decision"], "refused");
        assert_eq!(result["replied"], false);
        assert_eq!(fake.issue_comments(REPO, 1).len(), 1);
        // No model was involved in any of this.
        assert!(
            app.state()
                .store
                .llm_calls_of_job(&job_id)
                .await
                .unwrap()
                .is_empty()
        );
    }
);

app_test!(
    writers_and_allowed_users_pass_the_gate_and_the_repository_can_turn_mentions_off,
    builder | builder | {
        let fake = FakeGithub::start().await;
        let Some(app) = app(&fake, builder).await else {
            return;
        };
        fake.set_permission(REPO, "writer", "write");
        fake.set_permission(REPO, "guest", "read");
        let job_id = deliver(
            &app,
            "issue_comment",
            &mention("@kodiai explain this", "writer"),
        )
        .await;
        let job = run_next_job(&app, &job_id).await;
        assert_eq!(
            gate_permission(&app, &job_id).await.as_deref(),
            Some("write")
        );
        assert_eq!(job.payload["request"], "explain this");

        // .kodiai.yml on the default branch lets a reader in without asking GitHub.
        fake.put_file(
            REPO,
            ".kodiai.yml",
            "permissions:\n  allowed_users: [guest]\n",
        );
        let before = permission_requests(&fake);
        let job_id = deliver(
            &app,
            "issue_comment",
            &mention("@kodiai explain that", "guest"),
        )
        .await;
        run_next_job(&app, &job_id).await;
        assert_eq!(
            gate_permission(&app, &job_id).await.as_deref(),
            Some("allowed_users")
        );
        assert_eq!(permission_requests(&fake), before);

        fake.put_file(REPO, ".kodiai.yml", "mention:\n  enabled: false\n");
        let comments_before = fake.issue_comments(REPO, 1).len();
        let job_id = deliver(&app, "issue_comment", &mention("@kodiai explain", "writer")).await;
        let result = run_job(&app, &job_id).await.result.unwrap();
        assert_eq!(result["decision"], "ignored", "{result}");
        assert_eq!(result["reason"], "mentions are turned off in .kodiai.yml");
        assert_eq!(fake.issue_comments(REPO, 1).len(), comments_before);
        assert_eq!(gate_permission(&app, &job_id).await, None);
    }
);

app_test!(
    an_invalid_kodiai_yml_means_the_defaults_and_one_comment_that_names_the_line,
    builder | builder | {
        let fake = FakeGithub::start().await;
        let Some(app) = app(&fake, builder).await else {
            return;
        };
        fake.set_permission(REPO, "writer", "admin");
        fake.put_file(
            REPO,
            ".kodiai.yml",
            "mention:\n  enabled: true\nsettings:\n  max_turns: 500\n",
        );
        for ask in ["@kodiai one", "@kodiai two"] {
            let job_id = deliver(&app, "issue_comment", &mention(ask, "writer")).await;
            run_next_job(&app, &job_id).await;
            // The defaults apply: mentions are on, the writer is answered.
            assert_eq!(
                gate_permission(&app, &job_id).await.as_deref(),
                Some("admin")
            );
        }
        let comments: Vec<Value> = fake
            .issue_comments(REPO, 1)
            .into_iter()
            .filter(|c| c["body"].as_str().unwrap().contains("kodiai:config-error"))
            .collect();
        assert_eq!(
            comments.len(),
            1,
            "one comment however many events: {comments:?}"
        );
        let body = comments[0]["body"].as_str().unwrap();
        assert!(
            body.contains("<!-- kodiai:config-error:.kodiai.yml -->"),
            "{body}"
        );
        assert!(body.contains(".kodiai.yml:4"), "names the line: {body}");
        assert!(body.contains("settings.max_turns"), "names the key: {body}");
        assert!(body.contains("`main`"), "names the branch: {body}");
    }
);

app_test!(
    review_jobs_follow_the_repositorys_review_settings,
    builder | builder | {
        let fake = FakeGithub::start().await;
        let Some(app) = app(&fake, builder).await else {
            return;
        };
        let opened = fixture("pull_request/opened.payload.json");
        let job_id = deliver(&app, "pull_request", &opened).await;
        // Past its gate the review goes on to the work, which this test gives nothing to
        // work with: the gate's log line says it passed.
        run_next_job(&app, &job_id).await;
        assert!(passed_review_gate(&app, &job_id).await);

        let mut draft = opened.clone();
        draft["pull_request"]["draft"] = json!(true);
        let job_id = deliver(&app, "pull_request", &draft).await;
        let result = run_job(&app, &job_id).await.result.unwrap();
        assert_eq!(result["decision"], "skipped", "{result}");
        assert!(
            result["reason"].as_str().unwrap().contains("draft"),
            "{result}"
        );

        // synchronize is routed, but reviewed only when review.on asks for it.
        let sync = fixture("pull_request/synchronize.payload.json");
        let job_id = deliver(&app, "pull_request", &sync).await;
        let result = run_job(&app, &job_id).await.result.unwrap();
        assert_eq!(result["decision"], "skipped", "{result}");
        fake.put_file(
            REPO,
            ".kodiai.yml",
            "review:\n  on: [opened, synchronize]\n  skip_authors: [someone-else]\n",
        );
        let job_id = deliver(&app, "pull_request", &sync).await;
        run_next_job(&app, &job_id).await;
        assert!(passed_review_gate(&app, &job_id).await);

        fake.put_file(
            REPO,
            ".kodiai.yml",
            "review:\n  skip_authors: [Codertocat]\n",
        );
        let job_id = deliver(&app, "pull_request", &opened).await;
        let result = run_job(&app, &job_id).await.result.unwrap();
        assert_eq!(result["decision"], "skipped", "{result}");
        assert!(
            result["reason"].as_str().unwrap().contains("skip_authors"),
            "{result}"
        );
    }
);
