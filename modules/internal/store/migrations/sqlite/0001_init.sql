-- Timestamps are INTEGER unix microseconds (UTC). See postgres/0001_init.sql
-- for what each table is for; the shapes are the same.
CREATE TABLE silo_webhook_payload (
    id               INTEGER PRIMARY KEY AUTOINCREMENT, -- AUTOINCREMENT: ids are never reused
    mailbox_name     TEXT    NOT NULL,
    provider         TEXT,
    destination_type TEXT    NOT NULL DEFAULT 'sentry_region',
    region_name      TEXT,
    integration_id   INTEGER,
    date_added       INTEGER NOT NULL,
    schedule_for     INTEGER NOT NULL DEFAULT 1470009600000000, -- 2016-08-01, Sentry's THE_PAST
    attempts         INTEGER NOT NULL DEFAULT 0,
    request_method   TEXT    NOT NULL,
    request_path     TEXT    NOT NULL,
    request_headers  TEXT    NOT NULL,
    request_body     BLOB    NOT NULL,
    delivery_key     TEXT,
    callback_url     TEXT,
    last_status      INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT    NOT NULL DEFAULT '',
    CHECK (destination_type <> 'sentry_region' OR region_name IS NOT NULL)
);

CREATE INDEX silo_webhook_payload_mailbox_id ON silo_webhook_payload (mailbox_name, id);

CREATE UNIQUE INDEX silo_webhook_payload_delivery_key
    ON silo_webhook_payload (mailbox_name, delivery_key) WHERE delivery_key IS NOT NULL;

CREATE TABLE silo_dead_letter (
    id               INTEGER PRIMARY KEY,
    mailbox_name     TEXT    NOT NULL,
    provider         TEXT,
    destination_type TEXT    NOT NULL DEFAULT 'sentry_region',
    region_name      TEXT,
    integration_id   INTEGER,
    date_added       INTEGER NOT NULL,
    schedule_for     INTEGER NOT NULL,
    attempts         INTEGER NOT NULL,
    request_method   TEXT    NOT NULL,
    request_path     TEXT    NOT NULL,
    request_headers  TEXT    NOT NULL,
    request_body     BLOB    NOT NULL,
    delivery_key     TEXT,
    callback_url     TEXT,
    reason           TEXT    NOT NULL,
    last_status      INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT    NOT NULL DEFAULT '',
    dead_at          INTEGER NOT NULL
);

CREATE INDEX silo_dead_letter_dead_at ON silo_dead_letter (dead_at);

CREATE TABLE silo_mailbox_lease (
    mailbox_name TEXT    PRIMARY KEY,
    owner        TEXT    NOT NULL,
    lease_until  INTEGER NOT NULL
);
