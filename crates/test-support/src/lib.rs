//! The test harness: [`TestApp`] starts the real kodiai server on port 0 with a fresh database
//! (SQLite file or PostgreSQL database) and gives typed helpers around an HTTP client.
//!
//! Dev-dependency only. Fakes of what cannot run here speak the real wire protocols: [`github`]
//! (the REST and GraphQL API), [`webhooks`] (deliveries signed as GitHub signs them), [`llm`]
//! (the Anthropic, OpenAI and Gemini streaming APIs); [`git`] has bare repositories served over
//! authenticated smart HTTP.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failure here is a test failure"
)]

pub mod cli;
pub mod git;
pub mod github;
pub mod llm;
pub mod process;
pub mod webhooks;

use std::net::SocketAddr;

use axum::Router;
use kodiai::config::{Config, Env};
use kodiai::jobs::{Clock, Handlers};
use kodiai::{AppState, RunningServer, Setup};
use kodiai_protocol::ErrorBody;
pub use kodiai_store::Backend;
pub use kodiai_store::testing::TestDb;

/// A running server with its own database, stopped when dropped or by [`TestApp::stop`].
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub db: TestDb,
    server: Option<RunningServer>,
    /// The data folder (repository mirrors, reports, …), removed on drop.
    pub data_dir: tempfile::TempDir,
}

impl TestApp {
    /// The server on a fresh database of `backend`; `None` when that is PostgreSQL and it is not
    /// reachable outside CI (the test then says so and returns; see [`TestDb::postgres`]).
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::builder(backend).spawn().await
    }

    pub fn builder(backend: Backend) -> TestAppBuilder {
        TestAppBuilder {
            backend,
            env: Env::new(),
            file: None,
            setup: Setup::default(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn state(&self) -> &AppState {
        &self.server.as_ref().expect("server is running").state
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET failed")
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST failed")
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("server stopped with an error");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.shutdown_token().cancel();
        }
    }
}

/// Options of a [`TestApp`]: environment variables (as the real process would read them), the
/// configuration file's text, extra routes mounted inside the real middleware stack, job
/// handlers and the queue's clock.
pub struct TestAppBuilder {
    backend: Backend,
    env: Env,
    file: Option<toml::Table>,
    setup: Setup,
}

impl TestAppBuilder {
    /// `kodiai.toml` (for what only the file sets, such as `[mcp.servers]`).
    pub fn config_file(mut self, text: &str) -> Self {
        self.file = Some(text.parse().expect("test configuration file is TOML"));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Points the server at a fake GitHub as an App (id [`github::TEST_APP_ID`], the test key),
    /// as `GITHUB_APP_ID`, `GITHUB_PRIVATE_KEY`, `GITHUB_API_URL` and `GITHUB_GRAPHQL_URL`.
    pub fn github_app(mut self, fake: &github::FakeGithub) -> Self {
        fake.app_id(github::TEST_APP_ID);
        for (key, value) in fake.env() {
            self.env.insert(key.to_owned(), value);
        }
        self.env
            .insert("GITHUB_APP_ID".into(), github::TEST_APP_ID.to_string());
        self.env.insert(
            "GITHUB_PRIVATE_KEY".into(),
            github::test_app_key().private_pem.clone(),
        );
        self
    }

    pub fn routes(mut self, routes: Router<AppState>) -> Self {
        self.setup.routes = routes;
        self
    }

    /// The job handlers of the server's workers (default: kodiai's own).
    pub fn handlers(mut self, handlers: Handlers) -> Self {
        self.setup.handlers = Some(handlers);
        self
    }

    /// The queue's clock (default: the system clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.setup.clock = clock;
        self
    }

    pub async fn spawn(self) -> Option<TestApp> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let db = TestDb::new(self.backend).await?;
        let data_dir = tempfile::tempdir().expect("temp data dir");
        let mut env = self.env;
        env.insert("DATABASE_URL".into(), db.url());
        env.insert(
            "KODIAI_DATA_DIR".into(),
            data_dir.path().display().to_string(),
        );
        env.insert("KODIAI_HOST".into(), "127.0.0.1".into());
        env.insert("PORT".into(), "0".into());
        // Webhooks work out of the box; a test without a secret sets it to "".
        env.entry("GITHUB_WEBHOOK_SECRET".into())
            .or_insert_with(|| webhooks::WEBHOOK_SECRET.into());
        let file = self
            .file
            .map(|table| (std::path::PathBuf::from("kodiai.toml"), table));
        let config = Config::from_sources(file, &env).expect("test configuration is valid");
        let server = kodiai::start(config, self.setup)
            .await
            .expect("the server starts");
        Some(TestApp {
            addr: server.addr,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("HTTP client"),
            db,
            server: Some(server),
            data_dir,
        })
    }
}

/// Checks that a response is an API error with the given status and code, that its body has the
/// documented shape, and that its `request_id` matches the `X-Request-ID` header. Returns the body.
pub async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> ErrorBody {
    assert_eq!(response.status().as_u16(), status, "status");
    let header = response
        .headers()
        .get("x-request-id")
        .expect("X-Request-ID header on an error response")
        .to_str()
        .unwrap()
        .to_owned();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(content_type.as_deref(), Some("application/json"));
    let value: serde_json::Value = response.json().await.expect("a JSON error body");
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["error", "message", "request_id"],
        "error body keys: {value}"
    );
    let body: ErrorBody = serde_json::from_value(value).unwrap();
    assert_eq!(
        serde_json::to_value(body.error).unwrap(),
        code,
        "error code"
    );
    assert_eq!(body.request_id, header, "request_id matches the header");
    assert!(!body.message.is_empty());
    body
}

/// Runs one async integration test body against a [`TestApp`] on SQLite and on PostgreSQL, as
/// `NAME::sqlite` and `NAME::postgres`. `|app| body` gets a default app; `|builder| body` with
/// `builder` gets a [`TestAppBuilder`] to configure and spawn.
#[macro_export]
macro_rules! app_test {
    ($name:ident, |$app:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let $app = $crate::TestApp::spawn($crate::Backend::Sqlite)
                    .await
                    .unwrap();
                $body
            }

            #[tokio::test]
            async fn postgres() {
                let Some($app) = $crate::TestApp::spawn($crate::Backend::Postgres).await else {
                    return;
                };
                $body
            }
        }
    };
    ($name:ident, builder |$builder:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let $builder = $crate::TestApp::builder($crate::Backend::Sqlite);
                $body
            }

            #[tokio::test]
            async fn postgres() {
                let $builder = $crate::TestApp::builder($crate::Backend::Postgres);
                $body
            }
        }
    };
}

/// How many migrations the store has (the files of `crates/store/migrations/sqlite`), for tests
/// that check what `migrate` and `/ready` report.
pub fn migration_count() -> u32 {
    let folder =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../store/migrations/sqlite");
    let files = std::fs::read_dir(folder)
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().extension() == Some("sql".as_ref()))
        .count();
    u32::try_from(files).unwrap()
}
