-- The Sentry control-silo tables the gateway reads, created only when
-- missing. On a real Sentry control database they exist with many more
-- columns and are never altered: this file only ever runs
-- CREATE TABLE IF NOT EXISTS, with the columns docs/design.md lists.
CREATE TABLE IF NOT EXISTS sentry_organizationmapping (
    organization_id bigint  PRIMARY KEY,
    slug            text    NOT NULL UNIQUE,
    region_name     text    NOT NULL,
    status          integer NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sentry_integration (
    id          bigserial PRIMARY KEY,
    provider    text    NOT NULL,
    external_id text    NOT NULL,
    name        text    NOT NULL DEFAULT '',
    metadata    text    NOT NULL DEFAULT '{}',
    status      integer NOT NULL DEFAULT 0,
    UNIQUE (provider, external_id)
);
CREATE TABLE IF NOT EXISTS sentry_organizationintegration (
    id              bigserial PRIMARY KEY,
    organization_id bigint  NOT NULL,
    integration_id  bigint  NOT NULL,
    status          integer NOT NULL DEFAULT 0,
    default_auth_id bigint,
    UNIQUE (integration_id, organization_id)
);
CREATE TABLE IF NOT EXISTS sentry_identity (
    id          bigserial PRIMARY KEY,
    data        text   NOT NULL DEFAULT '{}',
    idp_id      bigint NOT NULL DEFAULT 0,
    user_id     bigint NOT NULL DEFAULT 0,
    external_id text   NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS sentry_identityprovider (
    id          bigserial PRIMARY KEY,
    type        text NOT NULL,
    external_id text,
    UNIQUE (type, external_id)
);
CREATE TABLE IF NOT EXISTS sentry_organizationmembermapping (
    id              bigserial PRIMARY KEY,
    organization_id bigint  NOT NULL,
    user_id         bigint,
    invite_status   integer NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sentry_sentryapp (
    id       bigserial PRIMARY KEY,
    slug     text   NOT NULL UNIQUE,
    owner_id bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS sentry_sentryappinstallation (
    uuid            text   PRIMARY KEY,
    organization_id bigint NOT NULL,
    sentry_app_id   bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS sentry_projectkeymapping (
    public_key  text PRIMARY KEY,
    region_name text NOT NULL
);
