//! Store tests; each runs on SQLite and on PostgreSQL.

use crate::{Backend, DatabaseLocation, Error, Store};

mod nodelay;

const TABLES: [&str; 10] = [
    "errors",
    "installations",
    "job_events",
    "job_rate_limits",
    "jobs",
    "llm_calls",
    "repositories",
    "review_findings",
    "reviewed_heads",
    "webhook_deliveries",
];

async fn table_names(store: &Store) -> Vec<String> {
    let sql = match store.backend() {
        Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name"
        }
        Backend::Postgres => {
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' ORDER BY 1"
        }
    };
    match &store.inner {
        super::Inner::Sqlite { reader, .. } => sqlx::query_scalar(sql).fetch_all(reader).await,
        super::Inner::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
    }
    .unwrap()
}

/// Runs one statement on whichever backend, returning the error if any.
async fn execute(store: &Store, sql: &'static str) -> Result<u64, sqlx::Error> {
    match &store.inner {
        super::Inner::Sqlite { writer, .. } => sqlx::query(sql)
            .execute(writer)
            .await
            .map(|r| r.rows_affected()),
        super::Inner::Postgres(pool) => sqlx::query(sql)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
    }
}

crate::both_backends!(migrate_creates_the_tables, |db| {
    let store = db.connect().await;
    assert_eq!(store.migrate().await.unwrap(), migration_files());
    assert_eq!(table_names(&store).await, TABLES);
});

crate::both_backends!(migrate_twice_changes_nothing, |db| {
    let store = db.store().await;
    assert_eq!(store.migrate().await.unwrap(), migration_files());
    // A second process migrating the same database, as `kodiai migrate` beside a running serve.
    let other = db.connect().await;
    assert_eq!(other.migrate().await.unwrap(), migration_files());
    assert_eq!(table_names(&store).await, TABLES);
});

crate::both_backends!(ready_only_after_migrations, |db| {
    let store = db.connect().await;
    match store.check_ready().await {
        Err(Error::NotReady(reason)) => assert!(reason.contains("kodiai migrate"), "{reason}"),
        other => panic!("expected NotReady before migrating, got {other:?}"),
    }
    store.migrate().await.unwrap();
    assert_eq!(store.check_ready().await.unwrap(), migration_files());
});

crate::both_backends!(foreign_keys_are_enforced, |db| {
    let store = db.store().await;
    let err = execute(
        &store,
        "INSERT INTO job_events (job_id, seq, kind) VALUES ('no-such-job', 1, 'started')",
    )
    .await
    .unwrap_err();
    let db_err = err.as_database_error().expect("a database error");
    assert!(
        db_err.is_foreign_key_violation(),
        "expected a foreign key violation, got {db_err}"
    );

    execute(
        &store,
        "INSERT INTO jobs (id, kind) VALUES ('0193a6f0-0000-7000-8000-000000000001', 'review')",
    )
    .await
    .unwrap();
    execute(
        &store,
        "INSERT INTO job_events (job_id, seq, kind) \
         VALUES ('0193a6f0-0000-7000-8000-000000000001', 1, 'started')",
    )
    .await
    .unwrap();
    // Deleting the job takes its events with it.
    execute(&store, "DELETE FROM jobs").await.unwrap();
    assert_eq!(execute(&store, "DELETE FROM job_events").await.unwrap(), 0);
});

crate::both_backends!(job_state_is_checked, |db| {
    let store = db.store().await;
    let err = execute(
        &store,
        "INSERT INTO jobs (id, kind, state) VALUES ('j1', 'review', 'exploded')",
    )
    .await
    .unwrap_err();
    assert!(
        err.as_database_error()
            .is_some_and(|e| e.is_check_violation()),
        "{err}"
    );
});

#[tokio::test]
async fn sqlite_file_and_folder_are_created_in_wal_mode() {
    let db = crate::testing::TestDb::sqlite();
    let path = db.sqlite_path().unwrap();
    assert!(!path.parent().unwrap().exists());
    let store = db.store().await;
    assert!(path.exists());
    let Store {
        inner: super::Inner::Sqlite { reader, .. },
        ..
    } = &store
    else {
        panic!("expected SQLite");
    };
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(reader)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let fks: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(reader)
        .await
        .unwrap();
    assert_eq!(fks, 1);
}

#[tokio::test]
async fn sqlite_commits_leave_the_log_to_the_checkpointer() {
    let db = crate::testing::TestDb::sqlite();
    let store = db.store().await;
    let Store {
        inner: super::Inner::Sqlite { writer, .. },
        ..
    } = &store
    else {
        panic!("expected SQLite");
    };
    let auto: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(writer)
        .await
        .unwrap();
    assert_eq!(auto, 0, "the writer's commits must not checkpoint");
    // Past SQLite's own threshold of 1,000 pages: nothing copied it into the database file.
    sqlx::query("CREATE TABLE filler (x BLOB)")
        .execute(writer)
        .await
        .unwrap();
    for _ in 0..300 {
        sqlx::query("INSERT INTO filler VALUES (zeroblob(16384))")
            .execute(writer)
            .await
            .unwrap();
    }
    let (log, copied) = store.checkpoint().await.unwrap();
    assert!(log > 1000, "the log holds every commit: {log} frames");
    assert_eq!(
        copied, log,
        "no reader holds an old snapshot, so all of it is copied"
    );
    store.close().await;
}

#[test]
fn database_urls_are_parsed_and_bad_ones_refused() {
    assert_eq!(
        DatabaseLocation::parse("sqlite://data/k.db").unwrap(),
        DatabaseLocation::Sqlite("data/k.db".into())
    );
    assert_eq!(
        DatabaseLocation::parse("sqlite:/var/lib/kodiai/k.db?mode=rwc").unwrap(),
        DatabaseLocation::Sqlite("/var/lib/kodiai/k.db".into())
    );
    assert!(matches!(
        DatabaseLocation::parse("postgresql://u:p@db:5432/kodiai").unwrap(),
        DatabaseLocation::Postgres(_)
    ));
    for bad in ["mysql://x", "sqlite::memory:", "sqlite://", "", "/tmp/x.db"] {
        let err = DatabaseLocation::parse(bad).unwrap_err();
        assert!(!err.is_empty(), "{bad}");
    }
}

#[test]
fn passwords_never_appear_in_descriptions() {
    let location = DatabaseLocation::parse("postgres://kodiai:s3cr3t@db.internal/kodiai").unwrap();
    let shown = location.redacted();
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(shown.contains("kodiai:****@db.internal"), "{shown}");
    assert_eq!(crate::redact_url("not a url s3cr3t"), "<redacted url>");
}

/// How many migrations the source tree has (both folders hold the same versions), so that a new
/// migration does not mean editing every count.
fn migration_files() -> u32 {
    let count = |folder: &str| {
        std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(folder))
            .unwrap()
            .filter(|entry| entry.as_ref().unwrap().path().extension() == Some("sql".as_ref()))
            .count()
    };
    let sqlite = count("migrations/sqlite");
    assert_eq!(
        sqlite,
        count("migrations/postgres"),
        "both backends have the same migrations"
    );
    u32::try_from(sqlite).unwrap()
}
