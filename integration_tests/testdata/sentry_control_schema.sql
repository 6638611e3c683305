-- The directory tables of a Sentry control-silo database, created the way
-- Sentry's Django migrations leave them on PostgreSQL, for the topology
-- tests (integration_tests/topology_test.go). Nothing here is shaped for
-- caddy-silo: the columns, types, NULLs and constraints are Sentry's, as in
-- Sentry's models as far as we know, with their extra columns and without
-- any index we would have chosen for our own lookups.
--
-- How Django builds these tables, and what follows for the tests:
-- - Field defaults live in Python, not in the database: the NOT NULL
--   columns below have no DEFAULT, so every INSERT must name them (as the
--   tests' seed does) and anything that inserts rows on its own fails.
-- - Ids are bigserial (BoundedBigAutoField), foreign keys are
--   DEFERRABLE INITIALLY DEFERRED, and every foreign key and db_index
--   field gets its own b-tree index.
-- - JSON columns: Integration.metadata, OrganizationIntegration.config and
--   SentryApp.schema/metadata were moved from LegacyTextJSONField (text) to
--   jsonb in newer Sentry; Identity.data and IdentityProvider.config are
--   still text holding JSON.
--
-- Uncertain, kept as far as we know:
-- - sentry_organizationmapping.status is BoundedBigIntegerField(null=True),
--   so bigint NULL, not integer.
-- - sentry_organizationintegration.default_auth_id is
--   BoundedPositiveIntegerField(null=True): integer, not bigint.
-- - sentry_sentryappinstallation.uuid has no unique constraint and no
--   index of its own.
-- - sentry_projectkeymapping: the columns the gateway reads (public_key,
--   region_name) follow our design document; the other columns are a guess
--   at a replicated mapping table.
-- - sentry_identity.user_id and the sentry app user/application columns
--   point at auth_user / sentry_apiapplication in Sentry; those tables are
--   left out, and so are their foreign keys.

CREATE TABLE sentry_organizationmapping (
	id bigserial PRIMARY KEY,
	organization_id bigint NOT NULL,
	slug varchar(50) NOT NULL,
	name varchar(64) NOT NULL,
	date_created timestamptz NOT NULL,
	customer_id varchar(255) NULL,
	verified boolean NOT NULL,
	idempotency_key varchar(48) NOT NULL,
	region_name varchar(48) NOT NULL,
	status bigint NULL,
	allow_joinleave boolean NOT NULL,
	enhanced_privacy boolean NOT NULL,
	require_2fa boolean NOT NULL,
	early_adopter boolean NOT NULL,
	disable_shared_issues boolean NOT NULL,
	disable_new_visibility_features boolean NOT NULL,
	require_email_verification boolean NOT NULL,
	codecov_access boolean NOT NULL,
	disable_member_project_creation boolean NOT NULL,
	prevent_superuser_access boolean NOT NULL,
	disable_member_invite boolean NOT NULL,
	CONSTRAINT sentry_organizationmapping_organization_id_key UNIQUE (organization_id),
	CONSTRAINT sentry_organizationmapping_slug_key UNIQUE (slug)
);
CREATE INDEX sentry_organizationmapping_customer_id_idx ON sentry_organizationmapping (customer_id);
CREATE INDEX sentry_organizationmapping_slug_like ON sentry_organizationmapping (slug varchar_pattern_ops);

CREATE TABLE sentry_integration (
	id bigserial PRIMARY KEY,
	provider varchar(64) NOT NULL,
	external_id varchar(64) NOT NULL,
	name varchar(200) NOT NULL,
	metadata jsonb NOT NULL,
	status integer NULL CHECK (status >= 0),
	date_added timestamptz NULL,
	date_updated timestamptz NOT NULL,
	-- Integration.Meta.unique_together = (("provider", "external_id"),)
	CONSTRAINT sentry_integration_provider_external_id_uniq UNIQUE (provider, external_id)
);

CREATE TABLE sentry_organizationintegration (
	id bigserial PRIMARY KEY,
	organization_id bigint NOT NULL,
	integration_id bigint NOT NULL REFERENCES sentry_integration (id) DEFERRABLE INITIALLY DEFERRED,
	config jsonb NOT NULL,
	default_auth_id integer NULL CHECK (default_auth_id >= 0),
	date_added timestamptz NULL,
	status integer NOT NULL CHECK (status >= 0),
	grace_period_end timestamptz NULL,
	date_updated timestamptz NOT NULL,
	CONSTRAINT sentry_organizationintegration_organization_id_integration_id_uniq UNIQUE (organization_id, integration_id)
);
CREATE INDEX sentry_organizationintegration_organization_id_idx ON sentry_organizationintegration (organization_id);
CREATE INDEX sentry_organizationintegration_integration_id_idx ON sentry_organizationintegration (integration_id);
CREATE INDEX sentry_organizationintegration_default_auth_id_idx ON sentry_organizationintegration (default_auth_id);
CREATE INDEX sentry_organizationintegration_grace_period_end_idx ON sentry_organizationintegration (grace_period_end);

CREATE TABLE sentry_identityprovider (
	id bigserial PRIMARY KEY,
	type varchar(64) NOT NULL,
	config text NOT NULL,
	date_added timestamptz NULL,
	external_id varchar(64) NULL,
	CONSTRAINT sentry_identityprovider_type_external_id_uniq UNIQUE (type, external_id)
);

CREATE TABLE sentry_identity (
	id bigserial PRIMARY KEY,
	idp_id bigint NOT NULL REFERENCES sentry_identityprovider (id) DEFERRABLE INITIALLY DEFERRED,
	user_id bigint NOT NULL,
	external_id text NOT NULL,
	data text NOT NULL,
	status integer NOT NULL CHECK (status >= 0),
	scopes text[] NOT NULL,
	date_verified timestamptz NOT NULL,
	date_added timestamptz NULL,
	CONSTRAINT sentry_identity_idp_id_external_id_uniq UNIQUE (idp_id, external_id),
	CONSTRAINT sentry_identity_idp_id_user_id_uniq UNIQUE (idp_id, user_id)
);
CREATE INDEX sentry_identity_idp_id_idx ON sentry_identity (idp_id);
CREATE INDEX sentry_identity_user_id_idx ON sentry_identity (user_id);

CREATE TABLE sentry_sentryapp (
	id bigserial PRIMARY KEY,
	date_deleted timestamptz NULL,
	application_id bigint NULL,
	proxy_user_id bigint NULL,
	owner_id bigint NOT NULL,
	name text NOT NULL,
	slug varchar(64) NOT NULL,
	author text NULL,
	status integer NOT NULL CHECK (status >= 0),
	uuid varchar(64) NOT NULL,
	redirect_url varchar(200) NULL,
	webhook_url varchar(200) NULL,
	is_alertable boolean NOT NULL,
	verify_install boolean NOT NULL,
	events text[] NOT NULL,
	overview text NULL,
	schema jsonb NOT NULL,
	date_added timestamptz NOT NULL,
	date_updated timestamptz NOT NULL,
	date_published timestamptz NULL,
	creator_user_id bigint NULL,
	creator_label text NULL,
	popularity smallint NULL CHECK (popularity >= 0),
	metadata jsonb NOT NULL,
	CONSTRAINT sentry_sentryapp_slug_key UNIQUE (slug),
	CONSTRAINT sentry_sentryapp_application_id_key UNIQUE (application_id),
	CONSTRAINT sentry_sentryapp_proxy_user_id_key UNIQUE (proxy_user_id)
);
CREATE INDEX sentry_sentryapp_owner_id_idx ON sentry_sentryapp (owner_id);
CREATE INDEX sentry_sentryapp_date_deleted_idx ON sentry_sentryapp (date_deleted);

CREATE TABLE sentry_sentryappinstallation (
	id bigserial PRIMARY KEY,
	date_deleted timestamptz NULL,
	sentry_app_id bigint NOT NULL REFERENCES sentry_sentryapp (id) DEFERRABLE INITIALLY DEFERRED,
	organization_id bigint NOT NULL,
	api_grant_id bigint NULL,
	api_token_id bigint NULL,
	uuid varchar(64) NOT NULL,
	status integer NOT NULL CHECK (status >= 0),
	date_added timestamptz NOT NULL,
	date_updated timestamptz NOT NULL,
	CONSTRAINT sentry_sentryappinstallation_api_grant_id_key UNIQUE (api_grant_id),
	CONSTRAINT sentry_sentryappinstallation_api_token_id_key UNIQUE (api_token_id)
);
CREATE INDEX sentry_sentryappinstallation_sentry_app_id_idx ON sentry_sentryappinstallation (sentry_app_id);
CREATE INDEX sentry_sentryappinstallation_organization_id_idx ON sentry_sentryappinstallation (organization_id);
CREATE INDEX sentry_sentryappinstallation_date_deleted_idx ON sentry_sentryappinstallation (date_deleted);

CREATE TABLE sentry_projectkeymapping (
	id bigserial PRIMARY KEY,
	project_key_id bigint NOT NULL,
	public_key varchar(32) NOT NULL,
	region_name varchar(48) NOT NULL,
	date_updated timestamptz NOT NULL,
	CONSTRAINT sentry_projectkeymapping_project_key_id_key UNIQUE (project_key_id),
	CONSTRAINT sentry_projectkeymapping_public_key_key UNIQUE (public_key)
);
