//! kodiai's database: one [`Store`] over SQLite (the default, a file under the data folder) or
//! PostgreSQL (when the database URL says `postgres://`), with the same schema and behaviour.
//!
//! Each backend has its own embedded migrations (`migrations/sqlite`, `migrations/postgres`);
//! queries are runtime queries in SQL both backends accept, or split per backend where they
//! cannot be. Every store test runs on both backends (see [`testing`]). What every table module
//! needs to run them (the pools, transactions, timestamps, pages) is in `db`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

mod checkpointer;
mod db;
pub mod deliveries;
pub mod jobs;
pub mod llm_calls;
pub mod reviews;
pub mod signals;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use db::Tx;
pub use deliveries::{
    DeliveryFilter, InstallationRecord, InstallationState, InstallationUpdate, NewDelivery,
    RepositoryRecord, RepositoryUpdate, StoredOutcome,
};
pub use jobs::{
    ClaimRequest, Enqueued, Finish, JobFilter, KeyLimits, Lease, NewJob, RateLimit, Reaped,
    Transition,
};
pub use llm_calls::{LlmCall, ModelUsage, NewLlmCall};
pub use reviews::{PostedFinding, ReviewRecord, ReviewedHead};
pub use signals::{Signal, Subscription};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a query waits for a locked SQLite database, and how long any caller waits for a
/// pooled connection, before giving up with an error instead of hanging.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Store errors. Callers decide on the variant: `Connect` stops start-up, `NotReady` makes
/// `/ready` answer 503, `Database` is an internal error of whatever operation ran.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database could not be opened or reached. The message names the database with any
    /// password masked.
    #[error("cannot open database {database}: {source}")]
    Connect {
        database: String,
        #[source]
        source: sqlx::Error,
    },
    /// The SQLite file's folder could not be created.
    #[error("cannot create the database folder {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Applying the embedded migrations failed.
    #[error("migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The database answers but is not usable yet (for example, migrations are pending).
    #[error("{0}")]
    NotReady(String),
    /// A stored value this build cannot read (an unknown state, a payload that is not JSON).
    #[error("unreadable stored data: {0}")]
    Corrupt(String),
}

/// Which database engine a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Where the database is, as parsed from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// A SQLite file; its folder is created when missing.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://` or `postgresql://`).
    Postgres(String),
}

impl DatabaseLocation {
    /// Parses a `DATABASE_URL`: `postgres://…`, `postgresql://…`, `sqlite://PATH` or `sqlite:PATH`.
    /// The error says what is expected; it never repeats the URL (it may hold a password).
    pub fn parse(url: &str) -> std::result::Result<Self, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            PgConnectOptions::from_str(url)
                .map_err(|e| format!("a valid PostgreSQL URL ({})", strip_url(&e.to_string())))?;
            return Ok(Self::Postgres(url.to_owned()));
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() || path == ":memory:" {
                return Err("a SQLite file path (sqlite://PATH); in-memory databases lose every job on restart".into());
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        Err("a URL starting with postgres://, postgresql:// or sqlite://".into())
    }

    /// A description safe to log: the SQLite path, or the PostgreSQL URL with its password masked.
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
            Self::Postgres(url) => redact_url(url),
        }
    }
}

/// Replaces the password of a URL with `****`. Unparseable input is replaced whole, since it
/// may still contain a password.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() && parsed.set_password(Some("****")).is_err() {
                return "<redacted url>".into();
            }
            parsed.to_string()
        }
        Err(_) => "<redacted url>".into(),
    }
}

/// sqlx's URL parse errors can quote the URL; keep only the part before any quote.
fn strip_url(message: &str) -> String {
    message
        .split(['"', '`', '\''])
        .next()
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// Pool sizes and similar knobs, from configuration.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub location: DatabaseLocation,
    /// Connections in the (reading) pool. SQLite writes go through one writer connection.
    pub max_connections: u32,
}

/// The database handle: cheap to clone, shared by the HTTP handlers and the workers.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Inner,
    shared: Arc<Shared>,
}

/// What clones of one store share: the signal channel and, on PostgreSQL, its listener.
#[derive(Debug)]
struct Shared {
    signals: tokio::sync::broadcast::Sender<Signal>,
    listener: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// SQLite: the queue's hold on the writer connection.
    queue_writer: jobs::QueueWriter,
    /// SQLite: the background WAL checkpointer (see [`checkpointer`]).
    checkpointer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug, Clone)]
enum Inner {
    /// SQLite allows one writer at a time; a dedicated one-connection pool for writes avoids
    /// `SQLITE_BUSY` on lock upgrades, while reads run in parallel on the other pool (WAL mode).
    Sqlite {
        reader: SqlitePool,
        writer: SqlitePool,
    },
    Postgres(PgPool),
}

impl Store {
    /// Opens the database (creating the SQLite file and its folder when missing). Does not
    /// migrate: call [`Store::migrate`].
    pub async fn connect(options: &ConnectOptions) -> Result<Self> {
        let inner = match &options.location {
            DatabaseLocation::Sqlite(path) => {
                let (reader, writer) = open_sqlite(path, options.max_connections).await?;
                Inner::Sqlite { reader, writer }
            }
            DatabaseLocation::Postgres(url) => {
                let connect = PgConnectOptions::from_str(url).map_err(|source| Error::Connect {
                    database: redact_url(url),
                    source,
                })?;
                let pool = PgPoolOptions::new()
                    .max_connections(options.max_connections.max(1))
                    .acquire_timeout(BUSY_TIMEOUT)
                    .connect_with(connect)
                    .await
                    .map_err(|source| Error::Connect {
                        database: redact_url(url),
                        source,
                    })?;
                Inner::Postgres(pool)
            }
        };
        let store = Self {
            inner,
            shared: Arc::new(Shared {
                signals: tokio::sync::broadcast::channel(signals::CAPACITY).0,
                listener: tokio::sync::Mutex::new(None),
                queue_writer: jobs::QueueWriter::default(),
                checkpointer: std::sync::Mutex::new(None),
            }),
        };
        if let Inner::Sqlite { reader, .. } = &store.inner {
            let task = tokio::spawn(checkpointer::run(
                reader.clone(),
                Arc::downgrade(&store.shared),
            ));
            if let Ok(mut slot) = store.shared.checkpointer.lock() {
                *slot = Some(task);
            }
        }
        Ok(store)
    }

    /// SQLite: copies the committed write-ahead log into the database file now (what the
    /// background checkpointer does every [`checkpointer::EVERY`]). Answers the log's frames
    /// and how many of them are in the database file; a no-op on PostgreSQL.
    pub async fn checkpoint(&self) -> Result<(i64, i64)> {
        match &self.inner {
            Inner::Sqlite { reader, .. } => checkpointer::passive(reader).await,
            Inner::Postgres(_) => Ok((0, 0)),
        }
    }

    /// Signals about the queue from this process and, on PostgreSQL, from every process on the
    /// database (the first call starts listening and returns once the listener is in place).
    pub async fn subscribe(&self) -> Result<Subscription> {
        let receiver = self.shared.signals.subscribe();
        if let Inner::Postgres(pool) = &self.inner {
            let mut slot = self.shared.listener.lock().await;
            if slot.is_none() {
                let listener = signals::connect(pool).await?;
                let sender = self.shared.signals.clone();
                *slot = Some(tokio::spawn(signals::listen(
                    pool.clone(),
                    listener,
                    sender,
                )));
            }
        }
        Ok(Subscription { receiver })
    }

    /// Sends a signal to this process's subscribers. PostgreSQL's triggers announce every write
    /// to all processes (this one included), so only SQLite needs this.
    pub(crate) fn signal_local(&self, signal: Signal) {
        if matches!(self.inner, Inner::Sqlite { .. }) {
            let _ = self.shared.signals.send(signal);
        }
    }

    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Sqlite { .. } => Backend::Sqlite,
            Inner::Postgres(_) => Backend::Postgres,
        }
    }

    fn migrator(&self) -> &'static Migrator {
        match self.inner {
            Inner::Sqlite { .. } => &SQLITE_MIGRATIONS,
            Inner::Postgres(_) => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies the embedded migrations that are not applied yet and returns how many are applied
    /// in all. Safe to run concurrently from several processes (sqlx takes a database lock).
    pub async fn migrate(&self) -> Result<u32> {
        match &self.inner {
            Inner::Sqlite { writer, .. } => SQLITE_MIGRATIONS.run(writer).await?,
            Inner::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(self.known_migrations())
    }

    /// How many migrations this build knows.
    pub fn known_migrations(&self) -> u32 {
        let count = self
            .migrator()
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// Checks that the database answers and that every migration of this build is applied;
    /// returns how many are. `Err(NotReady)` carries the reason for `/ready`.
    pub async fn check_ready(&self) -> Result<u32> {
        let applied: Vec<(i64, bool)> = db::on_reader!(self, |pool| {
            sqlx::query_as("SELECT version, success FROM _sqlx_migrations")
                .fetch_all(pool)
                .await
        })
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if is_missing_table(db.as_ref()) => {
                Error::NotReady("migrations have not been applied (run `kodiai migrate`)".into())
            }
            _ => Error::NotReady(format!("database unreachable: {e}")),
        })?;

        let mut pending = 0;
        for migration in self.migrator().iter() {
            if migration.migration_type.is_down_migration() {
                continue;
            }
            match applied.iter().find(|(v, _)| *v == migration.version) {
                Some((_, true)) => {}
                Some((_, false)) => {
                    return Err(Error::NotReady(format!(
                        "migration {} ({}) failed part-way; the database needs attention",
                        migration.version, migration.description
                    )));
                }
                None => pending += 1,
            }
        }
        if pending > 0 {
            return Err(Error::NotReady(format!(
                "{pending} of {} migrations are not applied (run `kodiai migrate`)",
                self.known_migrations()
            )));
        }
        Ok(self.known_migrations())
    }

    /// Closes every connection; pending queries finish first.
    pub async fn close(&self) {
        if let Some(listener) = self.shared.listener.lock().await.take() {
            listener.abort();
        }
        match &self.inner {
            Inner::Sqlite { reader, writer } => {
                let checkpointer = self
                    .shared
                    .checkpointer
                    .lock()
                    .ok()
                    .and_then(|mut c| c.take());
                if let Some(task) = checkpointer {
                    task.abort();
                }
                self.shared.queue_writer.release().await;
                reader.close().await;
                writer.close().await;
            }
            Inner::Postgres(pool) => pool.close().await,
        }
    }
}

fn is_missing_table(error: &dyn sqlx::error::DatabaseError) -> bool {
    // PostgreSQL: undefined_table; SQLite reports "no such table" with the generic code 1.
    error.code().as_deref() == Some("42P01") || error.message().contains("no such table")
}

async fn open_sqlite(path: &Path, max_connections: u32) -> Result<(SqlitePool, SqlitePool)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    }
    let connect = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // With WAL, NORMAL loses no committed transaction on a process crash, only on power loss.
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    let describe = |source| Error::Connect {
        database: format!("sqlite://{}", path.display()),
        source,
    };
    // The writer first: it creates the file and switches it to WAL before readers open it.
    // Its commits never checkpoint: copying the log into the database file (and syncing it)
    // inside a commit made that one write, and every request waiting behind it, tens of
    // milliseconds slower. The background checkpointer does it on a reader connection instead.
    // No ping when the writer is taken from the pool: each is a round trip to the connection's
    // thread, and the connection is a thread of this process that sqlx pings anyway when it
    // comes back to the pool (which also settles anything a dropped query left behind).
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .acquire_timeout(BUSY_TIMEOUT)
        .connect_with(connect.clone().pragma("wal_autocheckpoint", "0"))
        .await
        .map_err(describe)?;
    let reader = SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(BUSY_TIMEOUT)
        .connect_with(connect)
        .await
        .map_err(describe)?;
    Ok((reader, writer))
}

#[cfg(test)]
mod tests;
