//! The test harness's fakes, for every crate's tests. Dev-dependency only, and no dependency on
//! the server crate (the server's `TestApp` lives in its own tests), so that testing a lower
//! crate does not build the server.
//!
//! Fakes of what cannot run here speak the real wire protocols: [`github`] (the REST and GraphQL
//! API), [`webhooks`] (deliveries signed as GitHub signs them), [`llm`] (the Anthropic, OpenAI
//! and Gemini streaming APIs), [`cli`] (the Claude Code CLI); [`git`] has bare repositories
//! served over authenticated smart HTTP; [`TestDb`] is a fresh database per test.

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

use kodiai_protocol::ErrorBody;
pub use kodiai_store::Backend;
pub use kodiai_store::testing::TestDb;

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
