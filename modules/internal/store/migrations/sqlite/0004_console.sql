-- See postgres/0004_console.sql: operator pauses, the opt-in delivered
-- history and one mailbox's dead letters. Timestamps are INTEGER unix
-- microseconds (UTC).
CREATE TABLE silo_pause (
    kind      TEXT    NOT NULL CHECK (kind IN ('region', 'mailbox')),
    name      TEXT    NOT NULL,
    paused_at INTEGER NOT NULL,
    paused_by TEXT    NOT NULL DEFAULT '',
    reason    TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (kind, name)
);

CREATE TABLE silo_delivered (
    id               INTEGER PRIMARY KEY,
    mailbox_name     TEXT    NOT NULL,
    provider         TEXT,
    destination_type TEXT    NOT NULL DEFAULT 'sentry_region',
    region_name      TEXT,
    integration_id   INTEGER,
    date_added       INTEGER NOT NULL,
    attempts         INTEGER NOT NULL,
    request_method   TEXT    NOT NULL,
    request_path     TEXT    NOT NULL,
    request_headers  TEXT    NOT NULL,
    request_body     BLOB    NOT NULL,
    delivery_key     TEXT,
    callback_url     TEXT,
    region_answer    BLOB,
    last_status      INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT    NOT NULL DEFAULT '',
    status           INTEGER NOT NULL,
    duration_us      INTEGER NOT NULL,
    delivered_at     INTEGER NOT NULL,
    replayed_at      INTEGER,
    replayed_as      INTEGER
);

CREATE INDEX silo_delivered_delivered_at ON silo_delivered (delivered_at, id);
CREATE INDEX silo_delivered_mailbox ON silo_delivered (mailbox_name, delivered_at, id);
CREATE INDEX silo_dead_letter_mailbox_id ON silo_dead_letter (mailbox_name, id);
