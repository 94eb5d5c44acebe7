//! Workers against a real database, on SQLite and PostgreSQL: one `try_execute_job` at a time,
//! called directly, with handlers written for each test and the queue's clock moved by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use kodiai_protocol::{FailureReason, JobEventKind, JobKind, JobSpec, JobState, NoopJob};
use kodiai_runtime::jobs::{
    Clock, Handlers, JobContext, JobError, Outcome, Worker, WorkerPool, WorkerSettings,
};
use kodiai_store::{KeyLimits, NewJob, Signal, Store};
use serde_json::{Value, json};
use tokio::sync::mpsc;

fn settings() -> WorkerSettings {
    WorkerSettings {
        lease: Duration::from_secs(60),
        heartbeat: Duration::from_secs(20),
        limits: KeyLimits {
            max_running: 2,
            rate: None,
        },
        poll_interval: Duration::from_secs(1),
        backoff_base: Duration::from_secs(10),
        backoff_max: Duration::from_secs(25),
        default_timeout: Duration::from_secs(600),
        timeouts: Default::default(),
        cancel_grace: Duration::from_secs(5),
    }
}

fn clock() -> Clock {
    Clock::manual(Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap())
}

fn worker(store: &Store, handlers: Handlers, settings: WorkerSettings, clock: &Clock) -> Worker {
    Worker::new(store.clone(), handlers, Arc::new(settings), clock.clone())
}

fn noop() -> NewJob {
    NewJob::new(JobSpec::Noop(NoopJob::default()))
}

async fn enqueue(store: &Store, job: NewJob, clock: &Clock) -> String {
    store.enqueue(&job, clock.now()).await.unwrap().id
}

async fn event_kinds(store: &Store, id: &str) -> Vec<JobEventKind> {
    let events = store.events_after(id, 0, 1000).await.unwrap();
    events.into_iter().map(|e| e.kind).collect()
}

/// A handler that reports each start on a channel, then runs `body`.
fn reporting<F, Fut>(body: F) -> (Handlers, mpsc::UnboundedReceiver<u32>)
where
    F: Fn(JobContext) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<Value, JobError>> + Send + 'static,
{
    let (started, receiver) = mpsc::unbounded_channel();
    let handlers = Handlers::default().with(JobKind::Noop, move |ctx: JobContext| {
        let started = started.clone();
        let body = body.clone();
        async move {
            let _ = started.send(ctx.attempt());
            body(ctx).await
        }
    });
    (handlers, receiver)
}

kodiai_store::both_backends!(a_job_runs_and_succeeds_with_its_result, |db| {
    let store = db.store().await;
    let clock = clock();
    let handlers = Handlers::default().with(JobKind::Noop, |ctx: JobContext| async move {
        ctx.progress(json!({"message": "halfway"})).await?;
        Ok(json!({"label": ctx.job().payload["label"].clone()}))
    });
    let worker = worker(&store, handlers, settings(), &clock);
    let job = NewJob::new(JobSpec::Noop(NoopJob {
        label: Some("hello".into()),
    }));
    let id = enqueue(&store, job, &clock).await;
    assert_eq!(
        worker.try_execute_job().await.unwrap(),
        Outcome::Completed {
            job_id: id.clone(),
            state: JobState::Succeeded
        }
    );
    assert_eq!(worker.try_execute_job().await.unwrap(), Outcome::EmptyQueue);
    let job = store.job(&id).await.unwrap().unwrap();
    assert_eq!(job.result, Some(json!({"label": "hello"})));
    assert_eq!(
        event_kinds(&store, &id).await,
        [
            JobEventKind::Started,
            JobEventKind::Progress,
            JobEventKind::Finished
        ]
    );
});

kodiai_store::both_backends!(
    a_job_whose_worker_died_runs_again_and_completes_once,
    |db| {
        let store = db.store().await;
        let clock = clock();
        // The first worker's handler records a step and hangs; the worker is then killed (its task
        // aborted), so it neither heartbeats nor finishes, as when its process dies.
        let (recorded_tx, mut recorded) = mpsc::unbounded_channel();
        let hanging = Handlers::default().with(JobKind::Noop, move |ctx: JobContext| {
            let recorded = recorded_tx.clone();
            async move {
                ctx.record_step("began", json!(ctx.attempt())).await?;
                let _ = recorded.send(ctx.attempt());
                std::future::pending::<()>().await;
                Ok(Value::Null)
            }
        });
        let doomed = worker(&store, hanging, settings(), &clock);
        let completions = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&completions);
        let (healthy, _) = reporting(move |ctx: JobContext| {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                // The re-run sees what the dead run recorded.
                Ok(json!({"earlier": ctx.step("began").await?}))
            }
        });
        let survivor = worker(&store, healthy, settings(), &clock);

        let id = enqueue(&store, noop(), &clock).await;
        let run = tokio::spawn(async move { doomed.try_execute_job().await });
        assert_eq!(recorded.recv().await, Some(1));
        run.abort();
        assert!(run.await.unwrap_err().is_cancelled());

        // Before the lease runs out the job is still the dead worker's.
        clock.advance(Duration::from_secs(59));
        assert_eq!(
            survivor.try_execute_job().await.unwrap(),
            Outcome::EmptyQueue
        );
        clock.advance(Duration::from_secs(2));
        assert_eq!(
            survivor.try_execute_job().await.unwrap(),
            Outcome::Completed {
                job_id: id.clone(),
                state: JobState::Succeeded
            }
        );
        assert_eq!(
            survivor.try_execute_job().await.unwrap(),
            Outcome::EmptyQueue
        );
        assert_eq!(completions.load(Ordering::SeqCst), 1);
        let job = store.job(&id).await.unwrap().unwrap();
        assert_eq!(job.attempts, 2);
        assert_eq!(job.result, Some(json!({"earlier": 1})));
        assert_eq!(
            event_kinds(&store, &id).await,
            [
                JobEventKind::Started,
                JobEventKind::Step,
                JobEventKind::Error,
                JobEventKind::Started,
                JobEventKind::Finished
            ]
        );
    }
);

kodiai_store::both_backends!(transient_errors_back_off_then_exhaust_the_attempts, |db| {
    let store = db.store().await;
    let clock = clock();
    let (failing, _) =
        reporting(|_ctx: JobContext| async { Err(JobError::transient("GitHub answered 502")) });
    let worker = worker(&store, failing, settings(), &clock);
    let id = enqueue(&store, noop().max_attempts(4), &clock).await;

    // Base 10 s doubling, at most 25 s, less up to half for jitter.
    for (attempt, (low, high)) in [(1, (5.0, 10.0)), (2, (10.0, 20.0)), (3, (12.5, 25.0))] {
        let before = clock.now();
        assert_eq!(
            worker.try_execute_job().await.unwrap(),
            Outcome::Completed {
                job_id: id.clone(),
                state: JobState::Queued
            }
        );
        let job = store.job(&id).await.unwrap().unwrap();
        assert_eq!(job.attempts, attempt);
        let error = job.error.unwrap();
        assert_eq!(error.reason, FailureReason::Transient);
        assert_eq!(error.message, "GitHub answered 502");
        let wait = (job.run_at - before).as_seconds_f64();
        assert!(
            (low..=high).contains(&wait),
            "attempt {attempt}: waits {wait} s"
        );
        // Not before its time.
        assert_eq!(worker.try_execute_job().await.unwrap(), Outcome::EmptyQueue);
        clock.advance((job.run_at - clock.now()).to_std().unwrap());
    }
    assert_eq!(
        worker.try_execute_job().await.unwrap(),
        Outcome::Completed {
            job_id: id.clone(),
            state: JobState::Failed
        }
    );
    let job = store.job(&id).await.unwrap().unwrap();
    assert_eq!(job.attempts, 4);
    let error = job.error.unwrap();
    assert_eq!(error.reason, FailureReason::AttemptsExhausted);
    assert_eq!(error.message, "GitHub answered 502 (attempt 4 of 4)");
});

kodiai_store::both_backends!(a_retry_after_from_the_error_is_honoured, |db| {
    let store = db.store().await;
    let clock = clock();
    let (limited, _) = reporting(|_ctx: JobContext| async {
        Err(JobError::retry_after(
            "rate limited",
            Duration::from_secs(17),
        ))
    });
    let worker = worker(&store, limited, settings(), &clock);
    let id = enqueue(&store, noop(), &clock).await;
    let before = clock.now();
    worker.try_execute_job().await.unwrap();
    let job = store.job(&id).await.unwrap().unwrap();
    assert_eq!(job.run_at - before, chrono::Duration::seconds(17));
});

kodiai_store::both_backends!(a_permanent_error_fails_at_once, |db| {
    let store = db.store().await;
    let clock = clock();
    let (failing, _) =
        reporting(|_ctx: JobContext| async { Err(JobError::permanent("no such repository")) });
    let worker = worker(&store, failing, settings(), &clock);
    let id = enqueue(&store, noop().max_attempts(5), &clock).await;
    assert_eq!(
        worker.try_execute_job().await.unwrap(),
        Outcome::Completed {
            job_id: id.clone(),
            state: JobState::Failed
        }
    );
    let job = store.job(&id).await.unwrap().unwrap();
    assert_eq!(job.attempts, 1);
    assert_eq!(job.error.unwrap().reason, FailureReason::Permanent);
    assert_eq!(worker.try_execute_job().await.unwrap(), Outcome::EmptyQueue);
});

kodiai_store::both_backends!(
    a_timeout_cancels_the_handler_and_keeps_what_it_recorded,
    |db| {
        let store = db.store().await;
        let clock = clock();
        let saw_cancel = Arc::new(AtomicU32::new(0));
        let flag = Arc::clone(&saw_cancel);
        let (slow, _) = reporting(move |ctx: JobContext| {
            let flag = Arc::clone(&flag);
            async move {
                ctx.record_step("cloned", json!("abc123")).await?;
                ctx.cancelled().await;
                flag.fetch_add(1, Ordering::SeqCst);
                ctx.log("stopped on cancellation").await?;
                Ok(json!("partial"))
            }
        });
        let mut short = settings();
        short
            .timeouts
            .insert(JobKind::Noop, Duration::from_millis(50));
        let worker = worker(&store, slow, short, &clock);
        let id = enqueue(&store, noop(), &clock).await;
        assert_eq!(
            worker.try_execute_job().await.unwrap(),
            Outcome::Completed {
                job_id: id.clone(),
                state: JobState::Failed
            }
        );
        assert_eq!(saw_cancel.load(Ordering::SeqCst), 1);
        let job = store.job(&id).await.unwrap().unwrap();
        let error = job.error.unwrap();
        assert_eq!(error.reason, FailureReason::Timeout);
        assert!(
            error.message.contains("noop timeout of 0.05 s"),
            "{}",
            error.message
        );
        assert_eq!(
            event_kinds(&store, &id).await,
            [
                JobEventKind::Started,
                JobEventKind::Step,
                JobEventKind::Log,
                JobEventKind::Finished
            ]
        );
    }
);

kodiai_store::both_backends!(
    a_handler_that_ignores_its_token_is_dropped_after_the_grace,
    |db| {
        let store = db.store().await;
        let clock = clock();
        let (stubborn, _) = reporting(|_ctx: JobContext| async {
            std::future::pending::<()>().await;
            Ok(Value::Null)
        });
        let mut short = settings();
        short
            .timeouts
            .insert(JobKind::Noop, Duration::from_millis(20));
        short.cancel_grace = Duration::from_millis(20);
        let worker = worker(&store, stubborn, short, &clock);
        let id = enqueue(&store, noop(), &clock).await;
        assert_eq!(
            worker.try_execute_job().await.unwrap(),
            Outcome::Completed {
                job_id: id.clone(),
                state: JobState::Failed
            }
        );
        let job = store.job(&id).await.unwrap().unwrap();
        assert_eq!(job.error.unwrap().reason, FailureReason::Timeout);
    }
);

kodiai_store::both_backends!(cancelling_a_running_job_stops_its_handler, |db| {
    let store = db.store().await;
    let clock = clock();
    let (waiting, mut started) = reporting(|ctx: JobContext| async move {
        ctx.cancelled().await;
        Ok(json!("stopped"))
    });
    let worker = worker(&store, waiting, settings(), &clock);
    let id = enqueue(&store, noop(), &clock).await;
    let run = tokio::spawn(async move { worker.try_execute_job().await });
    assert_eq!(started.recv().await, Some(1));
    store
        .cancel_job(&id, "cancelled by an operator", clock.now())
        .await
        .unwrap();
    assert_eq!(
        run.await.unwrap().unwrap(),
        Outcome::Completed {
            job_id: id.clone(),
            state: JobState::Cancelled
        }
    );
    let job = store.job(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    assert_eq!(
        job.result, None,
        "the handler's late result is not recorded"
    );
    assert_eq!(
        event_kinds(&store, &id).await,
        [JobEventKind::Started, JobEventKind::Finished]
    );
});

kodiai_store::both_backends!(a_rerun_skips_the_steps_an_earlier_run_recorded, |db| {
    let store = db.store().await;
    let clock = clock();
    let posts = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&posts);
    let (handler, _) = reporting(move |ctx: JobContext| {
        let counter = Arc::clone(&counter);
        async move {
            let review = match ctx.step("post_review").await? {
                Some(review) => review,
                None => {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let review = json!({"review_id": 77});
                    ctx.record_step("post_review", review.clone()).await?;
                    review
                }
            };
            if ctx.attempt() == 1 {
                return Err(JobError::transient("the summary comment failed"));
            }
            Ok(review)
        }
    });
    let worker = worker(&store, handler, settings(), &clock);
    let id = enqueue(&store, noop(), &clock).await;
    worker.try_execute_job().await.unwrap();
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        worker.try_execute_job().await.unwrap(),
        Outcome::Completed {
            job_id: id.clone(),
            state: JobState::Succeeded
        }
    );
    assert_eq!(
        posts.load(Ordering::SeqCst),
        1,
        "the review was posted once"
    );
    let job = store.job(&id).await.unwrap().unwrap();
    assert_eq!(job.result, Some(json!({"review_id": 77})));
});

kodiai_store::both_backends!(a_panicking_handler_fails_its_job, |db| {
    let store = db.store().await;
    let clock = clock();
    let (panicking, _) = reporting(|ctx: JobContext| async move {
        if ctx.attempt() > 0 {
            panic!("a bug");
        }
        Ok(Value::Null)
    });
    let worker = worker(&store, panicking, settings(), &clock);
    let id = enqueue(&store, noop(), &clock).await;
    worker.try_execute_job().await.unwrap();
    let job = store.job(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Failed);
    let error = job.error.unwrap();
    assert_eq!(error.reason, FailureReason::Panic);
    assert!(
        !error.message.contains("a bug"),
        "panic messages stay in the log"
    );
});

kodiai_store::both_backends!(an_unreadable_payload_fails_at_once, |db| {
    let store = db.store().await;
    let clock = clock();
    let worker = worker(&store, Handlers::builtin(), settings(), &clock);
    let id = enqueue(&store, noop(), &clock).await;
    // A payload this version cannot read, as a newer version might write.
    let sql = match db.location() {
        kodiai_store::DatabaseLocation::Sqlite(_) => "UPDATE jobs SET payload = '{\"label\": 5}'",
        kodiai_store::DatabaseLocation::Postgres(_) => {
            "UPDATE jobs SET payload = '{\"label\": 5}'::jsonb"
        }
    };
    db.execute(sql).await;
    worker.try_execute_job().await.unwrap();
    let job = store.job(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.error.unwrap().reason, FailureReason::InvalidJob);
});

kodiai_store::both_backends!(the_pool_wakes_on_enqueue_without_polling, |db| {
    let store = db.store().await;
    let mut quiet = settings();
    // Far longer than the test may take: only a notification can wake the workers.
    quiet.poll_interval = Duration::from_secs(3600);
    let pool = WorkerPool::start(store.clone(), Handlers::builtin(), quiet, Clock::System, 2);
    let mut signals = store.subscribe().await.unwrap();
    // Let the workers go idle first, so that the job arrives while they wait.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let id = store.enqueue(&noop(), Utc::now()).await.unwrap().id;
    let finished = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Signal::JobEvent {
                job_id,
                kind: JobEventKind::Finished,
                ..
            } = signals.recv().await
                && job_id == id
            {
                return;
            }
        }
    })
    .await;
    assert!(finished.is_ok(), "the job was not run");
    assert_eq!(
        store.job(&id).await.unwrap().unwrap().state,
        JobState::Succeeded
    );
    pool.shutdown(Duration::from_secs(5)).await;
});

kodiai_store::both_backends!(shutdown_releases_jobs_still_running_after_the_grace, |db| {
    let store = db.store().await;
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let handlers = Handlers::default().with(JobKind::Noop, move |ctx: JobContext| {
        let started = started_tx.clone();
        async move {
            let _ = started.send(());
            ctx.cancelled().await;
            Ok(Value::Null)
        }
    });
    let pool = WorkerPool::start(store.clone(), handlers, settings(), Clock::System, 1);
    let id = store.enqueue(&noop(), Utc::now()).await.unwrap().id;
    started.recv().await.unwrap();
    pool.shutdown(Duration::from_millis(50)).await;
    let job = store.job(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.attempts, 0, "a release does not use up an attempt");
    assert_eq!(job.lease_owner, None);
});

/// A token that never fires: a worker that is not stopping.
fn running() -> tokio_util::sync::CancellationToken {
    tokio_util::sync::CancellationToken::new()
}

kodiai_store::both_backends!(
    a_worker_claims_its_next_job_with_the_finish_and_runs_it_next,
    |db| {
        let store = db.store().await;
        let clock = clock();
        let (handlers, mut started) = reporting(|ctx: JobContext| async move {
            Ok(json!({"label": ctx.job().payload["label"].clone()}))
        });
        let worker = worker(&store, handlers, settings(), &clock);
        let first = enqueue(&store, noop(), &clock).await;
        let second = enqueue(&store, noop(), &clock).await;

        assert_eq!(
            worker
                .try_execute_job_and_claim_next(&running())
                .await
                .unwrap(),
            Outcome::Completed {
                job_id: first.clone(),
                state: JobState::Succeeded
            }
        );
        // The second job was claimed by the first one's finish and waits for this worker.
        assert_eq!(worker.held_job(), Some(second.clone()));
        let held = store.job(&second).await.unwrap().unwrap();
        assert_eq!(held.state, JobState::Running);
        assert_eq!(held.lease_owner.as_deref(), Some(worker.name()));
        assert_eq!(held.attempts, 1);
        let other = worker_of(&store, &clock);
        assert_eq!(
            other.try_execute_job().await.unwrap(),
            Outcome::EmptyQueue,
            "a held job is nobody else's"
        );

        // The next step runs it, without claiming anything else.
        let third = enqueue(&store, noop(), &clock).await;
        assert_eq!(
            worker.try_execute_job().await.unwrap(),
            Outcome::Completed {
                job_id: second.clone(),
                state: JobState::Succeeded
            }
        );
        assert_eq!(worker.held_job(), None);
        assert_eq!(
            store.job(&third).await.unwrap().unwrap().state,
            JobState::Queued
        );
        assert_eq!(
            event_kinds(&store, &second).await,
            [JobEventKind::Started, JobEventKind::Finished]
        );
        assert_eq!(
            [started.recv().await, started.recv().await],
            [Some(1), Some(1)]
        );
    }
);

/// A worker with the built-in handlers and the test settings.
fn worker_of(store: &Store, clock: &Clock) -> Worker {
    worker(store, Handlers::builtin(), settings(), clock)
}

kodiai_store::both_backends!(
    a_stopping_worker_queues_its_held_job_again_without_using_an_attempt,
    |db| {
        let store = db.store().await;
        let clock = clock();
        let (handlers, mut started) = reporting(|_ctx: JobContext| async { Ok(Value::Null) });
        let worker = worker(&store, handlers, settings(), &clock);
        let first = enqueue(&store, noop(), &clock).await;
        let second = enqueue(&store, noop(), &clock).await;
        worker
            .try_execute_job_and_claim_next(&running())
            .await
            .unwrap();
        assert_eq!(worker.release_held().await.unwrap(), Some(second.clone()));
        assert_eq!(worker.held_job(), None);
        assert_eq!(worker.release_held().await.unwrap(), None);
        let released = store.job(&second).await.unwrap().unwrap();
        assert_eq!(released.state, JobState::Queued);
        assert_eq!(released.attempts, 0, "a release does not use up an attempt");
        assert_eq!(released.lease_owner, None);
        assert_eq!(
            event_kinds(&store, &second).await,
            [JobEventKind::Started, JobEventKind::Log]
        );

        // It runs later as its first attempt.
        assert_eq!(
            worker.try_execute_job().await.unwrap(),
            Outcome::Completed {
                job_id: second.clone(),
                state: JobState::Succeeded
            }
        );
        assert_eq!(
            [started.recv().await, started.recv().await],
            [Some(1), Some(1)]
        );
        assert_eq!(
            store.job(&first).await.unwrap().unwrap().state,
            JobState::Succeeded
        );
    }
);

kodiai_store::both_backends!(a_stopping_worker_claims_nothing_ahead, |db| {
    let store = db.store().await;
    let clock = clock();
    let worker = worker_of(&store, &clock);
    let first = enqueue(&store, noop(), &clock).await;
    let second = enqueue(&store, noop(), &clock).await;
    let stop = running();
    stop.cancel();
    assert_eq!(
        worker.try_execute_job_and_claim_next(&stop).await.unwrap(),
        Outcome::Completed {
            job_id: first,
            state: JobState::Succeeded
        }
    );
    assert_eq!(worker.held_job(), None);
    let waiting = store.job(&second).await.unwrap().unwrap();
    assert_eq!((waiting.state, waiting.attempts), (JobState::Queued, 0));
});

kodiai_store::both_backends!(
    a_held_job_gets_its_lease_renewed_before_it_runs_once_a_heartbeat_period_passed,
    |db| {
        let store = db.store().await;
        let clock = clock();
        // Each run reports the lease end the store has for its job while it runs.
        let (leases_tx, mut leases) = mpsc::unbounded_channel();
        let handlers = Handlers::default().with(JobKind::Noop, move |ctx: JobContext| {
            let leases = leases_tx.clone();
            async move {
                let stored = ctx.store().job(&ctx.job().id).await.unwrap().unwrap();
                let _ = leases.send((stored.lease_expires_at, ctx.job().lease_expires_at));
                Ok(Value::Null)
            }
        });
        let worker = worker(&store, handlers, settings(), &clock);
        for _ in 0..3 {
            enqueue(&store, noop(), &clock).await;
        }
        let start = clock.now();
        let lease = chrono::Duration::seconds(60);
        worker
            .try_execute_job_and_claim_next(&running())
            .await
            .unwrap();
        assert_eq!(
            leases.recv().await,
            Some((Some(start + lease), Some(start + lease)))
        );

        // Within a heartbeat period (20 s) of its claim, the held job runs on its claim's lease.
        clock.advance(Duration::from_secs(19));
        worker
            .try_execute_job_and_claim_next(&running())
            .await
            .unwrap();
        assert_eq!(
            leases.recv().await,
            Some((Some(start + lease), Some(start + lease)))
        );

        // Later, it is renewed first: a lease from now, in the store and in the job handed over.
        clock.advance(Duration::from_secs(25));
        let now = clock.now();
        worker.try_execute_job().await.unwrap();
        assert_eq!(
            leases.recv().await,
            Some((Some(now + lease), Some(now + lease)))
        );
    }
);

kodiai_store::both_backends!(
    a_held_job_taken_over_after_its_lease_expired_is_not_run_twice,
    |db| {
        let store = db.store().await;
        let clock = clock();
        let runs = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&runs);
        let (handlers, _) = reporting(move |_ctx: JobContext| {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(Value::Null)
            }
        });
        let slow = worker(&store, handlers.clone(), settings(), &clock);
        let other = worker(&store, handlers, settings(), &clock);
        enqueue(&store, noop(), &clock).await;
        let second = enqueue(&store, noop(), &clock).await;
        slow.try_execute_job_and_claim_next(&running())
            .await
            .unwrap();
        assert_eq!(slow.held_job(), Some(second.clone()));

        // The holder stalls past the lease; another worker reaps the job and runs it.
        clock.advance(Duration::from_secs(61));
        assert_eq!(
            other.try_execute_job().await.unwrap(),
            Outcome::Completed {
                job_id: second.clone(),
                state: JobState::Succeeded
            }
        );
        // The holder's renewal is refused: it does not run the job again.
        assert_eq!(slow.try_execute_job().await.unwrap(), Outcome::EmptyQueue);
        assert_eq!(slow.held_job(), None);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        let job = store.job(&second).await.unwrap().unwrap();
        assert_eq!((job.state, job.attempts), (JobState::Succeeded, 2));
    }
);

kodiai_store::both_backends!(the_pool_drains_the_queue_and_leaves_nothing_held, |db| {
    let store = db.store().await;
    let mut signals = store.subscribe().await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(store.enqueue(&noop(), Utc::now()).await.unwrap().id);
    }
    let pool = WorkerPool::start(
        store.clone(),
        Handlers::builtin(),
        settings(),
        Clock::System,
        3,
    );
    // Every finish signals; look again after each signal until all have succeeded.
    loop {
        let counts = store.job_counts().await.unwrap();
        if counts == [("noop".to_owned(), JobState::Succeeded, 20)] {
            break;
        }
        signals.recv().await;
    }
    pool.shutdown(Duration::from_secs(5)).await;
    for id in &ids {
        let job = store.job(id).await.unwrap().unwrap();
        assert_eq!((job.state, job.attempts), (JobState::Succeeded, 1));
    }
});
