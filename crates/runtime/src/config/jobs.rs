//! `[jobs]`: the queue and its workers.

use std::collections::BTreeMap;
use std::time::Duration;

use kodiai_protocol::JobKind;
use serde::Serialize;

use super::ConfigError;
use super::sources::{Sources, positive};

/// The job queue and its workers.
#[derive(Debug, Clone, Serialize)]
pub struct JobsConfig {
    /// Workers in this process: `serve` runs them beside HTTP (0: HTTP only), `kodiai worker`
    /// runs only them.
    pub workers: u32,
    /// Running jobs per concurrency key (a GitHub installation, an API user), at most.
    pub per_key_concurrency: u32,
    /// Jobs started per key and minute, on average (0: no rate limit).
    pub per_key_rate_per_minute: u32,
    /// Jobs a key may start at once before the rate applies.
    pub per_key_burst: u32,
    /// A running job whose worker has not renewed its lease for this long runs again elsewhere.
    pub lease_secs: u64,
    /// Idle workers look at the queue this often even without a notification.
    pub poll_interval_ms: u64,
    /// Runs of a job that keeps failing with transient errors, at most.
    pub max_attempts: u32,
    /// The first retry waits about this long; each next one twice as long (with jitter).
    pub backoff_base_secs: u64,
    /// No retry waits longer than this.
    pub backoff_max_secs: u64,
    /// A job running longer than this is cancelled and fails with reason `timeout`.
    pub timeout_secs: u64,
    /// Timeouts of single kinds, overriding `timeout_secs`.
    pub timeouts: BTreeMap<String, u64>,
    /// After its cancellation token fires, a handler has this long to return what it has.
    pub cancel_grace_secs: u64,
}

impl JobsConfig {
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    pub fn cancel_grace(&self) -> Duration {
        Duration::from_secs(self.cancel_grace_secs)
    }

    /// The timeout of one kind of job.
    pub fn timeout(&self, kind: JobKind) -> Duration {
        Duration::from_secs(
            self.timeouts
                .get(kind.as_str())
                .copied()
                .unwrap_or(self.timeout_secs),
        )
    }
}

pub(super) fn read(s: &mut Sources<'_>) -> Result<JobsConfig, ConfigError> {
    const WHOLE: &str = "a whole number";
    const POSITIVE: &str = "a whole number, at least 1";
    let count = |t: &str| t.parse::<u32>().ok();
    let at_least_one = |t: &str| t.parse::<u32>().ok().filter(|n| *n >= 1);
    let timeout_secs = s
        .parse(
            "jobs.timeout_secs",
            &["KODIAI_JOB_TIMEOUT_SECS"],
            POSITIVE,
            positive,
        )?
        .unwrap_or(1800);
    let mut timeouts = BTreeMap::new();
    for kind in JobKind::ALL {
        let key = format!("jobs.timeouts.{kind}");
        let var = format!("KODIAI_JOB_TIMEOUT_{}_SECS", kind.as_str().to_uppercase());
        let secs = s.parse(&key, &[var.as_str()], POSITIVE, positive)?;
        timeouts.insert(kind.as_str().to_owned(), secs.unwrap_or(timeout_secs));
    }
    let backoff_base_secs = s
        .parse(
            "jobs.backoff_base_secs",
            &["KODIAI_JOBS_BACKOFF_BASE_SECS"],
            POSITIVE,
            positive,
        )?
        .unwrap_or(10);
    let backoff_max_secs = s
        .parse(
            "jobs.backoff_max_secs",
            &["KODIAI_JOBS_BACKOFF_MAX_SECS"],
            POSITIVE,
            positive,
        )?
        .unwrap_or(600)
        .max(backoff_base_secs);
    Ok(JobsConfig {
        workers: s
            .parse(
                "jobs.workers",
                &["KODIAI_WORKERS"],
                "a whole number from 0 to 256",
                |t| t.parse::<u32>().ok().filter(|n| *n <= 256),
            )?
            .unwrap_or(4),
        per_key_concurrency: s
            .parse(
                "jobs.per_key_concurrency",
                &["KODIAI_JOBS_PER_KEY_CONCURRENCY"],
                POSITIVE,
                at_least_one,
            )?
            .unwrap_or(2),
        per_key_rate_per_minute: s
            .parse(
                "jobs.per_key_rate_per_minute",
                &["KODIAI_JOBS_PER_KEY_RATE_PER_MINUTE"],
                "a whole number (0 turns the rate limit off)",
                count,
            )?
            .unwrap_or(60),
        per_key_burst: s
            .parse(
                "jobs.per_key_burst",
                &["KODIAI_JOBS_PER_KEY_BURST"],
                POSITIVE,
                at_least_one,
            )?
            .unwrap_or(20),
        lease_secs: s
            .parse(
                "jobs.lease_secs",
                &["KODIAI_JOBS_LEASE_SECS"],
                POSITIVE,
                positive,
            )?
            .unwrap_or(60),
        poll_interval_ms: s
            .parse(
                "jobs.poll_interval_ms",
                &["KODIAI_JOBS_POLL_INTERVAL_MS"],
                "a whole number of milliseconds, at least 10",
                |t| t.parse::<u64>().ok().filter(|n| *n >= 10),
            )?
            .unwrap_or(1000),
        max_attempts: s
            .parse(
                "jobs.max_attempts",
                &["KODIAI_JOBS_MAX_ATTEMPTS"],
                POSITIVE,
                at_least_one,
            )?
            .unwrap_or(3),
        backoff_base_secs,
        backoff_max_secs,
        timeout_secs,
        timeouts,
        cancel_grace_secs: s
            .parse(
                "jobs.cancel_grace_secs",
                &["KODIAI_JOBS_CANCEL_GRACE_SECS"],
                WHOLE,
                |t| t.parse().ok(),
            )?
            .unwrap_or(10),
    })
}
