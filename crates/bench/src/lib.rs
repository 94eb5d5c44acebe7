//! `kodiai bench …`: measurements on this machine, printed as a table beside the targets they are
//! held to (`startup`: the real binary; `queue`: the store and workers in process), and the real
//! binary as child processes ([`ServeProcess`], [`KodiaiProcess`]) for benchmarks and tests.

pub mod agent;
pub mod checkout;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use kodiai_protocol::{JobKind, JobSpec, JobState, NoopJob};
use kodiai_store::{
    Backend, ClaimRequest, ConnectOptions, DatabaseLocation, Finish, KeyLimits, Lease, NewJob,
    Store,
};
use sqlx::{Connection, PgConnection};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use kodiai_runtime::jobs::{Clock, Handlers, Outcome, Worker, WorkerSettings};

mod ingress;
pub use ingress::{IngressOptions, ingress, slow_review_handlers};
pub mod review_context;
pub mod search;

/// Targets of the foundation issue.
const STARTUP_TARGET: Duration = Duration::from_millis(100);
const RSS_TARGET_KIB: u64 = 30 * 1024;

/// One start of the server.
struct StartupSample {
    to_ready: Duration,
    rss_kib: u64,
}

/// Starts `exe serve` `runs` times, each on a new SQLite file in a new data folder, and measures
/// the time from spawn to the first 200 from `/ready`, and the resident memory right then.
pub async fn startup(exe: &Path, runs: u32) -> anyhow::Result<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .context("building the HTTP client")?;
    let mut samples = Vec::new();
    for _ in 0..runs {
        samples.push(start_once(exe, &client).await?);
    }

    let mut times: Vec<f64> = samples
        .iter()
        .map(|s| s.to_ready.as_secs_f64() * 1000.0)
        .collect();
    let mut rss: Vec<f64> = samples.iter().map(|s| s.rss_kib as f64 / 1024.0).collect();
    times.sort_by(f64::total_cmp);
    rss.sort_by(f64::total_cmp);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "kodiai bench startup: {runs} cold starts of `kodiai serve`, each on a new SQLite file"
    );
    let _ = writeln!(
        out,
        "{:<22} {:>9} {:>9} {:>9} {:>9} {:>10}  verdict",
        "metric", "min", "p50", "p90", "max", "target"
    );
    for (name, unit, values, target) in [
        (
            "start to /ready 200",
            "ms",
            &times,
            STARTUP_TARGET.as_secs_f64() * 1000.0,
        ),
        (
            "RSS when ready",
            "MiB",
            &rss,
            RSS_TARGET_KIB as f64 / 1024.0,
        ),
    ] {
        let p90 = percentile(values, 0.9);
        let _ = writeln!(
            out,
            "{:<22} {:>9} {:>9} {:>9} {:>9} {:>10}  {}",
            name,
            format!("{:.1}{unit}", percentile(values, 0.0)),
            format!("{:.1}{unit}", percentile(values, 0.5)),
            format!("{p90:.1}{unit}"),
            format!("{:.1}{unit}", percentile(values, 1.0)),
            format!("<{target:.0}{unit}"),
            if p90 < target {
                "ok (p90 under target)"
            } else {
                "MISSED (p90 over target)"
            },
        );
    }
    Ok(out)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn start_once(exe: &Path, client: &reqwest::Client) -> anyhow::Result<StartupSample> {
    let dir = tempfile::tempdir().context("creating a data folder")?;
    let started = Instant::now();
    let mut server = ServeProcess::start(exe, dir.path(), &[]).await?;
    let url = format!("http://{}/ready", server.addr);
    let to_ready = loop {
        if client
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("/ready did not answer 200 within 30 s");
        }
        tokio::task::yield_now().await;
    };
    let rss_kib = server.pid().map_or(0, resident_kib);
    server.kill().await;
    Ok(StartupSample { to_ready, rss_kib })
}

/// Targets of the queue issue, with 4 workers on this machine.
const QUEUE_TARGET_SQLITE: f64 = 3000.0;
const QUEUE_TARGET_POSTGRES: f64 = 1000.0;
const CLAIM_P99_TARGET_MS: f64 = 10.0;
/// The worker count the targets are for.
const TARGET_WORKERS: u32 = 4;

/// What `kodiai bench queue` runs.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// No-op jobs per run.
    pub jobs: u32,
    /// Workers per run: one run per count and backend.
    pub workers: Vec<u32>,
    /// Concurrency keys the jobs are spread over, round robin (`installation:<i>`).
    pub keys: u32,
    pub sqlite: bool,
    /// A PostgreSQL server to create the run's databases on (and drop them from); `None` for
    /// SQLite only.
    pub postgres_url: Option<String>,
    /// Lease, timeouts and the rest; the per-key limits are replaced (see [`queue`]).
    pub settings: WorkerSettings,
}

/// One run's measurements.
struct QueueSample {
    backend: Backend,
    workers: u32,
    jobs: u32,
    enqueue: Duration,
    drain: Duration,
    /// The second pass's drain: claim and finish without a worker around them.
    direct: Duration,
    /// `Worker::try_execute_job_and_claim_next` calls that completed a job (run, finish and
    /// the next claim; the first one's own claim too), in ms.
    steps: Vec<f64>,
    /// `Store::claim` calls of the second pass, in ms.
    claims: Vec<f64>,
}

impl QueueSample {
    fn rate(&self, took: Duration) -> f64 {
        f64::from(self.jobs) / took.as_secs_f64()
    }
}

/// Per run (backend × worker count) on a fresh database: enqueue `jobs` no-op jobs one per
/// transaction (as webhooks and the API do), then drain them with that many [`Worker`]s calling
/// [`Worker::try_execute_job_and_claim_next`] until the queue is empty, as the worker pool does.
/// A second pass enqueues as many again and drains them with the same number of tasks calling
/// [`Store::claim`] and [`Store::finish`] directly, to time the claim alone (the workers' claims
/// are inside their steps, mostly together with a finish).
///
/// The per-key running limit is the largest worker count, so that it never holds a worker back
/// (it is still checked on every claim), and the rate limit is off: the queue's cost is measured,
/// not its limits.
pub async fn queue(options: &QueueOptions) -> anyhow::Result<String> {
    let max_workers = options.workers.iter().copied().max().unwrap_or(1).max(1);
    let mut settings = options.settings.clone();
    settings.limits = KeyLimits {
        max_running: max_workers,
        rate: None,
    };
    let settings = Arc::new(settings);

    let mut notes = Vec::new();
    let mut postgres = None;
    if let Some(url) = &options.postgres_url {
        match postgres_reachable(url).await {
            Ok(()) => postgres = Some(url.as_str()),
            Err(why) if options.sqlite => {
                notes.push(format!("{why}; benchmarking SQLite only"));
            }
            Err(why) => bail!("{why}"),
        }
    }

    let mut samples = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        for &workers in &options.workers {
            let Some(db) = BenchDb::measured(backend, options.sqlite, postgres).await? else {
                continue;
            };
            let result = queue_run(&db, backend, workers.max(1), options, &settings).await;
            db.drop_database().await;
            samples.push(result?);
        }
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "kodiai bench queue: {} no-op jobs per run over {} concurrency keys, per-key limit {max_workers} running, \
         no rate limit; one job per enqueue transaction; a fresh database per run",
        options.jobs, options.keys
    );
    for note in &notes {
        let _ = writeln!(out, "{note}");
    }
    let _ = writeln!(
        out,
        "{:<9} {:>7} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "backend",
        "workers",
        "jobs",
        "enqueue/s",
        "drain/s",
        "e2e/s",
        "direct/s",
        "claim p50",
        "claim p99",
        "job p50",
        "job p99",
    );
    for sample in &mut samples {
        sample.claims.sort_by(f64::total_cmp);
        sample.steps.sort_by(f64::total_cmp);
        let _ = writeln!(
            out,
            "{:<9} {:>7} {:>7} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>10} {:>10} {:>10} {:>10}",
            sample.backend.as_str(),
            sample.workers,
            sample.jobs,
            sample.rate(sample.enqueue),
            sample.rate(sample.drain),
            sample.rate(sample.enqueue + sample.drain),
            sample.rate(sample.direct),
            format!("{:.2}ms", percentile(&sample.claims, 0.5)),
            format!("{:.2}ms", percentile(&sample.claims, 0.99)),
            format!("{:.2}ms", percentile(&sample.steps, 0.5)),
            format!("{:.2}ms", percentile(&sample.steps, 0.99)),
        );
    }
    for line in [
        "drain/s: jobs claimed, run and finished per second by the Workers (Worker::try_execute_job_and_claim_next, as the pool runs them)",
        "e2e/s: jobs / (enqueue time + drain time)",
        "direct/s: second pass, as many tasks calling Store::claim and Store::finish, no Worker",
        "claim: one Store::claim call (second pass); job: one Worker::try_execute_job_and_claim_next call",
    ] {
        let _ = writeln!(out, "{line}");
    }
    for sample in samples.iter().filter(|s| s.workers == TARGET_WORKERS) {
        let target = match sample.backend {
            Backend::Sqlite => QUEUE_TARGET_SQLITE,
            Backend::Postgres => QUEUE_TARGET_POSTGRES,
        };
        let drain = sample.rate(sample.drain);
        let p99 = percentile(&sample.claims, 0.99);
        let _ = writeln!(
            out,
            "target {} with {TARGET_WORKERS} workers: drain >= {target:.0} jobs/s: {} ({drain:.0}); claim p99 < {CLAIM_P99_TARGET_MS:.0}ms: {} ({p99:.2}ms)",
            sample.backend.as_str(),
            if drain >= target { "ok" } else { "MISSED" },
            if p99 < CLAIM_P99_TARGET_MS {
                "ok"
            } else {
                "MISSED"
            },
        );
    }
    Ok(out)
}

/// Whether `url` is a PostgreSQL server kodiai can connect to; the error is one line without
/// the password.
async fn postgres_reachable(url: &str) -> Result<(), String> {
    let shown = kodiai_store::redact_url(url);
    match DatabaseLocation::parse(url) {
        Ok(DatabaseLocation::Postgres(_)) => {}
        Ok(DatabaseLocation::Sqlite(_)) => {
            return Err(format!("{shown} is not a PostgreSQL URL"));
        }
        Err(expected) => {
            return Err(format!(
                "the PostgreSQL URL is not usable: expected {expected}"
            ));
        }
    }
    match PgConnection::connect(url).await {
        Ok(conn) => {
            let _ = conn.close().await;
            Ok(())
        }
        Err(e) => Err(format!("PostgreSQL is not reachable at {shown} ({e})")),
    }
}

async fn queue_run(
    db: &BenchDb,
    backend: Backend,
    workers: u32,
    options: &QueueOptions,
    settings: &Arc<WorkerSettings>,
) -> anyhow::Result<QueueSample> {
    let store = Store::connect(&ConnectOptions {
        location: db.location.clone(),
        // A connection per worker, and some for the listener and reads.
        max_connections: (workers + 4).max(10),
    })
    .await?;
    store.migrate().await?;
    let result = queue_passes(&store, backend, workers, options, settings).await;
    store.close().await;
    result
}

async fn queue_passes(
    store: &Store,
    backend: Backend,
    workers: u32,
    options: &QueueOptions,
    settings: &Arc<WorkerSettings>,
) -> anyhow::Result<QueueSample> {
    let jobs = options.jobs;
    let keys = options.keys.max(1);
    let job = |i: u32| {
        NewJob::new(JobSpec::Noop(NoopJob {
            label: Some(format!("bench {i}")),
        }))
        .concurrency_key(format!("installation:{}", i % keys))
    };

    // Pass 1: enqueue one job per transaction, then drain with workers.
    let started = Instant::now();
    for i in 0..jobs {
        store.enqueue(&job(i), Utc::now()).await?;
    }
    let enqueue = started.elapsed();

    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        let worker = Worker::new(
            store.clone(),
            Handlers::builtin(),
            Arc::clone(settings),
            Clock::System,
        );
        tasks.spawn(async move {
            let mut took = Vec::new();
            let running = tokio_util::sync::CancellationToken::new();
            loop {
                let step = Instant::now();
                match worker.try_execute_job_and_claim_next(&running).await? {
                    Outcome::Completed { .. } => took.push(millis(step.elapsed())),
                    // Nothing is held: the step found no job held and none to claim.
                    Outcome::EmptyQueue => return anyhow::Ok(took),
                }
            }
        });
    }
    let mut steps = Vec::with_capacity(jobs as usize);
    while let Some(joined) = tasks.join_next().await {
        steps.extend(joined.context("a bench worker panicked")??);
    }
    let drain = started.elapsed();
    expect_succeeded(store, jobs).await?;

    // Pass 2: as many jobs again (batched: not measured), drained by direct claims.
    let mut tx = store.begin().await?;
    for i in 0..jobs {
        tx.enqueue(&job(i), Utc::now()).await?;
        if i % 500 == 499 {
            tx.commit().await?;
            tx = store.begin().await?;
        }
    }
    tx.commit().await?;
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for n in 0..workers {
        let store = store.clone();
        let settings = Arc::clone(settings);
        let name = format!("bench/{}/{n}", std::process::id());
        tasks.spawn(async move {
            let request = ClaimRequest {
                worker: &name,
                kinds: &[JobKind::Noop],
                lease: settings.lease,
                limits: settings.limits,
            };
            let mut took = Vec::new();
            loop {
                let claim = Instant::now();
                let Some(job) = store.claim(&request, Utc::now()).await? else {
                    return anyhow::Ok(took);
                };
                took.push(millis(claim.elapsed()));
                let lease = Lease::of(&job).context("a claimed job without a lease")?;
                store
                    .finish(
                        &lease,
                        Finish::Succeeded(serde_json::Value::Null),
                        Utc::now(),
                    )
                    .await?;
            }
        });
    }
    let mut claims = Vec::with_capacity(jobs as usize);
    while let Some(joined) = tasks.join_next().await {
        claims.extend(joined.context("a bench claimer panicked")??);
    }
    let direct = started.elapsed();
    expect_succeeded(store, jobs * 2).await?;

    Ok(QueueSample {
        backend,
        workers,
        jobs,
        enqueue,
        drain,
        direct,
        steps,
        claims,
    })
}

fn millis(took: Duration) -> f64 {
    took.as_secs_f64() * 1000.0
}

/// Fails unless exactly `expected` jobs exist and all of them succeeded.
async fn expect_succeeded(store: &Store, expected: u32) -> anyhow::Result<()> {
    let counts = store.job_counts().await?;
    let succeeded: i64 = counts
        .iter()
        .filter(|(_, state, _)| *state == JobState::Succeeded)
        .map(|(_, _, n)| n)
        .sum();
    let all: i64 = counts.iter().map(|(_, _, n)| n).sum();
    if succeeded != i64::from(expected) || all != i64::from(expected) {
        bail!("after the drain {succeeded} of {all} jobs succeeded; expected all {expected}");
    }
    Ok(())
}

/// A database for one run: a SQLite file in a new folder, or a new PostgreSQL database
/// `kodiai_bench_<uuid>` that [`BenchDb::drop_database`] drops.
struct BenchDb {
    location: DatabaseLocation,
    _dir: Option<tempfile::TempDir>,
    /// The admin URL and the database's name.
    postgres: Option<(String, String)>,
}

impl BenchDb {
    /// A fresh database of `backend` when it is measured (SQLite when `sqlite`, PostgreSQL when
    /// its server `postgres` was reachable); `None` when it is not.
    async fn measured(
        backend: Backend,
        sqlite: bool,
        postgres: Option<&str>,
    ) -> anyhow::Result<Option<Self>> {
        Ok(match (backend, postgres) {
            (Backend::Sqlite, _) if sqlite => Some(Self::sqlite()?),
            (Backend::Postgres, Some(url)) => Some(Self::postgres(url).await?),
            _ => None,
        })
    }

    fn sqlite() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("creating a folder for the SQLite file")?;
        Ok(Self {
            location: DatabaseLocation::Sqlite(dir.path().join("kodiai.db")),
            _dir: Some(dir),
            postgres: None,
        })
    }

    async fn postgres(admin_url: &str) -> anyhow::Result<Self> {
        let name = format!("kodiai_bench_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("connecting to {}", kodiai_store::redact_url(admin_url)))?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
        let _ = conn.close().await;
        let mut url = url::Url::parse(admin_url).context("the PostgreSQL URL is not a URL")?;
        url.set_path(&name);
        Ok(Self {
            location: DatabaseLocation::Postgres(url.to_string()),
            _dir: None,
            postgres: Some((admin_url.to_owned(), name)),
        })
    }

    /// The `DATABASE_URL` of this database.
    fn url(&self) -> String {
        match &self.location {
            DatabaseLocation::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseLocation::Postgres(url) => url.clone(),
        }
    }

    /// Drops the PostgreSQL database (best effort: a failure leaves a `kodiai_bench_` database
    /// behind, which is not worth failing the benchmark for).
    async fn drop_database(&self) {
        let Some((admin_url, name)) = &self.postgres else {
            return;
        };
        if let Ok(mut conn) = PgConnection::connect(admin_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
            let _ = conn.close().await;
        }
    }
}

/// A `kodiai` command running as a child process on its own data folder with JSON logs; killed
/// when dropped.
pub struct KodiaiProcess {
    pub child: Child,
    /// Every log line after the one that said the process is up, parsed.
    pub logs: mpsc::UnboundedReceiver<serde_json::Value>,
}

impl KodiaiProcess {
    /// Starts `exe worker` (workers without HTTP) with `env` on top of a clean environment for
    /// kodiai's own settings (`DATABASE_URL` belongs in `env`), and returns once its workers
    /// run; for benchmarks and tests with several processes on one PostgreSQL database.
    pub async fn start_worker(
        exe: &Path,
        data_dir: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let (child, _, logs) =
            spawn_logged(exe, &["worker"], data_dir, env, "workers running").await?;
        Ok(Self { child, logs })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits for the next log line whose message is `message`; `None` if the process exited first.
    pub async fn wait_for_log(&mut self, message: &str) -> Option<serde_json::Value> {
        next_log(&mut self.logs, message).await
    }

    /// Sends SIGTERM (a graceful stop); wait on `child` for the exit.
    pub async fn terminate(&self) -> anyhow::Result<()> {
        sigterm(self.pid()).await
    }

    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// `kodiai serve` as a child process on port 0; used by the benchmarks and by the tests that
/// need a real process (signals, exit codes).
pub struct ServeProcess {
    pub process: KodiaiProcess,
    /// The address from the server's `listening` log line.
    pub addr: SocketAddr,
}

impl ServeProcess {
    /// Starts `exe serve` with `env` on top of a clean environment for kodiai's own settings,
    /// and returns once it logged the address it listens on.
    pub async fn start(exe: &Path, data_dir: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_command(exe, &["serve"], data_dir, env).await
    }

    /// [`ServeProcess::start`] with another command that logs `listening` with its address
    /// (`kodiai bench ingress-server`).
    pub async fn start_command(
        exe: &Path,
        args: &[&str],
        data_dir: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let (child, entry, logs) = spawn_logged(exe, args, data_dir, env, "listening").await?;
        let addr = entry["addr"].as_str().unwrap_or_default();
        let addr = addr
            .parse()
            .with_context(|| format!("the server logged a bad address {addr:?}"))?;
        Ok(Self {
            process: KodiaiProcess { child, logs },
            addr,
        })
    }
}

impl std::ops::Deref for ServeProcess {
    type Target = KodiaiProcess;

    fn deref(&self) -> &KodiaiProcess {
        &self.process
    }
}

impl std::ops::DerefMut for ServeProcess {
    fn deref_mut(&mut self) -> &mut KodiaiProcess {
        &mut self.process
    }
}

/// Starts `exe <args>` with JSON logs and kodiai's settings cleared but for `env`, reads its
/// stdout until a log line with message `ready`, and returns the child, that line, and the later
/// lines (read on, so that the child never blocks on a full pipe).
async fn spawn_logged(
    exe: &Path,
    args: &[&str],
    data_dir: &Path,
    env: &[(&str, &str)],
    ready: &str,
) -> anyhow::Result<(
    Child,
    serde_json::Value,
    mpsc::UnboundedReceiver<serde_json::Value>,
)> {
    let command_name = args.join(" ");
    let mut command = Command::new(exe);
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("KODIAI_CONFIG")
        .env("KODIAI_DATA_DIR", data_dir)
        .env("KODIAI_HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .current_dir(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {} {command_name}", exe.display()))?;
    let stdout = child
        .stdout
        .take()
        .with_context(|| format!("no stdout from kodiai {command_name}"))?;
    let mut lines = BufReader::new(stdout).lines();
    let first = loop {
        let Some(line) = lines.next_line().await? else {
            bail!("kodiai {command_name} exited before it logged {ready:?}");
        };
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if entry["message"] == ready {
            break entry;
        }
    };
    let (sender, logs) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(entry) = serde_json::from_str(&line) {
                let _ = sender.send(entry);
            }
        }
    });
    Ok((child, first, logs))
}

async fn next_log(
    logs: &mut mpsc::UnboundedReceiver<serde_json::Value>,
    message: &str,
) -> Option<serde_json::Value> {
    while let Some(entry) = logs.recv().await {
        if entry["message"] == message {
            return Some(entry);
        }
    }
    None
}

/// SIGTERM through kill(1): the workspace forbids `unsafe`, so no direct `libc::kill`.
async fn sigterm(pid: Option<u32>) -> anyhow::Result<()> {
    let pid = pid.context("the process has exited already")?;
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .context("running kill")?;
    if !status.success() {
        bail!("kill -TERM {pid} failed: {status}");
    }
    Ok(())
}

/// VmRSS of a process, from /proc (0 where there is no /proc).
fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
