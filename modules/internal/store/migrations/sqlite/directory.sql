-- The Sentry control-silo tables the gateway reads, created only when
-- missing. On a real Sentry control database they exist with many more
-- columns and are never altered: this file only ever runs
-- CREATE TABLE IF NOT EXISTS, with the columns docs/design.md lists.
CREATE TABLE IF NOT EXISTS sentry_organizationmapping (
    organization_id INTEGER  PRIMARY KEY,
    slug            TEXT    NOT NULL UNIQUE,
    region_name     TEXT    NOT NULL,
    status          INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sentry_integration (
    id          INTEGER PRIMARY KEY,
    provider    TEXT    NOT NULL,
    external_id TEXT    NOT NULL,
    name        TEXT    NOT NULL DEFAULT '',
    metadata    TEXT    NOT NULL DEFAULT '{}',
    status      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (provider, external_id)
);
CREATE TABLE IF NOT EXISTS sentry_organizationintegration (
    id              INTEGER PRIMARY KEY,
    organization_id INTEGER  NOT NULL,
    integration_id  INTEGER  NOT NULL,
    status          INTEGER NOT NULL DEFAULT 0,
    default_auth_id INTEGER,
    UNIQUE (integration_id, organization_id)
);
CREATE TABLE IF NOT EXISTS sentry_identity (
    id          INTEGER PRIMARY KEY,
    data        TEXT    NOT NULL DEFAULT '{}',
    idp_id      INTEGER NOT NULL DEFAULT 0,
    user_id     INTEGER NOT NULL DEFAULT 0,
    external_id TEXT    NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS sentry_identityprovider (
    id          INTEGER PRIMARY KEY,
    type        TEXT NOT NULL,
    external_id TEXT,
    UNIQUE (type, external_id)
);
CREATE TABLE IF NOT EXISTS sentry_organizationmembermapping (
    id              INTEGER PRIMARY KEY,
    organization_id INTEGER NOT NULL,
    user_id         INTEGER,
    invite_status   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sentry_sentryapp (
    id       INTEGER PRIMARY KEY,
    slug     TEXT   NOT NULL UNIQUE,
    owner_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sentry_sentryappinstallation (
    uuid            TEXT   PRIMARY KEY,
    organization_id INTEGER NOT NULL,
    sentry_app_id   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sentry_projectkeymapping (
    public_key  TEXT PRIMARY KEY,
    region_name TEXT NOT NULL
);
