//! SIGTERM: stop accepting, let in-flight requests finish within the grace period, exit 0.
//!
//! The slow request is a real one: `/ready` reads the migrations table, and the test holds an
//! exclusive lock on that table in PostgreSQL, so the request waits inside the server until the
//! test lets it go.

use std::path::Path;
use std::time::{Duration, Instant};

use kodiai_bench::ServeProcess;
use kodiai_test_support::TestDb;
use sqlx::Connection;

const EXE: &str = env!("CARGO_BIN_EXE_kodiai");

/// Waits until the server refuses new connections (it drops its listener on shutdown).
async fn until_refused(addr: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the server still accepts connections"
        );
        tokio::task::yield_now().await;
    }
}

/// Holds an exclusive lock on `_sqlx_migrations`, starts `GET /ready`, and waits until that
/// request is blocked on the lock inside the server.
async fn start_blocked_ready_request(
    db: &TestDb,
    server: &ServeProcess,
) -> (
    sqlx::Transaction<'static, sqlx::Postgres>,
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
) {
    let url = db.url();
    let lock_pool = sqlx::PgPool::connect(&url).await.unwrap();
    let mut lock = lock_pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();

    let ready_url = format!("http://{}/ready", server.addr);
    let request = tokio::spawn(async move { reqwest::get(ready_url).await });

    let mut watcher = sqlx::PgConnection::connect(&url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = '_sqlx_migrations'::regclass",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/ready never reached the database"
        );
        tokio::task::yield_now().await;
    }
    (lock, request)
}

#[tokio::test]
async fn sigterm_when_idle_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServeProcess::start(Path::new(EXE), dir.path(), &[])
        .await
        .unwrap();
    server.terminate().await.unwrap();
    assert!(server.wait_for_log("stopped").await.is_some());
    let status = server.child.wait().await.unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn sigterm_during_a_slow_request_lets_it_finish_then_exits_0() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = db.url();
    let mut server = ServeProcess::start(Path::new(EXE), dir.path(), &[("DATABASE_URL", &url)])
        .await
        .unwrap();
    let (lock, request) = start_blocked_ready_request(&db, &server).await;

    server.terminate().await.unwrap();
    assert!(
        server
            .wait_for_log("shutting down: no new connections or jobs; finishing the requests and jobs in flight")
            .await
            .is_some()
    );
    until_refused(server.addr).await;
    assert!(
        !request.is_finished(),
        "the slow request ended before it was let go"
    );

    lock.commit().await.unwrap();
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let status = server.child.wait().await.unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn requests_still_open_after_the_grace_period_are_dropped_and_the_exit_is_0() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = db.url();
    let mut server = ServeProcess::start(
        Path::new(EXE),
        dir.path(),
        &[("DATABASE_URL", &url), ("KODIAI_SHUTDOWN_GRACE_SECS", "1")],
    )
    .await
    .unwrap();
    let (lock, request) = start_blocked_ready_request(&db, &server).await;

    server.terminate().await.unwrap();
    let status = server.child.wait().await.unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        request.await.unwrap().is_err(),
        "the connection should have been closed"
    );
    lock.rollback().await.unwrap();
}
