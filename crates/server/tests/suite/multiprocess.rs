//! Several processes on one PostgreSQL database: two `kodiai worker`s and a `kodiai serve`
//! share one queue, and every job runs exactly once.
//!
//! The processes start before the jobs are enqueued, so that all three hear the one `queued`
//! notification of the enqueue and each takes part; the test then follows the jobs through the
//! store's notifications (no polling, no sleeps) under an overall deadline.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use kodiai_bench::{KodiaiProcess, ServeProcess};
use kodiai_protocol::{JobEventKind, JobSpec, NoopJob};
use kodiai_store::{NewJob, Signal, Store};
use kodiai_test_support::TestDb;

const EXE: &str = env!("CARGO_BIN_EXE_kodiai");
const JOBS: i64 = 10_000;
const KEYS: i64 = 64;
/// Fails the test if the jobs are not done by then (a stuck queue, not a slow machine).
const DEADLINE: Duration = Duration::from_secs(300);

/// How many jobs are in a final state (succeeded, failed or cancelled).
async fn finished_jobs(store: &Store) -> i64 {
    store
        .job_counts()
        .await
        .unwrap()
        .iter()
        .filter(|(_, state, _)| state.is_final())
        .map(|(_, _, n)| n)
        .sum()
}

/// The pid part of a worker name `<host>/<pid>/<unique>`.
fn pid_of(worker: &str) -> u32 {
    worker
        .split('/')
        .nth(1)
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("worker name {worker:?} is not <host>/<pid>/<unique>"))
}

#[tokio::test]
async fn two_worker_processes_and_a_server_run_every_job_exactly_once() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let store = db.store().await;
    let url = db.url();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("KODIAI_WORKERS", "4"),
        // 156 jobs per key: the default rate limit (60 a minute) would stretch this to minutes.
        ("KODIAI_JOBS_PER_KEY_RATE_PER_MINUTE", "0"),
        // Two info lines per job from each process would only cost the test time to parse.
        ("RUST_LOG", "info,kodiai_runtime::jobs=warn"),
    ];
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut first = KodiaiProcess::start_worker(Path::new(EXE), dirs[0].path(), &env)
        .await
        .unwrap();
    let mut second = KodiaiProcess::start_worker(Path::new(EXE), dirs[1].path(), &env)
        .await
        .unwrap();
    let mut server = ServeProcess::start(Path::new(EXE), dirs[2].path(), &env)
        .await
        .unwrap();
    let pids: BTreeSet<u32> = [first.pid(), second.pid(), server.pid()]
        .into_iter()
        .map(|pid| pid.unwrap())
        .collect();

    let mut signals = store.subscribe().await.unwrap();
    // One transaction: the processes see all jobs at once, and the enqueue does not compete
    // with them for the machine.
    let now = Utc::now();
    let mut tx = store.begin().await.unwrap();
    for i in 0..JOBS {
        let job = NewJob::new(JobSpec::Noop(NoopJob {
            label: Some(format!("job {i}")),
        }))
        .concurrency_key(format!("installation:{}", i % KEYS));
        tx.enqueue(&job, now).await.unwrap();
    }
    tx.commit().await.unwrap();

    // Recount from the database only when the `finished` notifications seen since the last
    // count could account for every job (or some may have been missed): a count per event
    // would load the database the processes are working on.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let finished = finished_jobs(&store).await;
        if finished == JOBS {
            break;
        }
        let mut seen = finished;
        while seen < JOBS {
            let signal = tokio::time::timeout_at(deadline, signals.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("jobs still unfinished after {DEADLINE:?} (about {seen} of {JOBS} done)")
                });
            match signal {
                Signal::JobEvent {
                    kind: JobEventKind::Finished,
                    ..
                } => seen += 1,
                Signal::Resync => break,
                Signal::JobEvent { .. } | Signal::JobsQueued => {}
            }
        }
    }

    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let (succeeded, first_attempt): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE state = 'succeeded'), \
                COUNT(*) FILTER (WHERE state = 'succeeded' AND attempts = 1) FROM jobs",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        (succeeded, first_attempt),
        (JOBS, JOBS),
        "every job succeeded at its first attempt"
    );
    let events: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT kind, COUNT(*), COUNT(DISTINCT job_id) FROM job_events GROUP BY kind ORDER BY kind",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        events,
        vec![
            ("finished".to_owned(), JOBS, JOBS),
            ("started".to_owned(), JOBS, JOBS),
        ],
        "one started and one finished event per job, and no other events"
    );
    let workers: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT data->>'worker' FROM job_events WHERE kind = 'started' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let took_part: BTreeSet<u32> = workers.iter().map(|(name,)| pid_of(name)).collect();
    assert_eq!(
        took_part, pids,
        "the started events name workers of exactly the three processes: {workers:?}"
    );
    assert!(
        workers.len() <= 12,
        "at most 4 workers per process: {workers:?}"
    );

    first.terminate().await.unwrap();
    second.terminate().await.unwrap();
    server.terminate().await.unwrap();
    for (name, child) in [
        ("first worker", &mut first.child),
        ("second worker", &mut second.child),
        ("server", &mut server.child),
    ] {
        let status = child.wait().await.unwrap();
        assert_eq!(status.code(), Some(0), "{name} exit status");
    }
}
