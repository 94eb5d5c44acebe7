-- Webhook ingress: why a delivery was ignored or what was recorded (beside its outcome: job,
-- recorded or ignored), how often the same delivery id came again and how often an operator
-- replayed it; jobs found by their delivery; deliveries listed newest first.

ALTER TABLE webhook_deliveries ADD COLUMN reason TEXT;
ALTER TABLE webhook_deliveries ADD COLUMN duplicates INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhook_deliveries ADD COLUMN replays INTEGER NOT NULL DEFAULT 0;

DROP INDEX webhook_deliveries_received;
CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at, delivery_id);
CREATE INDEX jobs_delivery ON jobs (delivery_id) WHERE delivery_id IS NOT NULL;
