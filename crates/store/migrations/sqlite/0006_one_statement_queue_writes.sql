-- One-statement claims and finishes on SQLite. Every call to SQLite goes through sqlx's
-- connection thread, a round trip that costs far more than the SQL; a claim or finish that
-- needs a transaction (begin, statements, commit) pays several. Here the claim's or finish's
-- single UPDATE of the job also leaves a note of the event it makes (`note_*`), and the trigger
-- below writes that event in the same statement, so the change and its event still commit
-- together, numbered from `event_seq`.
--
-- A note is for one event number only: the trigger writes it when the update that moved
-- `event_seq` also wrote a note for that number. An update that moves `event_seq` without a
-- note of its own (cancel, retry, reap and `record_event` still write their event themselves)
-- leaves an older note behind, whose number no longer matches, so nothing is written twice.
ALTER TABLE jobs ADD COLUMN note_seq INTEGER;
ALTER TABLE jobs ADD COLUMN note_kind TEXT;
ALTER TABLE jobs ADD COLUMN note_data TEXT;
-- A claim of a rate-limited key: the key's new theoretical arrival time (see job_rate_limits).
ALTER TABLE jobs ADD COLUMN note_tat REAL;

CREATE TRIGGER jobs_noted_event AFTER UPDATE OF event_seq ON jobs
WHEN NEW.note_seq = NEW.event_seq
BEGIN
    INSERT INTO job_events (job_id, seq, kind, data, created_at)
    VALUES (NEW.id, NEW.note_seq, NEW.note_kind, NEW.note_data, NEW.updated_at);
END;

CREATE TRIGGER jobs_noted_rate_token AFTER UPDATE OF event_seq ON jobs
WHEN NEW.note_seq = NEW.event_seq AND NEW.note_kind = 'started'
    AND NEW.note_tat IS NOT NULL AND NEW.concurrency_key IS NOT NULL
BEGIN
    INSERT OR REPLACE INTO job_rate_limits (concurrency_key, tat)
    VALUES (NEW.concurrency_key, NEW.note_tat);
END;
