//! Test databases: a fresh SQLite file or a fresh PostgreSQL database per test, and the
//! [`both_backends!`](crate::both_backends) macro that runs one test body on each.
//!
//! PostgreSQL comes from `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! each test gets its own database, dropped when the [`TestDb`] is dropped. Where PostgreSQL
//! cannot be reached, the PostgreSQL half of a test says so on the terminal and returns; with
//! `CI=true` it fails instead, so CI never passes quietly without PostgreSQL.

use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;

use sqlx::ConnectOptions as _;
use sqlx::postgres::PgConnectOptions;

use crate::{Backend, ConnectOptions, DatabaseLocation, Store};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that exists for one test.
pub struct TestDb {
    location: DatabaseLocation,
    /// Keeps the SQLite folder alive; removed on drop.
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL database to drop on drop, with the admin URL to drop it from.
    pg_cleanup: Option<(String, String)>,
}

impl TestDb {
    /// A new SQLite file in a new temporary folder (the file itself is not created yet).
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        let path = dir.path().join("data").join("kodiai.db");
        Self {
            location: DatabaseLocation::Sqlite(path),
            _dir: Some(dir),
            pg_cleanup: None,
        }
    }

    /// A new, empty PostgreSQL database, or `None` (after saying so) when PostgreSQL cannot be
    /// reached outside CI. Panics with `CI=true` when it cannot be reached.
    pub async fn postgres() -> Option<Self> {
        let admin_url = admin_url();
        let admin = match PgConnectOptions::from_str(&admin_url) {
            Ok(options) => options,
            Err(e) => panic!("TEST_DATABASE_URL is not a PostgreSQL URL: {e}"),
        };
        let mut conn = match admin.connect().await {
            Ok(conn) => conn,
            Err(e) => {
                let message = format!(
                    "PostgreSQL is not reachable at {} ({e}); the PostgreSQL half of this test did not run",
                    crate::redact_url(&admin_url)
                );
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{message} (CI=true requires PostgreSQL)");
                }
                // Straight to the terminal: libtest captures `eprintln!` of passing tests.
                let _ = writeln!(std::io::stderr(), "\nwarning: {message}");
                return None;
            }
        };
        let name = format!("kodiai_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let mut url = url::Url::parse(&admin_url)
            .unwrap_or_else(|e| panic!("TEST_DATABASE_URL is not a URL: {e}"));
        url.set_path(&name);
        Some(Self {
            location: DatabaseLocation::Postgres(url.to_string()),
            _dir: None,
            pg_cleanup: Some((admin_url, name)),
        })
    }

    /// A fresh database of the given backend; `None` as for [`TestDb::postgres`].
    pub async fn new(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self::sqlite()),
            Backend::Postgres => Self::postgres().await,
        }
    }

    pub fn location(&self) -> &DatabaseLocation {
        &self.location
    }

    /// The database URL to hand to kodiai (`DATABASE_URL`).
    pub fn url(&self) -> String {
        match &self.location {
            DatabaseLocation::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseLocation::Postgres(url) => url.clone(),
        }
    }

    /// The SQLite file, if this is a SQLite database.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match &self.location {
            DatabaseLocation::Sqlite(path) => Some(path.clone()),
            DatabaseLocation::Postgres(_) => None,
        }
    }

    /// Opens the database without migrating it.
    pub async fn connect(&self) -> Store {
        Store::connect(&ConnectOptions {
            location: self.location.clone(),
            max_connections: 4,
        })
        .await
        .unwrap_or_else(|e| panic!("cannot open the test database: {e}"))
    }

    /// Runs one statement from outside the store, as an operator (or another version of
    /// kodiai) would; returns the rows it changed.
    pub async fn execute(&self, sql: &'static str) -> u64 {
        let run = async {
            match &self.location {
                DatabaseLocation::Sqlite(path) => {
                    let url = format!("sqlite://{}", path.display());
                    let pool = sqlx::SqlitePool::connect(&url).await?;
                    let done = sqlx::query(sql).execute(&pool).await?;
                    pool.close().await;
                    Ok::<u64, sqlx::Error>(done.rows_affected())
                }
                DatabaseLocation::Postgres(url) => {
                    let pool = sqlx::PgPool::connect(url).await?;
                    let done = sqlx::query(sql).execute(&pool).await?;
                    pool.close().await;
                    Ok(done.rows_affected())
                }
            }
        };
        run.await
            .unwrap_or_else(|e| panic!("cannot run {sql:?} on the test database: {e}"))
    }

    /// Opens and migrates the database.
    pub async fn store(&self) -> Store {
        let store = self.connect().await;
        store
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("cannot migrate the test database: {e}"));
        store
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.pg_cleanup.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot be blocked on; a thread with its own
        // runtime does the async work, and joining it keeps databases from piling up.
        let handle = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(options) = PgConnectOptions::from_str(&admin_url) else {
                    return;
                };
                if let Ok(mut conn) = options.connect().await {
                    let drop_sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop_sql))
                        .execute(&mut conn)
                        .await;
                }
            });
        });
        let _ = handle.join();
    }
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// Runs one async test body on SQLite and on PostgreSQL, as two tests `NAME::sqlite` and
/// `NAME::postgres`. The body gets a fresh, unmigrated [`TestDb`] bound to the given name.
///
/// ```text
/// both_backends!(migrations_are_idempotent, |db| {
///     let store = db.store().await;
///     assert_eq!(store.migrate().await.unwrap(), 1);
/// });
/// ```
#[macro_export]
macro_rules! both_backends {
    ($name:ident, |$db:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let $db = $crate::testing::TestDb::sqlite();
                $body
            }

            #[tokio::test]
            async fn postgres() {
                let Some($db) = $crate::testing::TestDb::postgres().await else {
                    return;
                };
                $body
            }
        }
    };
}
