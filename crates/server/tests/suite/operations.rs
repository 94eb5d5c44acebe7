//! The operational routes: /health, /ready, /metrics, /openapi.json, /docs, request ids, CORS.

use crate::suite::harness::TestApp;
use kodiai_protocol::{HealthResponse, ReadyResponse};
use kodiai_test_support::{Backend, expect_error};

app_test!(health_and_ready_answer_200, |app| {
    let response = app.get("/health").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let health: HealthResponse = response.json().await.unwrap();
    assert_eq!(health.status, "ok");

    let response = app.get("/ready").await;
    assert_eq!(response.status(), 200);
    let ready: ReadyResponse = response.json().await.unwrap();
    let expected = match app.db.location() {
        kodiai_store::DatabaseLocation::Sqlite(_) => "sqlite",
        kodiai_store::DatabaseLocation::Postgres(_) => "postgres",
    };
    assert_eq!(
        ready,
        ReadyResponse {
            status: "ready".into(),
            database: expected.into(),
            migrations: kodiai_test_support::migration_count(),
            workers: 4,
        }
    );
});

/// Runs a statement on the app's database from outside the server, as an operator would.
async fn execute(app: &TestApp, sql: &'static str) {
    match app.db.location() {
        kodiai_store::DatabaseLocation::Sqlite(path) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
        kodiai_store::DatabaseLocation::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

app_test!(
    ready_is_503_with_the_reason_when_migrations_are_missing,
    |app| {
        execute(&app, "DELETE FROM _sqlx_migrations").await;
        let body = expect_error(app.get("/ready").await, 503, "not_ready").await;
        assert!(
            body.message.contains(&format!(
                "{n} of {n} migrations are not applied",
                n = kodiai_test_support::migration_count()
            )),
            "{}",
            body.message
        );
        // /health stays up: the process is fine, its database is not.
        assert_eq!(app.get("/health").await.status(), 200);
    }
);

app_test!(metrics_count_requests_by_route_and_status, |app| {
    app.get("/health").await;
    app.get("/no/such/route").await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();
    assert!(text.contains("kodiai_build_info{version=\""), "{text}");
    let health_line = text
        .lines()
        .find(|l| {
            l.starts_with("http_requests_total{")
                && l.contains("route=\"/health\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no /health counter in:\n{text}"));
    let count: f64 = health_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1.0);
    // Unknown paths share one label, so scanners cannot blow up the series count.
    assert!(
        text.contains("route=\"unmatched\",status=\"404\""),
        "{text}"
    );
    assert!(!text.contains("/no/such/route"));
    assert!(
        text.contains("http_request_duration_seconds_bucket{"),
        "{text}"
    );
});

app_test!(metrics_show_queue_depth_and_job_durations, |app| {
    let store = &app.state().store;
    let mut signals = store.subscribe().await.unwrap();
    let job = kodiai_store::NewJob::new(kodiai_protocol::JobSpec::Noop(Default::default()));
    let id = store.enqueue(&job, chrono::Utc::now()).await.unwrap().id;
    // The server's own workers run it.
    loop {
        if let kodiai_store::Signal::JobEvent {
            job_id,
            kind: kodiai_protocol::JobEventKind::Finished,
            ..
        } = signals.recv().await
            && job_id == id
        {
            break;
        }
    }
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains("jobs_queue_depth{kind=\"noop\",state=\"succeeded\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("jobs_queue_depth{kind=\"noop\",state=\"queued\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("job_duration_seconds_count{kind=\"noop\",outcome=\"succeeded\"}"),
        "{text}"
    );
});

app_test!(openapi_document_and_docs_are_served, |app| {
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    let doc: serde_json::Value = response.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in ["/health", "/ready", "/metrics"] {
        assert!(
            doc["paths"][path]["get"].is_object(),
            "{path} missing from {doc}"
        );
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());

    let response = app.get("/docs").await;
    assert!(response.status().is_redirection());
    let response = app.get("/docs/").await;
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains("swagger"), "{html}");
    // The UI's assets are in the binary, not fetched from a CDN.
    let script = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(script.status(), 200);
});

#[tokio::test]
async fn a_plain_request_id_is_kept_and_a_strange_one_replaced() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let response = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "trace-1234.abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-1234.abc");

    let response = app
        .client
        .get(app.url("/nope"))
        .header("x-request-id", "evil\tvalue with spaces")
        .send()
        .await
        .unwrap();
    let header = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(header, "evil\tvalue with spaces");
    let body = expect_error(response, 404, "not_found").await;
    assert_eq!(body.request_id, header);
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let app = TestApp::builder(Backend::Sqlite)
        .env("KODIAI_CORS_ORIGINS", "https://dash.example.com")
        .spawn()
        .await
        .unwrap();
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/health"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
    };
    let allowed = preflight("https://dash.example.com").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://dash.example.com"
    );
    assert_eq!(
        allowed.headers()["access-control-allow-credentials"],
        "true"
    );
    let refused = preflight("https://evil.example.net").await.unwrap();
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );

    // Without configured origins there is no CORS at all.
    let plain = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let response = plain
        .client
        .get(plain.url("/health"))
        .header("origin", "https://dash.example.com")
        .send()
        .await
        .unwrap();
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );
}
