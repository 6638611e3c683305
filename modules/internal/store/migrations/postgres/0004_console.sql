-- The operator console (admin API, docs/admin-api.md).
--
-- Pauses: a paused region or mailbox gets no delivery and spends no
-- attempt, while captures keep arriving. The pause lives here, not in a
-- process, so every instance sharing the database obeys it and it
-- survives restarts; drainers read the table at every backstop scan.
CREATE TABLE silo_pause (
    kind      text        NOT NULL CHECK (kind IN ('region', 'mailbox')),
    name      text        NOT NULL,
    paused_at timestamptz NOT NULL,
    paused_by text        NOT NULL DEFAULT '',
    reason    text        NOT NULL DEFAULT '',
    PRIMARY KEY (kind, name)
);

-- Delivered history, written only with the drainer option
-- delivered_retention (off by default): a delivered payload moves here in
-- the statement that removes it from its mailbox, with when it was
-- delivered, the region's status and how long the request took, and can be
-- replayed. id is the payload's own id. attempts counts every attempt, the
-- delivery included. replayed_at/replayed_as mark a row an operator sent
-- again, so a repeated bulk replay sends nothing twice.
CREATE TABLE silo_delivered (
    id               bigint      PRIMARY KEY,
    mailbox_name     text        NOT NULL,
    provider         text,
    destination_type text        NOT NULL DEFAULT 'sentry_region',
    region_name      text,
    integration_id   bigint,
    date_added       timestamptz NOT NULL,
    attempts         integer     NOT NULL,
    request_method   text        NOT NULL,
    request_path     text        NOT NULL,
    request_headers  text        NOT NULL,
    request_body     bytea       NOT NULL,
    delivery_key     text,
    callback_url     text,
    region_answer    bytea,
    last_status      integer     NOT NULL DEFAULT 0,
    last_error       text        NOT NULL DEFAULT '',
    status           integer     NOT NULL,
    duration_us      bigint      NOT NULL,
    delivered_at     timestamptz NOT NULL,
    replayed_at      timestamptz,
    replayed_as      bigint
);

-- Delivery order: the listing's pages, time ranges and the retention purge.
CREATE INDEX silo_delivered_delivered_at ON silo_delivered (delivered_at, id);
-- One mailbox's history, in delivery order.
CREATE INDEX silo_delivered_mailbox ON silo_delivered (mailbox_name, delivered_at, id);

-- One mailbox's dead letters, in id order (the console's mailbox filter and
-- its bulk replay). Dead letters are few; the index costs nothing on the
-- capture or delivery path.
CREATE INDEX silo_dead_letter_mailbox_id ON silo_dead_letter (mailbox_name, id);

-- As in 0002: lz4 where the server has it.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE silo_delivered
        ALTER COLUMN request_body SET COMPRESSION lz4,
        ALTER COLUMN request_headers SET COMPRESSION lz4';
EXCEPTION
    WHEN feature_not_supported OR syntax_error OR invalid_parameter_value THEN
        RAISE NOTICE 'caddy-silo: lz4 compression is not available here; delivered payloads stay compressed with pglz';
END
$$;
