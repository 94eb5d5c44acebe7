-- The job queue: why a job failed (a reason beside the message), a per-job event counter so that
-- event numbers are handed out under the job's row lock, claim-friendly partial indexes, the
-- per-key rate-limit state, and notifications that wake workers and live event streams in every
-- process connected to this database.

ALTER TABLE jobs ADD COLUMN failure_reason TEXT;
ALTER TABLE jobs ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 0;

DROP INDEX jobs_claimable;
-- Claiming scans queued jobs in run order; running jobs are looked up by key and by lease.
CREATE INDEX jobs_queued ON jobs (priority, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_running_lease ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_state_kind ON jobs (state, kind);

-- One row per concurrency key: a GCRA token bucket, kept as the theoretical arrival time `tat`
-- in seconds since the Unix epoch. The row is also the key's lock: a claim for the key holds it
-- while it counts the key's running jobs, so two workers cannot both take the last slot.
CREATE TABLE job_rate_limits (
    concurrency_key TEXT PRIMARY KEY,
    tat             DOUBLE PRECISION NOT NULL DEFAULT 0
);

-- Channel `kodiai`: `queued` when a job becomes claimable (new, retried, released, re-queued),
-- `event:<job id>:<seq>:<kind>` for every job event. Notifications are sent at commit, and
-- identical ones in one transaction are sent once.
CREATE FUNCTION kodiai_notify_job_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('kodiai', 'queued');
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_notify_queued
    AFTER INSERT OR UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.state = 'queued')
    EXECUTE FUNCTION kodiai_notify_job_queued();

CREATE FUNCTION kodiai_notify_job_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('kodiai', 'event:' || NEW.job_id || ':' || NEW.seq || ':' || NEW.kind);
    RETURN NULL;
END;
$$;

CREATE TRIGGER job_events_notify
    AFTER INSERT ON job_events
    FOR EACH ROW
    EXECUTE FUNCTION kodiai_notify_job_event();
