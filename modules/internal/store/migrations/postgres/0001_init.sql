-- Captured webhooks, one row per region copy: Sentry's WebhookPayload
-- (hybridcloud_webhookpayload) with the body kept as raw bytes, a delivery
-- key for de-duplication and the outcome of the last attempt.
CREATE TABLE silo_webhook_payload (
    id               bigserial PRIMARY KEY,
    mailbox_name     text        NOT NULL,
    provider         text,
    destination_type text        NOT NULL DEFAULT 'sentry_region',
    region_name      text,
    integration_id   bigint,
    date_added       timestamptz NOT NULL DEFAULT now(),
    schedule_for     timestamptz NOT NULL DEFAULT '2016-08-01T00:00:00Z',
    attempts         integer     NOT NULL DEFAULT 0,
    request_method   text        NOT NULL,
    request_path     text        NOT NULL,
    request_headers  text        NOT NULL,
    request_body     bytea       NOT NULL,
    delivery_key     text,
    callback_url     text,
    last_status      integer     NOT NULL DEFAULT 0,
    last_error       text        NOT NULL DEFAULT '',
    CONSTRAINT silo_webhook_payload_region_required
        CHECK (destination_type <> 'sentry_region' OR region_name IS NOT NULL)
);

-- A queue table: rows are deleted as fast as they come, and dead index
-- entries at the low end of the indexes slow every head lookup until
-- vacuum removes them. Vacuum after 1% of a large backlog changed, not 20%.
ALTER TABLE silo_webhook_payload SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02);

-- FIFO drains, heads and the loose index scan over mailbox names.
CREATE INDEX silo_webhook_payload_mailbox_id ON silo_webhook_payload (mailbox_name, id);

-- De-duplication of provider redeliveries while a copy is still pending.
CREATE UNIQUE INDEX silo_webhook_payload_delivery_key
    ON silo_webhook_payload (mailbox_name, delivery_key) WHERE delivery_key IS NOT NULL;

-- Given-up payloads. id is the payload's own id (never reused), so the
-- admin API can address a dead letter by the id that was logged.
CREATE TABLE silo_dead_letter (
    id               bigint      PRIMARY KEY,
    mailbox_name     text        NOT NULL,
    provider         text,
    destination_type text        NOT NULL DEFAULT 'sentry_region',
    region_name      text,
    integration_id   bigint,
    date_added       timestamptz NOT NULL,
    schedule_for     timestamptz NOT NULL,
    attempts         integer     NOT NULL,
    request_method   text        NOT NULL,
    request_path     text        NOT NULL,
    request_headers  text        NOT NULL,
    request_body     bytea       NOT NULL,
    delivery_key     text,
    callback_url     text,
    reason           text        NOT NULL,
    last_status      integer     NOT NULL DEFAULT 0,
    last_error       text        NOT NULL DEFAULT '',
    dead_at          timestamptz NOT NULL
);

-- Retention purge.
CREATE INDEX silo_dead_letter_dead_at ON silo_dead_letter (dead_at);

-- One drainer per mailbox at a time, across instances and reloads.
-- UNLOGGED: a lease is worth nothing after a server crash (every lease
-- would have lapsed by the time the server is back), so it need not cost
-- a WAL write and an fsync per claim, renewal and release.
CREATE UNLOGGED TABLE silo_mailbox_lease (
    mailbox_name text        PRIMARY KEY,
    owner        text        NOT NULL,
    lease_until  timestamptz NOT NULL
);
