-- SQLite's migration 0006 lets a claim or finish write its event through a trigger, so that
-- each is one statement there. PostgreSQL needs nothing new (its claim and finish are already
-- data-modifying CTEs); this migration keeps both backends at the same number of migrations.
COMMENT ON COLUMN jobs.event_seq IS 'the number of the job''s last event in job_events; each change of the job takes the next one under its row lock';
