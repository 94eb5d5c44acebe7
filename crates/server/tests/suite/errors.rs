//! Every 4xx/5xx is JSON `{error, message, request_id}`, whichever layer produced it. The
//! routes under `/test` are mounted inside the real middleware stack, since the operational
//! routes take no body.

use crate::suite::harness::TestApp;
use axum::Router;
use axum::routing::{get, post};
use kodiai::AppState;
use kodiai::http::ApiJson;
use kodiai_test_support::{Backend, expect_error};
use pretty_assertions::assert_eq;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Echo {
    name: String,
    count: u32,
    colour: Colour,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Colour {
    Red,
    Blue,
}

fn test_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/test/echo",
            post(|ApiJson(body): ApiJson<Echo>| async move { ApiJson(body) }),
        )
        .route("/test/stall", get(std::future::pending::<()>))
        .route(
            "/test/panic",
            get(|| async {
                panic!("db password is hunter2");
                #[allow(unreachable_code)]
                ()
            }),
        )
}

async fn app() -> TestApp {
    TestApp::builder(Backend::Sqlite)
        .env("KODIAI_BODY_LIMIT_BYTES", "2048")
        .env("KODIAI_REQUEST_TIMEOUT_SECS", "1")
        .routes(test_routes())
        .spawn()
        .await
        .unwrap()
}

#[tokio::test]
async fn good_json_passes_through() {
    let app = app().await;
    let body = serde_json::json!({"name": "kodiai", "count": 3, "colour": "red"});
    let response = app.post_json("/test/echo", &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap(), body);
}

#[tokio::test]
async fn unknown_route_is_404_and_wrong_method_405() {
    let app = app().await;
    let body = expect_error(app.get("/api/v1/nothing").await, 404, "not_found").await;
    assert_eq!(body.message, "no route for GET /api/v1/nothing");

    let response = app.client.delete(app.url("/health")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET,HEAD");
    expect_error(response, 405, "method_not_allowed").await;
    let response = app.get("/test/echo").await;
    expect_error(response, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn malformed_json_is_400_with_where() {
    let app = app().await;
    let response = app
        .client
        .post(app.url("/test/echo"))
        .header("content-type", "application/json")
        .body("{\"name\": \"x\",")
        .send()
        .await
        .unwrap();
    let body = expect_error(response, 400, "bad_request").await;
    assert!(
        body.message.starts_with("malformed JSON: "),
        "{}",
        body.message
    );
    assert!(body.message.contains("line 1"), "{}", body.message);
}

#[tokio::test]
async fn wrong_types_unknown_enum_values_and_missing_fields_are_422() {
    let app = app().await;
    for (bad, says) in [
        (
            serde_json::json!({"name": "x", "count": "three", "colour": "red"}),
            "invalid type",
        ),
        (
            serde_json::json!({"name": "x", "count": 3, "colour": "green"}),
            "unknown variant `green`",
        ),
        (
            serde_json::json!({"name": "x", "colour": "red"}),
            "missing field `count`",
        ),
        (
            serde_json::json!({"name": "x", "count": -1, "colour": "red"}),
            "invalid value",
        ),
        (serde_json::json!([1, 2]), "invalid type"),
    ] {
        let body = expect_error(
            app.post_json("/test/echo", &bad).await,
            422,
            "unprocessable",
        )
        .await;
        assert!(body.message.contains(says), "{bad}: {}", body.message);
    }
}

#[tokio::test]
async fn a_body_without_json_content_type_is_415() {
    let app = app().await;
    let response = app
        .client
        .post(app.url("/test/echo"))
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_error(response, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_with_or_without_content_length() {
    let app = app().await;
    let big = serde_json::json!({"name": "x".repeat(4096), "count": 1, "colour": "red"});
    expect_error(
        app.post_json("/test/echo", &big).await,
        413,
        "payload_too_large",
    )
    .await;

    // Chunked: no Content-Length to refuse up front; the limit applies while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(big.to_string().into_bytes())];
    let response = app
        .client
        .post(app.url("/test/echo"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    expect_error(response, 413, "payload_too_large").await;
}

#[tokio::test]
async fn a_request_past_the_timeout_is_504() {
    let app = app().await;
    let body = expect_error(app.get("/test/stall").await, 504, "timeout").await;
    assert!(
        body.message.contains("request timeout of 1 s"),
        "{}",
        body.message
    );
    // The server is still fine afterwards.
    assert_eq!(app.get("/health").await.status(), 200);
}

#[tokio::test]
async fn a_panicking_handler_is_an_opaque_500_and_the_server_lives_on() {
    let app = app().await;
    let body = expect_error(app.get("/test/panic").await, 500, "internal").await;
    assert!(!body.message.contains("hunter2"), "{}", body.message);
    assert_eq!(app.get("/health").await.status(), 200);
}
