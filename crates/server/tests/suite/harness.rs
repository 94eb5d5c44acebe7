//! The server as the tests run it: [`TestApp`] starts the real kodiai server in process on port
//! 0 with a fresh database (SQLite file or PostgreSQL database) and a fresh data folder, built
//! from an environment map exactly as `main` builds it, with typed helpers around an HTTP
//! client; [`app_test!`] runs one body on both backends.

use kodiai::{AppState, RunningServer, Setup};
use kodiai_runtime::config::{Config, Env};
use kodiai_runtime::jobs::Handlers;
use kodiai_test_support::webhooks::{self, Delivery};
use kodiai_test_support::{Backend, TestDb, github};

/// A running server with its own database, stopped when dropped or by [`TestApp::stop`].
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub client: reqwest::Client,
    pub db: TestDb,
    server: Option<RunningServer>,
    /// The data folder (repository mirrors, reports, …), removed on drop.
    _data_dir: tempfile::TempDir,
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

    pub fn routes(mut self, routes: axum::Router<AppState>) -> Self {
        self.setup.routes = routes;
        self
    }

    /// The job handlers of the server's workers (default: kodiai's own).
    pub fn handlers(mut self, handlers: Handlers) -> Self {
        self.setup.handlers = Some(handlers);
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
            _data_dir: data_dir,
        })
    }
}

impl TestApp {
    /// Sends `payload` as GitHub would: JSON, signed with [`WEBHOOK_SECRET`], with a fresh
    /// delivery id and the usual headers.
    pub async fn send_webhook(
        &self,
        event: &str,
        payload: &serde_json::Value,
    ) -> reqwest::Response {
        self.send_delivery(&Delivery::new(event, payload)).await
    }

    /// Sends one delivery as it is.
    pub async fn send_delivery(&self, delivery: &Delivery) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url("/webhooks/github"))
            .header("content-type", delivery.content_type)
            .header("user-agent", "GitHub-Hookshot/kodiai-test")
            .header("x-github-event", &delivery.event)
            .header("x-github-delivery", &delivery.delivery_id)
            .header("x-github-hook-id", "1")
            .body(delivery.body.clone());
        if let Some(signature) = &delivery.signature {
            request = request.header("x-hub-signature-256", signature);
        }
        request.send().await.expect("POST /webhooks/github failed")
    }
}

/// Runs one async integration test body against a [`TestApp`] on SQLite and on PostgreSQL, as
/// `NAME::sqlite` and `NAME::postgres`. `|app| body` gets a default app; `|builder| body` with
/// `builder` gets a [`TestAppBuilder`] to configure and spawn.
macro_rules! app_test {
    ($name:ident, |$app:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let $app =
                    $crate::suite::harness::TestApp::spawn(kodiai_test_support::Backend::Sqlite)
                        .await
                        .unwrap();
                $body
            }

            #[tokio::test]
            async fn postgres() {
                let Some($app) =
                    $crate::suite::harness::TestApp::spawn(kodiai_test_support::Backend::Postgres)
                        .await
                else {
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
                let $builder =
                    $crate::suite::harness::TestApp::builder(kodiai_test_support::Backend::Sqlite);
                $body
            }

            #[tokio::test]
            async fn postgres() {
                let $builder = $crate::suite::harness::TestApp::builder(
                    kodiai_test_support::Backend::Postgres,
                );
                $body
            }
        }
    };
}
