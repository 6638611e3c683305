-- The region's answer to a callback payload (a Slack or Discord
-- interaction whose answer is POSTed to its response_url, §3.6). The
-- drainer stores it before that POST: from then on the row is a callback
-- only, and the region, whose action is not idempotent, is never called
-- again for it, whether the POST fails, the drainer crashes or an operator
-- replays the dead letter. NULL until the region answered. The dead letter
-- keeps it, so a replay re-POSTs the answer and an operator can read it.
-- Nullable without a default: PostgreSQL adds the columns without
-- rewriting the tables.
ALTER TABLE silo_webhook_payload ADD COLUMN region_answer bytea;
ALTER TABLE silo_dead_letter ADD COLUMN region_answer bytea;
