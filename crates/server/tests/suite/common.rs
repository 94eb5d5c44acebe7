//! What the end-to-end job suites share: the app as they spawn it against the fake GitHub, a
//! webhook delivered into it, the queued job run as a worker runs it, and the [`World`] of the
//! review and mention suites (the fake GitHub, a scripted fake model and real git).

use std::sync::Arc;

use crate::suite::harness::{TestApp, TestAppBuilder};
use kodiai_protocol::{DeliveryOutcome, Job, WebhookAck};
use kodiai_runtime::jobs::{Outcome, Worker, WorkerSettings};
use kodiai_test_support::cli::FakeCli;
use kodiai_test_support::git::{BareRepo, GitFixture};
use kodiai_test_support::github::FakeGithub;
use kodiai_test_support::llm::{Api, FakeLlm};
use serde_json::Value;

/// The repository of the webhook fixtures.
pub const REPO: &str = "Codertocat/Hello-World";

/// `builder` as the GitHub App `kodiai` of `fake`, with no workers of its own (the tests run the
/// jobs); `fake` knows [`REPO`] with `main` as its default branch.
pub fn github_app(builder: TestAppBuilder, fake: &FakeGithub) -> TestAppBuilder {
    fake.add_repo(REPO, "main");
    builder
        .github_app(fake)
        .env("KODIAI_WORKERS", "0")
        .env("GITHUB_APP_SLUG", "kodiai")
}

/// `builder` with its agent on the Claude Code CLI played by `cli`, and this build's `kodiai`
/// as the relay the CLI starts for the job's GitHub tools (`kodiai mcp github-*`).
pub fn on_claude_code(builder: TestAppBuilder, cli: &FakeCli) -> TestAppBuilder {
    builder
        .env("KODIAI_AGENT_BACKEND", "claude-code")
        .env("CLAUDE_CLI_PATH", cli.program().to_str().unwrap())
        .env("KODIAI_TOOL_SERVER", env!("CARGO_BIN_EXE_kodiai"))
}

/// Sends `payload` as `event`; the job it made, if any.
pub async fn deliver(app: &TestApp, event: &str, payload: &Value) -> Option<String> {
    match ack(app, event, payload).await.outcome {
        DeliveryOutcome::Job { job_id } => Some(job_id),
        _ => None,
    }
}

/// Sends `payload` as `event` and returns the job it made (there must be one).
pub async fn deliver_job(app: &TestApp, event: &str, payload: &Value) -> String {
    let ack = ack(app, event, payload).await;
    let DeliveryOutcome::Job { job_id } = ack.outcome else {
        panic!("no job: {ack:?}");
    };
    job_id
}

/// Sends `payload` as `event`; the 202's acknowledgement.
async fn ack(app: &TestApp, event: &str, payload: &Value) -> WebhookAck {
    let response = app.send_webhook(event, payload).await;
    assert_eq!(response.status(), 202);
    response.json().await.unwrap()
}

/// Runs the next queued job with kodiai's own handlers for the app's configuration, as a worker
/// does, whatever its end; the job `job_id` after.
pub async fn run_next_job(app: &TestApp, job_id: &str) -> Job {
    let state = app.state();
    let handlers =
        kodiai_github_app::handlers::for_config(&state.config, &state.store, &state.clock)
            .await
            .unwrap();
    let worker = Worker::new(
        state.store.clone(),
        handlers,
        Arc::new(WorkerSettings::from_config(&state.config.jobs)),
        state.clock.clone(),
    );
    let outcome = worker.try_execute_job().await.unwrap();
    assert!(matches!(outcome, Outcome::Completed { .. }), "{outcome:?}");
    state.store.job(job_id).await.unwrap().unwrap()
}

/// The app with a model (a fake Anthropic), real git behind the fake GitHub, and [`REPO`] in it.
pub struct World {
    pub fake: FakeGithub,
    pub llm: FakeLlm,
    pub git: GitFixture,
    pub bare: BareRepo,
    pub app: TestApp,
    /// The one commit on `main`.
    pub main: String,
}

impl World {
    /// [`REPO`] with `files` committed on `main`, cloned by the app with the installation's
    /// token, and `kodiai_yml` as its `.kodiai.yml` if given; `None` where the backend is not
    /// available.
    pub async fn start(
        builder: TestAppBuilder,
        files: &[(&str, &str)],
        kodiai_yml: Option<&str>,
    ) -> Option<Self> {
        let fake = FakeGithub::start().await;
        let llm = FakeLlm::start(Api::Anthropic).await;
        let git = GitFixture::start().await;
        let bare = git.create_repo(REPO).await;
        let main = bare.commit("main", files, "initial").await;
        let builder = github_app(builder, &fake);
        fake.set_clone_url(REPO, git.url(REPO).as_str());
        fake.installation_token(&git.token);
        if let Some(text) = kodiai_yml {
            fake.put_file(REPO, ".kodiai.yml", text);
        }
        let app = builder
            .env("KODIAI_MODEL", "anthropic/claude-sonnet-4-5")
            .env("ANTHROPIC_API_KEY", "sk-ant-test-not-a-real-key")
            .env("ANTHROPIC_BASE_URL", &llm.base_url())
            .spawn()
            .await?;
        Some(Self {
            fake,
            llm,
            git,
            bare,
            app,
            main,
        })
    }

    /// Sends `payload` as `event`; the job it made, if any.
    pub async fn deliver(&self, event: &str, payload: &Value) -> Option<String> {
        deliver(&self.app, event, payload).await
    }

    /// Sends `payload` as `event` and returns the job it made (there must be one).
    pub async fn deliver_job(&self, event: &str, payload: &Value) -> String {
        deliver_job(&self.app, event, payload).await
    }

    /// Runs the next queued job, as a worker does; the job after.
    pub async fn run(&self, job_id: &str) -> Job {
        run_next_job(&self.app, job_id).await
    }

    /// Every request the fake model got, as one text.
    pub fn prompts(&self) -> String {
        self.prompts_since(0)
    }

    /// The requests the fake model got since request `from`, as one text.
    pub fn prompts_since(&self, from: usize) -> String {
        self.llm.requests()[from..]
            .iter()
            .map(|r| r.body.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}
