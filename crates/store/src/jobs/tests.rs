//! Queue storage tests; each runs on SQLite and on PostgreSQL. Time is passed in by hand, so
//! leases expire and rate tokens refill exactly when a test says.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use kodiai_protocol::{
    FailureReason, JobEventKind, JobFailure, JobKind, JobSpec, JobState, NoopJob,
};
use serde_json::json;

use crate::jobs::{ClaimRequest, Finish, KeyLimits, Lease, NewJob, RateLimit, Transition};
use crate::{Signal, Store};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

fn noop(label: &str) -> NewJob {
    NewJob::new(JobSpec::Noop(NoopJob {
        label: Some(label.to_owned()),
    }))
}

const KINDS: &[JobKind] = &[JobKind::Noop];
const LEASE: Duration = Duration::from_secs(60);

fn request(worker: &str, limits: KeyLimits) -> ClaimRequest<'_> {
    ClaimRequest {
        worker,
        kinds: KINDS,
        lease: LEASE,
        limits,
    }
}

const NO_LIMITS: KeyLimits = KeyLimits {
    max_running: 1000,
    rate: None,
};

async fn claim(store: &Store, limits: KeyLimits, now: DateTime<Utc>) -> Option<String> {
    store
        .claim(&request("w", limits), now)
        .await
        .unwrap()
        .map(|job| job.id)
}

async fn event_kinds(store: &Store, id: &str) -> Vec<JobEventKind> {
    let events = store.events_after(id, 0, 1000).await.unwrap();
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<i64> = (1..=i64::try_from(events.len()).unwrap()).collect();
    assert_eq!(seqs, expected, "event numbers run from 1 without gaps");
    events.into_iter().map(|e| e.kind).collect()
}

crate::both_backends!(enqueue_claim_finish_round_trip, |db| {
    let store = db.store().await;
    let job = noop("a")
        .priority(3)
        .installation(42)
        .concurrency_key("installation:42");
    let enqueued = store.enqueue(&job, t0()).await.unwrap();
    assert!(enqueued.created);

    let stored = store.job(&enqueued.id).await.unwrap().unwrap();
    assert_eq!(stored.kind, "noop");
    assert_eq!(stored.payload, json!({"label": "a"}));
    assert_eq!(stored.state, JobState::Queued);
    assert_eq!(
        (stored.priority, stored.attempts, stored.max_attempts),
        (3, 0, 3)
    );
    assert_eq!(stored.run_at, t0());
    assert_eq!(stored.installation_id, Some(42));
    assert_eq!(crate::jobs::spec_of(&stored).unwrap(), job.spec);

    let claimed = store
        .claim(&request("worker-1", NO_LIMITS), t0() + secs(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, enqueued.id);
    assert_eq!(claimed.state, JobState::Running);
    assert_eq!(claimed.attempts, 1);
    assert_eq!(claimed.lease_owner.as_deref(), Some("worker-1"));
    assert_eq!(claimed.lease_expires_at, Some(t0() + secs(61)));
    assert_eq!(claimed.started_at, Some(t0() + secs(1)));
    assert_eq!(
        claim(&store, NO_LIMITS, t0() + secs(1)).await,
        None,
        "one job, claimed once"
    );

    let lease = Lease::of(&claimed).unwrap();
    let state = store
        .finish(
            &lease,
            Finish::Succeeded(json!({"ok": true})),
            t0() + secs(2),
        )
        .await
        .unwrap();
    assert_eq!(state, Some(JobState::Succeeded));
    let done = store.job(&enqueued.id).await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.result, Some(json!({"ok": true})));
    assert_eq!(done.finished_at, Some(t0() + secs(2)));
    assert_eq!(done.lease_owner, None);
    assert_eq!(
        event_kinds(&store, &enqueued.id).await,
        [JobEventKind::Started, JobEventKind::Finished]
    );
    let events = store.events_after(&enqueued.id, 0, 10).await.unwrap();
    assert_eq!(events[0].data, json!({"attempt": 1, "worker": "worker-1"}));
    assert_eq!(
        events[1].data,
        json!({"state": "succeeded", "result": {"ok": true}})
    );

    // A second finish with the same lease changes nothing.
    let again = store
        .finish(&lease, Finish::Succeeded(json!(null)), t0() + secs(3))
        .await
        .unwrap();
    assert_eq!(again, None);
});

crate::both_backends!(claims_follow_priority_then_run_time, |db| {
    let store = db.store().await;
    let late = store
        .enqueue(&noop("late").run_at(t0() + secs(10)), t0())
        .await
        .unwrap();
    let low = store.enqueue(&noop("low").priority(5), t0()).await.unwrap();
    let high = store
        .enqueue(&noop("high").priority(-1), t0() + secs(1))
        .await
        .unwrap();
    let first = store.enqueue(&noop("first"), t0()).await.unwrap();
    let now = t0() + secs(2);
    assert_eq!(claim(&store, NO_LIMITS, now).await, Some(high.id));
    assert_eq!(claim(&store, NO_LIMITS, now).await, Some(first.id));
    assert_eq!(claim(&store, NO_LIMITS, now).await, Some(low.id));
    assert_eq!(
        claim(&store, NO_LIMITS, now).await,
        None,
        "the delayed job is not due yet"
    );
    assert_eq!(
        store.next_run_at(KINDS).await.unwrap(),
        Some(t0() + secs(10))
    );
    assert_eq!(
        claim(&store, NO_LIMITS, t0() + secs(10)).await,
        Some(late.id)
    );
});

crate::both_backends!(a_worker_claims_only_its_kinds, |db| {
    let store = db.store().await;
    store.enqueue(&noop("x"), t0()).await.unwrap();
    let none = ClaimRequest {
        worker: "w",
        kinds: &[],
        lease: LEASE,
        limits: NO_LIMITS,
    };
    assert!(store.claim(&none, t0()).await.unwrap().is_none());
    assert!(claim(&store, NO_LIMITS, t0()).await.is_some());
});

crate::both_backends!(dedupe_key_returns_the_first_job, |db| {
    let store = db.store().await;
    let first = store
        .enqueue(&noop("1").dedupe_key("delivery-1"), t0())
        .await
        .unwrap();
    let second = store
        .enqueue(&noop("2").dedupe_key("delivery-1"), t0())
        .await
        .unwrap();
    assert!(first.created);
    assert_eq!(second.id, first.id);
    assert!(!second.created);
    let page = store
        .list_jobs(&Default::default(), 10, None)
        .await
        .unwrap();
    assert_eq!(page.data.len(), 1);
});

crate::both_backends!(enqueue_shares_a_transaction_with_other_writes, |db| {
    let store = db.store().await;
    let mut tx = store.begin().await.unwrap();
    let dropped = tx.enqueue(&noop("rolled back"), t0()).await.unwrap();
    drop(tx);
    assert!(
        store.job(&dropped.id).await.unwrap().is_none(),
        "dropping the transaction rolls back"
    );

    let mut tx = store.begin().await.unwrap();
    let kept = tx.enqueue(&noop("committed"), t0()).await.unwrap();
    tx.commit().await.unwrap();
    assert!(store.job(&kept.id).await.unwrap().is_some());
});

/// 240 no-op jobs, every third under one of seven installation keys; their number.
async fn enqueue_keyed_and_not(store: &Store) -> usize {
    let total = 240;
    let mut tx = store.begin().await.unwrap();
    for i in 0..total {
        let mut job = noop(&format!("{i}"));
        if i % 3 == 0 {
            job = job.concurrency_key(format!("installation:{}", i % 7));
        }
        tx.enqueue(&job, t0()).await.unwrap();
    }
    tx.commit().await.unwrap();
    total
}

crate::both_backends!(eight_concurrent_claimers_never_claim_a_job_twice, |db| {
    let store = db.store().await;
    let total = enqueue_keyed_and_not(&store).await;

    let limits = KeyLimits {
        max_running: 2,
        rate: None,
    };
    let mut claimers = tokio::task::JoinSet::new();
    for n in 0..8 {
        let store = store.clone();
        claimers.spawn(async move {
            let worker = format!("worker-{n}");
            let mut claimed = Vec::new();
            let mut empty_in_a_row = 0;
            // A keyed job can be held back by the limit while others run, so an empty answer
            // is final only once nothing is running.
            while empty_in_a_row < 3 {
                match store.claim(&request(&worker, limits), t0()).await.unwrap() {
                    Some(job) => {
                        empty_in_a_row = 0;
                        let lease = Lease::of(&job).unwrap();
                        claimed.push(job.id);
                        tokio::task::yield_now().await;
                        let state = store
                            .finish(&lease, Finish::Succeeded(json!(null)), t0())
                            .await
                            .unwrap();
                        assert_eq!(state, Some(JobState::Succeeded));
                    }
                    None => {
                        empty_in_a_row += 1;
                        tokio::task::yield_now().await;
                    }
                }
            }
            claimed
        });
    }
    let mut all = Vec::new();
    while let Some(claimed) = claimers.join_next().await {
        all.extend(claimed.unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "a job was claimed twice");
    let counts = store.job_counts().await.unwrap();
    let succeeded: i64 = counts
        .iter()
        .filter(|(_, state, _)| *state == JobState::Succeeded)
        .map(|(_, _, n)| n)
        .sum();
    assert_eq!(all.len(), total);
    assert_eq!(succeeded, i64::try_from(total).unwrap());
});

crate::both_backends!(the_per_key_limit_holds_while_other_keys_proceed, |db| {
    let store = db.store().await;
    let busy: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..5 {
            let job = noop(&format!("busy {i}")).concurrency_key("installation:1");
            ids.push(store.enqueue(&job, t0()).await.unwrap().id);
        }
        ids
    };
    let other = store
        .enqueue(
            &noop("other").concurrency_key("installation:2"),
            t0() + secs(1),
        )
        .await
        .unwrap();
    let free = store
        .enqueue(&noop("no key"), t0() + secs(2))
        .await
        .unwrap();
    let limits = KeyLimits {
        max_running: 2,
        rate: None,
    };
    let now = t0() + secs(5);
    let first = store
        .claim(&request("w", limits), now)
        .await
        .unwrap()
        .unwrap();
    let second = store
        .claim(&request("w", limits), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        [first.id.clone(), second.id.clone()],
        [busy[0].clone(), busy[1].clone()]
    );
    // installation:1 is full: the later jobs of other keys go first, the rest of its jobs wait.
    assert_eq!(claim(&store, limits, now).await, Some(other.id));
    assert_eq!(claim(&store, limits, now).await, Some(free.id));
    assert_eq!(claim(&store, limits, now).await, None);
    let queued = store.job(&busy[2]).await.unwrap().unwrap();
    assert_eq!(queued.state, JobState::Queued, "held back, never dropped");

    store
        .finish(
            &Lease::of(&first).unwrap(),
            Finish::Succeeded(json!(null)),
            now,
        )
        .await
        .unwrap();
    assert_eq!(claim(&store, limits, now).await, Some(busy[2].clone()));
    assert_eq!(claim(&store, limits, now).await, None);
});

crate::both_backends!(the_per_key_rate_limit_refills_over_time, |db| {
    let store = db.store().await;
    for i in 0..4 {
        let job = noop(&format!("{i}")).concurrency_key("installation:9");
        store.enqueue(&job, t0()).await.unwrap();
    }
    store
        .enqueue(
            &noop("other").concurrency_key("installation:8"),
            t0() + secs(1),
        )
        .await
        .unwrap();
    // One a second on average, two at once.
    let limits = KeyLimits {
        max_running: 100,
        rate: Some(RateLimit {
            per_minute: 60,
            burst: 2,
        }),
    };
    let now = t0() + secs(10);
    let key_of = |job: Option<kodiai_protocol::Job>| job.and_then(|j| j.concurrency_key);
    let claim_key = |at| {
        let store = store.clone();
        async move { key_of(store.claim(&request("w", limits), at).await.unwrap()) }
    };
    assert_eq!(claim_key(now).await.as_deref(), Some("installation:9"));
    assert_eq!(claim_key(now).await.as_deref(), Some("installation:9"));
    // The burst is spent: the other key is not held up, installation:9 waits for a token.
    assert_eq!(claim_key(now).await.as_deref(), Some("installation:8"));
    assert_eq!(claim_key(now).await, None);
    assert_eq!(
        claim_key(now + chrono::Duration::milliseconds(999)).await,
        None
    );
    assert_eq!(
        claim_key(now + secs(1)).await.as_deref(),
        Some("installation:9")
    );
    assert_eq!(claim_key(now + secs(1)).await, None);
    assert_eq!(
        claim_key(now + secs(2)).await.as_deref(),
        Some("installation:9")
    );
});

crate::both_backends!(
    an_expired_lease_is_reaped_and_the_old_owner_changes_nothing,
    |db| {
        let store = db.store().await;
        let id = store
            .enqueue(&noop("x").max_attempts(2), t0())
            .await
            .unwrap()
            .id;
        let first = store
            .claim(&request("dead", NO_LIMITS), t0())
            .await
            .unwrap()
            .unwrap();
        let dead = Lease::of(&first).unwrap();

        // Renewed leases do not expire.
        assert!(
            store
                .heartbeat(&dead, t0() + secs(90), t0() + secs(30))
                .await
                .unwrap()
        );
        assert!(
            store
                .reap_expired(t0() + secs(89))
                .await
                .unwrap()
                .is_empty()
        );
        // The worker died after its last heartbeat.
        let reaped = store.reap_expired(t0() + secs(90)).await.unwrap();
        assert_eq!(reaped.len(), 1);
        assert_eq!(reaped[0].state, JobState::Queued);
        let job = store.job(&id).await.unwrap().unwrap();
        assert_eq!(
            job.error.as_ref().map(|e| e.reason),
            Some(FailureReason::LeaseExpired)
        );

        let second = store
            .claim(&request("alive", NO_LIMITS), t0() + secs(91))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(second.attempts, 2);
        // The dead worker wakes up: its heartbeat and its finish are refused.
        assert!(
            !store
                .heartbeat(&dead, t0() + secs(200), t0() + secs(92))
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .finish(&dead, Finish::Succeeded(json!("late")), t0() + secs(92))
                .await
                .unwrap(),
            None
        );
        let alive = Lease::of(&second).unwrap();
        assert_eq!(
            store
                .finish(&alive, Finish::Succeeded(json!("once")), t0() + secs(93))
                .await
                .unwrap(),
            Some(JobState::Succeeded)
        );
        assert_eq!(
            store.job(&id).await.unwrap().unwrap().result,
            Some(json!("once"))
        );
        assert_eq!(
            event_kinds(&store, &id).await,
            [
                JobEventKind::Started,
                JobEventKind::Error,
                JobEventKind::Started,
                JobEventKind::Finished
            ]
        );

        // With no attempts left, an expired lease fails the job.
        let last = store
            .enqueue(&noop("y").max_attempts(1), t0())
            .await
            .unwrap()
            .id;
        store
            .claim(&request("dead", NO_LIMITS), t0() + secs(100))
            .await
            .unwrap()
            .unwrap();
        let reaped = store.reap_expired(t0() + secs(200)).await.unwrap();
        assert_eq!(reaped.len(), 1);
        assert_eq!(reaped[0].state, JobState::Failed);
        let failed = store.job(&last).await.unwrap().unwrap();
        assert_eq!(failed.state, JobState::Failed);
        assert_eq!(failed.error.unwrap().reason, FailureReason::LeaseExpired);
    }
);

crate::both_backends!(an_expired_running_job_frees_its_keys_slot, |db| {
    let store = db.store().await;
    let limits = KeyLimits {
        max_running: 1,
        rate: None,
    };
    store
        .enqueue(&noop("a").concurrency_key("k"), t0())
        .await
        .unwrap();
    let b = store
        .enqueue(&noop("b").concurrency_key("k"), t0())
        .await
        .unwrap();
    store
        .claim(&request("dead", limits), t0())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim(&store, limits, t0() + secs(59)).await, None);
    // Past the lease, the dead worker's job no longer counts against the key.
    assert_eq!(claim(&store, limits, t0() + secs(61)).await, Some(b.id));
});

crate::both_backends!(retry_release_and_failure_are_recorded, |db| {
    let store = db.store().await;
    let id = store.enqueue(&noop("x"), t0()).await.unwrap().id;
    let job = store
        .claim(&request("w", NO_LIMITS), t0())
        .await
        .unwrap()
        .unwrap();
    let failure = JobFailure {
        reason: FailureReason::Transient,
        message: "GitHub answered 502".into(),
    };
    let state = store
        .finish(
            &Lease::of(&job).unwrap(),
            Finish::Retry {
                at: t0() + secs(30),
                failure: failure.clone(),
            },
            t0() + secs(1),
        )
        .await
        .unwrap();
    assert_eq!(state, Some(JobState::Queued));
    let queued = store.job(&id).await.unwrap().unwrap();
    assert_eq!((queued.state, queued.attempts), (JobState::Queued, 1));
    assert_eq!(queued.run_at, t0() + secs(30));
    assert_eq!(queued.error, Some(failure));
    assert_eq!(claim(&store, NO_LIMITS, t0() + secs(29)).await, None);

    let job = store
        .claim(&request("w", NO_LIMITS), t0() + secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.attempts, 2);
    store
        .finish(&Lease::of(&job).unwrap(), Finish::Release, t0() + secs(31))
        .await
        .unwrap();
    let released = store.job(&id).await.unwrap().unwrap();
    assert_eq!(
        (released.state, released.attempts),
        (JobState::Queued, 1),
        "a release at shutdown gives the attempt back"
    );

    let job = store
        .claim(&request("w", NO_LIMITS), t0() + secs(32))
        .await
        .unwrap()
        .unwrap();
    let permanent = JobFailure {
        reason: FailureReason::Permanent,
        message: "repository not found".into(),
    };
    store
        .finish(
            &Lease::of(&job).unwrap(),
            Finish::Failed(permanent.clone()),
            t0() + secs(33),
        )
        .await
        .unwrap();
    let failed = store.job(&id).await.unwrap().unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.error, Some(permanent));
    assert_eq!(failed.finished_at, Some(t0() + secs(33)));
    assert_eq!(
        event_kinds(&store, &id).await,
        [
            JobEventKind::Started,
            JobEventKind::Error,
            JobEventKind::Started,
            JobEventKind::Log,
            JobEventKind::Started,
            JobEventKind::Finished
        ]
    );
});

crate::both_backends!(cancel_and_retry_move_jobs_between_states, |db| {
    let store = db.store().await;
    let id = store.enqueue(&noop("x"), t0()).await.unwrap().id;
    let running = store
        .claim(&request("w", NO_LIMITS), t0())
        .await
        .unwrap()
        .unwrap();

    let Some(Transition::Done(job)) = store
        .cancel_job(&id, "cancelled by admin", t0() + secs(1))
        .await
        .unwrap()
    else {
        panic!("a running job can be cancelled");
    };
    assert_eq!(job.state, JobState::Cancelled);
    assert_eq!(job.lease_owner, None);
    assert_eq!(
        job.error.as_ref().map(|e| e.reason),
        Some(FailureReason::Cancelled)
    );
    // The worker that ran it can no longer renew or finish it.
    let lease = Lease::of(&running).unwrap();
    assert!(
        !store
            .heartbeat(&lease, t0() + secs(100), t0() + secs(2))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .finish(&lease, Finish::Succeeded(json!(1)), t0() + secs(2))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .cancel_job(&id, "again", t0() + secs(3))
            .await
            .unwrap(),
        Some(Transition::NotAllowed(JobState::Cancelled))
    );

    let Some(Transition::Done(job)) = store.retry_job(&id, t0() + secs(4)).await.unwrap() else {
        panic!("a cancelled job can be retried");
    };
    assert_eq!(
        (job.state, job.attempts, job.error.clone()),
        (JobState::Queued, 0, None)
    );
    assert_eq!(job.run_at, t0() + secs(4));
    assert_eq!(
        store.retry_job(&id, t0() + secs(5)).await.unwrap(),
        Some(Transition::NotAllowed(JobState::Queued))
    );
    assert_eq!(
        store.cancel_job("no-such-job", "x", t0()).await.unwrap(),
        None
    );
    assert_eq!(store.retry_job("no-such-job", t0()).await.unwrap(), None);
    assert_eq!(
        event_kinds(&store, &id).await,
        [
            JobEventKind::Started,
            JobEventKind::Finished,
            JobEventKind::Log
        ]
    );
});

crate::both_backends!(events_are_numbered_in_order_and_signalled, |db| {
    let store = db.store().await;
    let mut signals = store.subscribe().await.unwrap();
    let id = store.enqueue(&noop("x"), t0()).await.unwrap().id;
    loop {
        match signals.recv().await {
            Signal::JobsQueued => break,
            Signal::Resync => {}
            other => panic!("unexpected signal {other:?}"),
        }
    }
    for i in 1..=5 {
        let event = store
            .record_event(&id, JobEventKind::Progress, json!({"step": i}), t0())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(event.seq, i);
        loop {
            match signals.recv().await {
                Signal::JobEvent { job_id, seq, kind } => {
                    assert_eq!(
                        (job_id.as_str(), seq, kind),
                        (id.as_str(), i, JobEventKind::Progress)
                    );
                    break;
                }
                Signal::Resync => {}
                other => panic!("unexpected signal {other:?}"),
            }
        }
    }
    let after = store.events_after(&id, 2, 2).await.unwrap();
    assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(after[0].data, json!({"step": 3}));
    assert!(
        store
            .record_event("no-such-job", JobEventKind::Log, json!({}), t0())
            .await
            .unwrap()
            .is_none()
    );
});

// On SQLite a claim and a finish are one statement each, whose event a trigger writes from the
// note the statement leaves on the job (migration 0006); the other writes number their events
// themselves. Interleaved, every event is written once, numbered without gaps, with its data
// and time; a refused finish writes nothing.
crate::both_backends!(
    events_of_one_statement_writes_interleave_with_the_others,
    |db| {
        let store = db.store().await;
        let id = store
            .enqueue(&noop("x").max_attempts(5), t0())
            .await
            .unwrap()
            .id;
        let first = store
            .claim(&request("w1", NO_LIMITS), t0() + secs(1))
            .await
            .unwrap()
            .unwrap();
        let lease = Lease::of(&first).unwrap();
        store
            .record_event(
                &id,
                JobEventKind::Step,
                json!({"name": "a"}),
                t0() + secs(2),
            )
            .await
            .unwrap()
            .unwrap();
        assert!(
            store
                .heartbeat(&lease, t0() + secs(100), t0() + secs(3))
                .await
                .unwrap()
        );
        let failure = JobFailure {
            reason: FailureReason::Transient,
            message: "try later".into(),
        };
        store
            .finish(
                &lease,
                Finish::Retry {
                    at: t0() + secs(10),
                    failure: failure.clone(),
                },
                t0() + secs(4),
            )
            .await
            .unwrap()
            .unwrap();
        // A second finish of the same run is refused and leaves no event.
        assert_eq!(
            store
                .finish(&lease, Finish::Succeeded(json!(1)), t0() + secs(5))
                .await
                .unwrap(),
            None
        );
        store
            .record_event(
                &id,
                JobEventKind::Log,
                json!({"message": "m"}),
                t0() + secs(6),
            )
            .await
            .unwrap()
            .unwrap();
        let second = store
            .claim(&request("w2", NO_LIMITS), t0() + secs(10))
            .await
            .unwrap()
            .unwrap();
        store
            .cancel_job(&id, "stop", t0() + secs(11))
            .await
            .unwrap()
            .unwrap();
        // The worker that lost its job to the cancel writes nothing.
        assert_eq!(
            store
                .finish(
                    &Lease::of(&second).unwrap(),
                    Finish::Succeeded(json!(2)),
                    t0() + secs(12)
                )
                .await
                .unwrap(),
            None
        );
        store
            .retry_job(&id, t0() + secs(13))
            .await
            .unwrap()
            .unwrap();
        let third = store
            .claim(&request("w3", NO_LIMITS), t0() + secs(14))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            third.attempts, 1,
            "a retry by an operator resets the attempts"
        );
        store
            .finish(
                &Lease::of(&third).unwrap(),
                Finish::Succeeded(json!({"done": true})),
                t0() + secs(15),
            )
            .await
            .unwrap()
            .unwrap();

        assert_eq!(
            event_kinds(&store, &id).await,
            [
                JobEventKind::Started,
                JobEventKind::Step,
                JobEventKind::Error,
                JobEventKind::Log,
                JobEventKind::Started,
                JobEventKind::Finished,
                JobEventKind::Log,
                JobEventKind::Started,
                JobEventKind::Finished,
            ]
        );
        let events = store.events_after(&id, 0, 100).await.unwrap();
        let at = |n: i64| t0() + secs(n);
        let written: Vec<_> = events
            .iter()
            .map(|e| (e.seq, e.created_at, e.data.clone()))
            .collect();
        assert_eq!(
            written,
            [
                (1, at(1), json!({"attempt": 1, "worker": "w1"})),
                (2, at(2), json!({"name": "a"})),
                (
                    3,
                    at(4),
                    json!({"reason": "transient", "message": "try later", "attempt": 1,
                           "retry_at": at(10)})
                ),
                (4, at(6), json!({"message": "m"})),
                (5, at(10), json!({"attempt": 2, "worker": "w2"})),
                (
                    6,
                    at(11),
                    json!({"state": "cancelled",
                           "error": {"reason": "cancelled", "message": "stop"}})
                ),
                (7, at(13), json!({"message": "queued again by an operator"})),
                (8, at(14), json!({"attempt": 1, "worker": "w3"})),
                (
                    9,
                    at(15),
                    json!({"state": "succeeded", "result": {"done": true}})
                ),
            ]
        );
        let done = store.job(&id).await.unwrap().unwrap();
        assert_eq!(done.state, JobState::Succeeded);
        assert_eq!(done.result, Some(json!({"done": true})));
    }
);

// On SQLite the queue's writes keep the one writer connection while more of them wait; the
// other writers (enqueues, event records, reaps) still get it between them, a claim dropped
// while it waits gives nothing up, and closing the store returns once the writes are done.
crate::both_backends!(
    other_writes_get_the_writer_while_workers_keep_it_busy,
    |db| {
        let store = db.store().await;
        let total = 120;
        let mut tx = store.begin().await.unwrap();
        for i in 0..total {
            tx.enqueue(&noop(&format!("{i}")), t0()).await.unwrap();
        }
        tx.commit().await.unwrap();

        // Workers claim and finish until the queue is empty after the last enqueue.
        let enqueuing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let mut workers = tokio::task::JoinSet::new();
        for n in 0..4 {
            let store = store.clone();
            let enqueuing = std::sync::Arc::clone(&enqueuing);
            workers.spawn(async move {
                let worker = format!("worker-{n}");
                let mut finished = 0;
                loop {
                    let Some(job) = store
                        .claim(&request(&worker, NO_LIMITS), t0())
                        .await
                        .unwrap()
                    else {
                        if enqueuing.load(std::sync::atomic::Ordering::SeqCst) {
                            tokio::task::yield_now().await;
                            continue;
                        }
                        return finished;
                    };
                    let lease = Lease::of(&job).unwrap();
                    assert!(
                        store
                            .heartbeat(&lease, t0() + secs(60), t0())
                            .await
                            .unwrap()
                    );
                    tokio::task::yield_now().await;
                    let state = store
                        .finish(&lease, Finish::Succeeded(json!(null)), t0())
                        .await
                        .unwrap();
                    assert_eq!(state, Some(JobState::Succeeded));
                    finished += 1;
                }
            });
        }
        // Meanwhile other writers get through.
        let extra = 30;
        for i in 0..extra {
            let id = store
                .enqueue(&noop(&format!("extra {i}")), t0())
                .await
                .unwrap()
                .id;
            store
                .record_event(&id, JobEventKind::Log, json!({"i": i}), t0())
                .await
                .unwrap();
            store.reap_expired(t0()).await.unwrap();
            // A claim dropped after its first poll, while it waits for the writer or its answer.
            let impatient_request = request("impatient", NO_LIMITS);
            let mut impatient = Box::pin(store.claim(&impatient_request, t0()));
            std::future::poll_fn(|cx| {
                let _ = impatient.as_mut().poll(cx);
                std::task::Poll::Ready(())
            })
            .await;
        }
        enqueuing.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut finished = 0;
        while let Some(n) = workers.join_next().await {
            finished += n.unwrap();
        }
        let counts = store.job_counts().await.unwrap();
        let count = |wanted: JobState| -> i64 {
            counts
                .iter()
                .filter(|(_, state, _)| *state == wanted)
                .map(|(_, _, n)| n)
                .sum()
        };
        assert_eq!(count(JobState::Queued), 0);
        assert_eq!(count(JobState::Succeeded), i64::from(finished));
        // A dropped claim may have started a job before it was dropped; nobody else ran it.
        assert_eq!(
            i64::from(finished) + count(JobState::Running),
            i64::from(total + extra),
        );
        let running = store
            .list_jobs(
                &crate::jobs::JobFilter {
                    state: Some(JobState::Running),
                    ..Default::default()
                },
                1000,
                None,
            )
            .await
            .unwrap();
        assert!(
            running
                .data
                .iter()
                .all(|job| job.lease_owner.as_deref() == Some("impatient"))
        );
        store.close().await;
    }
);

/// Claims the first job for `worker` and returns its lease.
async fn claim_lease(store: &Store, worker: &str, limits: KeyLimits, now: DateTime<Utc>) -> Lease {
    let job = store
        .claim(&request(worker, limits), now)
        .await
        .unwrap()
        .unwrap();
    Lease::of(&job).unwrap()
}

crate::both_backends!(finish_and_claim_finishes_then_starts_the_next_job, |db| {
    let store = db.store().await;
    let mut signals = store.subscribe().await.unwrap();
    let first = store.enqueue(&noop("1"), t0()).await.unwrap().id;
    let second = store.enqueue(&noop("2"), t0()).await.unwrap().id;
    let lease = claim_lease(&store, "w", NO_LIMITS, t0()).await;
    assert_eq!(lease.job_id, first);

    let (state, next) = store
        .finish_and_claim(
            &lease,
            Finish::Succeeded(json!({"n": 1})),
            &request("w", NO_LIMITS),
            t0() + secs(5),
        )
        .await
        .unwrap();
    assert_eq!(state, Some(JobState::Succeeded));
    let next = next.expect("the next job is claimed with the finish");
    assert_eq!(next.id, second);
    assert_eq!(next.state, JobState::Running);
    assert_eq!(next.attempts, 1);
    assert_eq!(next.lease_owner.as_deref(), Some("w"));
    assert_eq!(next.lease_expires_at, Some(t0() + secs(65)));
    assert_eq!(next.started_at, Some(t0() + secs(5)));
    assert_eq!(store.job(&second).await.unwrap().unwrap(), next);

    let done = store.job(&first).await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.result, Some(json!({"n": 1})));
    assert_eq!(done.finished_at, Some(t0() + secs(5)));
    assert_eq!(done.lease_owner, None);
    assert_eq!(done.attempts, 1);
    assert_eq!(
        event_kinds(&store, &first).await,
        [JobEventKind::Started, JobEventKind::Finished]
    );
    assert_eq!(event_kinds(&store, &second).await, [JobEventKind::Started]);
    let started = store.events_after(&second, 0, 10).await.unwrap();
    assert_eq!(started[0].data, json!({"attempt": 1, "worker": "w"}));
    assert_eq!(started[0].created_at, t0() + secs(5));

    // Both changes are announced, the finish first.
    let mut announced = Vec::new();
    while announced.len() < 3 {
        match signals.recv().await {
            Signal::JobEvent { job_id, seq, kind } => announced.push((job_id, seq, kind)),
            Signal::JobsQueued | Signal::Resync => {}
        }
    }
    assert_eq!(
        announced,
        [
            (first.clone(), 1, JobEventKind::Started),
            (first.clone(), 2, JobEventKind::Finished),
            (second.clone(), 1, JobEventKind::Started),
        ]
    );

    // The last job: finished, and nothing left to claim.
    let lease = Lease::of(&next).unwrap();
    let (state, next) = store
        .finish_and_claim(
            &lease,
            Finish::Succeeded(json!(null)),
            &request("w", NO_LIMITS),
            t0() + secs(6),
        )
        .await
        .unwrap();
    assert_eq!((state, next), (Some(JobState::Succeeded), None));
});

crate::both_backends!(
    the_job_claimed_with_a_finish_follows_kinds_and_key_limits,
    |db| {
        let store = db.store().await;
        let limits = KeyLimits {
            max_running: 1,
            rate: None,
        };
        let a = store
            .enqueue(&noop("a").concurrency_key("k"), t0())
            .await
            .unwrap()
            .id;
        let b = store
            .enqueue(&noop("b").concurrency_key("k"), t0() + secs(1))
            .await
            .unwrap()
            .id;
        let c = store
            .enqueue(&noop("c").concurrency_key("k"), t0() + secs(2))
            .await
            .unwrap()
            .id;
        let free = store
            .enqueue(&noop("free"), t0() + secs(3))
            .await
            .unwrap()
            .id;
        let now = t0() + secs(10);
        let running_a = claim_lease(&store, "w1", limits, now).await;
        assert_eq!(running_a.job_id, a);
        // k is full: the plain claim passes over b and c.
        let running_free = claim_lease(&store, "w2", limits, now).await;
        assert_eq!(running_free.job_id, free);

        // A worker of other kinds finishes its job and claims none of these.
        let reviews = ClaimRequest {
            worker: "w2",
            kinds: &[JobKind::Review],
            lease: LEASE,
            limits,
        };
        let (state, next) = store
            .finish_and_claim(&running_free, Finish::Succeeded(json!(null)), &reviews, now)
            .await
            .unwrap();
        assert_eq!((state, next), (Some(JobState::Succeeded), None));

        // Finishing a k job frees k's slot for the job claimed in the same call: b, not c.
        let (state, next) = store
            .finish_and_claim(
                &running_a,
                Finish::Succeeded(json!(null)),
                &request("w1", limits),
                now,
            )
            .await
            .unwrap();
        assert_eq!(state, Some(JobState::Succeeded));
        let running_b = Lease::of(&next.unwrap()).unwrap();
        assert_eq!(running_b.job_id, b);
        // b holds the slot again: nothing else of k starts.
        assert_eq!(claim(&store, limits, now).await, None);

        // A finish whose lease is gone changes nothing, and its claim still honours the limit.
        let (state, next) = store
            .finish_and_claim(
                &running_a,
                Finish::Succeeded(json!("late")),
                &request("w1", limits),
                now,
            )
            .await
            .unwrap();
        assert_eq!((state, next), (None, None));
        assert_eq!(
            store.job(&a).await.unwrap().unwrap().result,
            Some(json!(null))
        );
        assert_eq!(
            store.job(&c).await.unwrap().unwrap().state,
            JobState::Queued
        );

        // A retry frees the slot too; c starts, b goes back in the queue for later.
        let failure = JobFailure {
            reason: FailureReason::Transient,
            message: "try later".into(),
        };
        let (state, next) = store
            .finish_and_claim(
                &running_b,
                Finish::Retry {
                    at: now + secs(30),
                    failure,
                },
                &request("w1", limits),
                now,
            )
            .await
            .unwrap();
        assert_eq!(state, Some(JobState::Queued));
        assert_eq!(next.map(|job| job.id), Some(c.clone()));
        let retried = store.job(&b).await.unwrap().unwrap();
        assert_eq!(
            (retried.state, retried.run_at, retried.lease_owner),
            (JobState::Queued, now + secs(30), None)
        );
        assert_eq!(
            event_kinds(&store, &b).await,
            [JobEventKind::Started, JobEventKind::Error]
        );
    }
);

crate::both_backends!(the_job_claimed_with_a_finish_takes_a_rate_token, |db| {
    let store = db.store().await;
    // One a minute, no burst.
    let limits = KeyLimits {
        max_running: 10,
        rate: Some(RateLimit {
            per_minute: 1,
            burst: 1,
        }),
    };
    let first = store.enqueue(&noop("first"), t0()).await.unwrap().id;
    for i in 0..3 {
        let job = noop(&format!("{i}")).concurrency_key("installation:3");
        store.enqueue(&job, t0() + secs(1)).await.unwrap();
    }
    let now = t0() + secs(10);
    let lease = claim_lease(&store, "w", limits, now).await;
    assert_eq!(lease.job_id, first);
    let (_, next) = store
        .finish_and_claim(
            &lease,
            Finish::Succeeded(json!(null)),
            &request("w", limits),
            now,
        )
        .await
        .unwrap();
    let next = next.unwrap();
    assert_eq!(next.concurrency_key.as_deref(), Some("installation:3"));
    // The token is spent: neither a plain claim nor the next finish-and-claim gets another.
    assert_eq!(claim(&store, limits, now + secs(59)).await, None);
    let (state, again) = store
        .finish_and_claim(
            &Lease::of(&next).unwrap(),
            Finish::Succeeded(json!(null)),
            &request("w", limits),
            now + secs(59),
        )
        .await
        .unwrap();
    assert_eq!((state, again), (Some(JobState::Succeeded), None));
    assert!(claim(&store, limits, now + secs(60)).await.is_some());
});

crate::both_backends!(
    a_finish_whose_job_was_reaped_claims_it_again_as_a_new_attempt,
    |db| {
        let store = db.store().await;
        let id = store.enqueue(&noop("x"), t0()).await.unwrap().id;
        let dead = claim_lease(&store, "w", NO_LIMITS, t0()).await;
        let reaped = store.reap_expired(t0() + secs(61)).await.unwrap();
        assert_eq!(reaped.len(), 1);
        // The old run's finish is refused; the claim in the same call takes the job again.
        let (state, next) = store
            .finish_and_claim(
                &dead,
                Finish::Succeeded(json!("late")),
                &request("w", NO_LIMITS),
                t0() + secs(62),
            )
            .await
            .unwrap();
        assert_eq!(state, None);
        let next = next.unwrap();
        assert_eq!((next.id.as_str(), next.attempts), (id.as_str(), 2));
        assert_eq!(next.result, None);
        assert_eq!(
            event_kinds(&store, &id).await,
            [
                JobEventKind::Started,
                JobEventKind::Error,
                JobEventKind::Started
            ]
        );
    }
);

crate::both_backends!(
    eight_workers_finishing_and_claiming_together_complete_each_job_once,
    |db| {
        let store = db.store().await;
        let total = enqueue_keyed_and_not(&store).await;

        let limits = KeyLimits {
            max_running: 2,
            rate: None,
        };
        let mut workers = tokio::task::JoinSet::new();
        for n in 0..8 {
            let store = store.clone();
            workers.spawn(async move {
                let worker = format!("worker-{n}");
                let mut finished = Vec::new();
                let mut held = None;
                let mut empty_in_a_row = 0;
                // As in the plain test: an empty answer is final only once nothing runs.
                while empty_in_a_row < 3 {
                    let job = match held.take() {
                        Some(job) => job,
                        None => match store.claim(&request(&worker, limits), t0()).await.unwrap() {
                            Some(job) => job,
                            None => {
                                empty_in_a_row += 1;
                                tokio::task::yield_now().await;
                                continue;
                            }
                        },
                    };
                    empty_in_a_row = 0;
                    let lease = Lease::of(&job).unwrap();
                    tokio::task::yield_now().await;
                    let (state, next) = store
                        .finish_and_claim(
                            &lease,
                            Finish::Succeeded(json!(null)),
                            &request(&worker, limits),
                            t0(),
                        )
                        .await
                        .unwrap();
                    assert_eq!(state, Some(JobState::Succeeded));
                    finished.push(job.id);
                    held = next;
                }
                finished
            });
        }
        let mut all = Vec::new();
        while let Some(finished) = workers.join_next().await {
            all.extend(finished.unwrap());
        }
        let unique: HashSet<&String> = all.iter().collect();
        assert_eq!(unique.len(), all.len(), "a job was run twice");
        assert_eq!(all.len(), total);
        let counts = store.job_counts().await.unwrap();
        assert_eq!(
            counts
                .iter()
                .map(|(_, state, n)| (*state, *n))
                .collect::<Vec<_>>(),
            [(JobState::Succeeded, i64::try_from(total).unwrap())]
        );
    }
);

/// PostgreSQL only (SQLite's one writer has no races): a claim whose candidate's key fills up
/// meanwhile rolls back and tries again. A finish riding on it is rolled back with it and done
/// once, in the try that commits.
#[tokio::test]
async fn a_finish_riding_on_a_claim_that_lost_a_race_is_done_once() {
    use sqlx::Connection;

    let Some(db) = crate::testing::TestDb::postgres().await else {
        return;
    };
    let store = db.store().await;
    let limits = KeyLimits {
        max_running: 1,
        rate: None,
    };
    let x = store.enqueue(&noop("x"), t0()).await.unwrap().id;
    let b = store
        .enqueue(&noop("b").concurrency_key("k"), t0() + secs(1))
        .await
        .unwrap()
        .id;
    let c = store
        .enqueue(&noop("c").concurrency_key("k"), t0() + secs(2))
        .await
        .unwrap()
        .id;
    let now = t0() + secs(10);
    let lease = claim_lease(&store, "w", limits, now).await;
    assert_eq!(lease.job_id, x);

    // Another claimer holds k's lock and is starting c.
    let mut other = sqlx::PgConnection::connect(&db.url()).await.unwrap();
    let mut other_tx = other.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO job_rate_limits (concurrency_key) VALUES ('k') \
         ON CONFLICT (concurrency_key) DO UPDATE SET tat = job_rate_limits.tat",
    )
    .execute(&mut *other_tx)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE jobs SET state = 'running', attempts = 1, lease_owner = 'other', \
         lease_expires_at = $1 WHERE id = $2",
    )
    .bind(now + secs(60))
    .bind(&c)
    .execute(&mut *other_tx)
    .await
    .unwrap();

    // The finish and claim picks b (c is not running yet in its snapshot) and waits for k.
    let finishing = {
        let store = store.clone();
        let lease = lease.clone();
        tokio::spawn(async move {
            store
                .finish_and_claim(
                    &lease,
                    Finish::Succeeded(json!("once")),
                    &request("w", limits),
                    now,
                )
                .await
        })
    };
    let mut watch = sqlx::PgConnection::connect(&db.url()).await.unwrap();
    loop {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watch)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    // c starts: k is full when the claim recounts, so b is not started.
    other_tx.commit().await.unwrap();

    let (state, next) = finishing.await.unwrap().unwrap();
    assert_eq!((state, next), (Some(JobState::Succeeded), None));
    let done = store.job(&x).await.unwrap().unwrap();
    assert_eq!(
        (done.state, done.result, done.attempts),
        (JobState::Succeeded, Some(json!("once")), 1)
    );
    assert_eq!(
        event_kinds(&store, &x).await,
        [JobEventKind::Started, JobEventKind::Finished]
    );
    let waiting = store.job(&b).await.unwrap().unwrap();
    assert_eq!((waiting.state, waiting.attempts), (JobState::Queued, 0));
    assert!(event_kinds(&store, &b).await.is_empty());
}
