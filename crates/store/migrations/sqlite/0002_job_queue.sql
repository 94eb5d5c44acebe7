-- The job queue: why a job failed (a reason beside the message), a per-job event counter so that
-- event numbers are handed out under the job's row lock, claim-friendly partial indexes, and the
-- per-key rate-limit state.

ALTER TABLE jobs ADD COLUMN failure_reason TEXT;
ALTER TABLE jobs ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 0;

DROP INDEX jobs_claimable;
-- Claiming scans queued jobs in run order; running jobs are looked up by key and by lease.
CREATE INDEX jobs_queued ON jobs (priority, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_running_lease ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_state_kind ON jobs (state, kind);

-- One row per concurrency key that has been rate limited: a GCRA token bucket, kept as the
-- theoretical arrival time `tat` in seconds since the Unix epoch. A claim is allowed when
-- tat - burst tolerance <= now, and moves tat to max(tat, now) + interval.
CREATE TABLE job_rate_limits (
    concurrency_key TEXT PRIMARY KEY,
    tat             REAL NOT NULL DEFAULT 0
);
