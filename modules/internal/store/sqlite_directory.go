package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
)

// Directory reads on SQLite; see postgres_directory.go for the choices.

// sqliteOne runs a single-row lookup on a reader connection and maps no
// row to directory.ErrNotFound.
func (s *SQLite) sqliteOne(ctx context.Context, op, query string, args []any, dest ...any) error {
	err := s.reader.QueryRowContext(ctx, query, args...).Scan(dest...)
	if isNoRows(err) {
		return directory.ErrNotFound
	}
	return sqliteErr(op, err)
}

// OrganizationBySlug implements directory.Source.
func (s *SQLite) OrganizationBySlug(ctx context.Context, slug string) (directory.Organization, error) {
	var o directory.Organization
	err := s.sqliteOne(ctx, "sqlite organization by slug", `SELECT organization_id, slug, region_name, coalesce(status, 0)
		FROM sentry_organizationmapping WHERE slug = ? LIMIT 1`, []any{slug}, &o.ID, &o.Slug, &o.Region, &o.Status)
	return o, err
}

// OrganizationByID implements directory.Source.
func (s *SQLite) OrganizationByID(ctx context.Context, id int64) (directory.Organization, error) {
	var o directory.Organization
	err := s.sqliteOne(ctx, "sqlite organization by id", `SELECT organization_id, slug, region_name, coalesce(status, 0)
		FROM sentry_organizationmapping WHERE organization_id = ? LIMIT 1`, []any{id}, &o.ID, &o.Slug, &o.Region, &o.Status)
	return o, err
}

// SentryAppInstallation implements directory.Source.
func (s *SQLite) SentryAppInstallation(ctx context.Context, uuid string) (directory.SentryAppInstallation, error) {
	var i directory.SentryAppInstallation
	err := s.sqliteOne(ctx, "sqlite sentry app installation", `SELECT uuid, organization_id, sentry_app_id
		FROM sentry_sentryappinstallation WHERE uuid = ? LIMIT 1`, []any{uuid}, &i.UUID, &i.OrganizationID, &i.SentryAppID)
	return i, err
}

// SentryAppByID implements directory.Source.
func (s *SQLite) SentryAppByID(ctx context.Context, id int64) (directory.SentryApp, error) {
	var a directory.SentryApp
	err := s.sqliteOne(ctx, "sqlite sentry app by id", `SELECT id, slug, owner_id
		FROM sentry_sentryapp WHERE id = ? LIMIT 1`, []any{id}, &a.ID, &a.Slug, &a.OwnerID)
	return a, err
}

// SentryAppBySlug implements directory.Source.
func (s *SQLite) SentryAppBySlug(ctx context.Context, slug string) (directory.SentryApp, error) {
	var a directory.SentryApp
	err := s.sqliteOne(ctx, "sqlite sentry app by slug", `SELECT id, slug, owner_id
		FROM sentry_sentryapp WHERE slug = ? LIMIT 1`, []any{slug}, &a.ID, &a.Slug, &a.OwnerID)
	return a, err
}

// ProjectKeyRegion implements directory.Source.
func (s *SQLite) ProjectKeyRegion(ctx context.Context, publicKey string) (string, error) {
	var region string
	err := s.sqliteOne(ctx, "sqlite project key region", `SELECT region_name
		FROM sentry_projectkeymapping WHERE public_key = ? LIMIT 1`, []any{publicKey}, &region)
	return region, err
}

// sqliteIntegration is pgIntegration for SQLite.
const sqliteIntegration = `
SELECT i.id, i.provider, i.external_id, coalesce(i.name, ''), coalesce(i.metadata, '{}'), coalesce(i.status, 0),
	oi.id, oi.organization_id, coalesce(oi.status, 0), oi.default_auth_id, coalesce(om.region_name, '')
FROM sentry_integration i
LEFT JOIN sentry_organizationintegration oi ON oi.integration_id = i.id AND oi.status = 0
LEFT JOIN sentry_organizationmapping om ON om.organization_id = oi.organization_id
WHERE %s
ORDER BY oi.id`

// IntegrationByExternalID implements directory.Source.
func (s *SQLite) IntegrationByExternalID(ctx context.Context, provider, externalID string) (directory.Integration, error) {
	return s.integration(ctx, fmt.Sprintf(sqliteIntegration,
		`i.id = (SELECT min(id) FROM sentry_integration WHERE provider = ? AND external_id = ?)`), provider, externalID)
}

// IntegrationByID implements directory.Source.
func (s *SQLite) IntegrationByID(ctx context.Context, id int64) (directory.Integration, error) {
	return s.integration(ctx, fmt.Sprintf(sqliteIntegration, `i.id = ?`), id)
}

func (s *SQLite) integration(ctx context.Context, query string, args ...any) (directory.Integration, error) {
	var in directory.Integration
	rows, err := s.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return in, sqliteErr("sqlite integration", err)
	}
	defer rows.Close()
	in, err = collectIntegration(rows)
	if err != nil && !errors.Is(err, directory.ErrNotFound) {
		return in, sqliteErr("sqlite integration", err)
	}
	return in, err
}

// OrganizationIntegration implements directory.Source.
func (s *SQLite) OrganizationIntegration(ctx context.Context, id int64) (directory.OrganizationIntegration, error) {
	var oi directory.OrganizationIntegration
	err := s.sqliteOne(ctx, "sqlite organization integration", `
		SELECT oi.id, oi.organization_id, oi.integration_id, coalesce(oi.status, 0), oi.default_auth_id, coalesce(om.region_name, '')
		FROM sentry_organizationintegration oi
		LEFT JOIN sentry_organizationmapping om ON om.organization_id = oi.organization_id
		WHERE oi.id = ?`, []any{id},
		&oi.ID, &oi.OrganizationID, &oi.IntegrationID, &oi.Status, &oi.DefaultAuthID, &oi.Region)
	return oi, err
}

// Identity implements directory.Source.
func (s *SQLite) Identity(ctx context.Context, id int64) (directory.Identity, error) {
	var ident directory.Identity
	var data string
	err := s.sqliteOne(ctx, "sqlite identity", `SELECT id, coalesce(data, '{}') FROM sentry_identity WHERE id = ?`,
		[]any{id}, &ident.ID, &data)
	ident.Data = json.RawMessage(data)
	return ident, err
}

// UpdateIntegrationMetadata implements directory.Writer.
func (s *SQLite) UpdateIntegrationMetadata(ctx context.Context, integrationID int64, fn func(current json.RawMessage) (json.RawMessage, bool, error)) (json.RawMessage, error) {
	return s.updateJSON(ctx, "sentry_integration", "metadata", integrationID, fn)
}

// UpdateIdentityData implements directory.Writer.
func (s *SQLite) UpdateIdentityData(ctx context.Context, identityID int64, fn func(current json.RawMessage) (json.RawMessage, bool, error)) (json.RawMessage, error) {
	return s.updateJSON(ctx, "sentry_identity", "data", identityID, fn)
}

// sqliteCASRounds bounds how often updateJSON re-runs fn because another
// process changed the row under it.
const sqliteCASRounds = 5

// updateJSON gives the row-lock semantics of directory.Writer without
// holding SQLite's single writer while fn runs: fn usually calls a token
// endpoint, and every capture in the process would wait behind it. Instead
// refreshers of one row in this process queue on an in-process lock (shared
// by every SQLite value on the file, so a reload overlap queues too), and
// the write is a compare-and-swap in an IMMEDIATE transaction: if another
// process changed the row after fn read it, fn runs again on the new value
// (and then normally finds the token fresh and declines to write).
func (s *SQLite) updateJSON(ctx context.Context, table, column string, id int64,
	fn func(json.RawMessage) (json.RawMessage, bool, error)) (json.RawMessage, error) {
	abs, err := filepath.Abs(s.path)
	if err != nil {
		abs = s.path
	}
	unlock, err := sqliteRowLocks.lock(ctx, abs+"\x00"+table+"\x00"+strconv.FormatInt(id, 10))
	if err != nil {
		return nil, err
	}
	defer unlock()
	op := "sqlite update " + table
	for range sqliteCASRounds {
		var cur string
		if err := s.sqliteOne(ctx, op, `SELECT coalesce(`+column+`, '{}') FROM `+table+` WHERE id = ?`,
			[]any{id}, &cur); err != nil {
			return nil, err
		}
		next, write, err := fn(json.RawMessage(cur))
		if err != nil {
			return nil, err
		}
		if !write {
			return json.RawMessage(cur), nil
		}
		if !json.Valid(next) {
			return nil, fmt.Errorf("update %s.%s: new value is not valid JSON", table, column)
		}
		n, err := s.exec(ctx, op, `UPDATE `+table+` SET `+column+` = ? WHERE id = ? AND coalesce(`+column+`, '{}') = ?`,
			string(next), id, cur)
		if err != nil {
			return nil, err
		}
		if n == 1 {
			return next, nil
		}
	}
	return nil, fmt.Errorf("update %s.%s %d: changed by another writer %d times in a row", table, column, id, sqliteCASRounds)
}
