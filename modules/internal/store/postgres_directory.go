package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
)

// The directory is read from Sentry's own tables, which on a real control
// database have many more columns: only the listed columns are named, and
// metadata/data are read with ::text so that a jsonb column (newer
// Sentry) and a text column (older Sentry, or ours) read the same.
//
// Organization lookups do not filter on status: Sentry's
// get_cell_for_organization routes by the mapping whatever the
// organization's status (a pending-deletion organization still lives in
// its region). Status is returned for callers that care.

// one runs a single-row lookup and maps no row to directory.ErrNotFound.
func (p *Postgres) one(ctx context.Context, q querier, op, sql string, args []any, dest ...any) error {
	if !storableKeys(args) {
		return directory.ErrNotFound
	}
	err := q.QueryRow(ctx, sql, args...).Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return directory.ErrNotFound
	}
	return p.directoryErr(op, err)
}

// pgUndefinedTable is SQLSTATE undefined_table.
const pgUndefinedTable = "42P01"

// directoryErr is pgErr for directory queries, naming the database when a
// table is missing: a directory_dsn that points at the wrong database is
// a deployment mistake the operator has to locate, and PostgreSQL's own
// message names only the table.
func (p *Postgres) directoryErr(op string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == pgUndefinedTable {
		return fmt.Errorf("%s: %w (a directory table is missing in %s: directory_dsn must name Sentry's control database)", op, err, p.where)
	}
	return pgErr(op, err)
}

// storableKeys reports whether every string key could be stored in a
// UTF8 database at all. Keys come straight from requests (slugs, webhook
// bodies, headers); PostgreSQL rejects invalid UTF-8 and NUL with an
// error, which must read as "no such row", not as the database failing
// (a 503 for a forged key).
func storableKeys(args []any) bool {
	for _, a := range args {
		if s, ok := a.(string); ok && (!utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0) {
			return false
		}
	}
	return true
}

// querier is what one needs of a pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// OrganizationBySlug implements directory.Source.
func (p *Postgres) OrganizationBySlug(ctx context.Context, slug string) (directory.Organization, error) {
	var o directory.Organization
	err := p.one(ctx, p.pool, "postgres organization by slug", `SELECT organization_id, slug, region_name, coalesce(status, 0)
		FROM sentry_organizationmapping WHERE slug = $1 LIMIT 1`, []any{slug}, &o.ID, &o.Slug, &o.Region, &o.Status)
	return o, err
}

// OrganizationByID implements directory.Source.
func (p *Postgres) OrganizationByID(ctx context.Context, id int64) (directory.Organization, error) {
	var o directory.Organization
	err := p.one(ctx, p.pool, "postgres organization by id", `SELECT organization_id, slug, region_name, coalesce(status, 0)
		FROM sentry_organizationmapping WHERE organization_id = $1 LIMIT 1`, []any{id}, &o.ID, &o.Slug, &o.Region, &o.Status)
	return o, err
}

// SentryAppInstallation implements directory.Source.
func (p *Postgres) SentryAppInstallation(ctx context.Context, uuid string) (directory.SentryAppInstallation, error) {
	var s directory.SentryAppInstallation
	err := p.one(ctx, p.pool, "postgres sentry app installation", `SELECT uuid, organization_id, sentry_app_id
		FROM sentry_sentryappinstallation WHERE uuid = $1 LIMIT 1`, []any{uuid}, &s.UUID, &s.OrganizationID, &s.SentryAppID)
	return s, err
}

// SentryAppByID implements directory.Source.
func (p *Postgres) SentryAppByID(ctx context.Context, id int64) (directory.SentryApp, error) {
	var s directory.SentryApp
	err := p.one(ctx, p.pool, "postgres sentry app by id", `SELECT id, slug, owner_id
		FROM sentry_sentryapp WHERE id = $1 LIMIT 1`, []any{id}, &s.ID, &s.Slug, &s.OwnerID)
	return s, err
}

// SentryAppBySlug implements directory.Source.
func (p *Postgres) SentryAppBySlug(ctx context.Context, slug string) (directory.SentryApp, error) {
	var s directory.SentryApp
	err := p.one(ctx, p.pool, "postgres sentry app by slug", `SELECT id, slug, owner_id
		FROM sentry_sentryapp WHERE slug = $1 LIMIT 1`, []any{slug}, &s.ID, &s.Slug, &s.OwnerID)
	return s, err
}

// ProjectKeyRegion implements directory.Source.
func (p *Postgres) ProjectKeyRegion(ctx context.Context, publicKey string) (string, error) {
	var region string
	err := p.one(ctx, p.pool, "postgres project key region", `SELECT region_name
		FROM sentry_projectkeymapping WHERE public_key = $1 LIMIT 1`, []any{publicKey}, &region)
	return region, err
}

// pgIntegration reads an integration and its ACTIVE organization
// integrations, each with its organization's region, in one round trip:
// one row per organization integration (or one row with NULLs when it has
// none).
const pgIntegration = `
SELECT i.id, i.provider, i.external_id, coalesce(i.name, ''), coalesce(i.metadata::text, '{}'), coalesce(i.status, 0),
	oi.id, oi.organization_id, coalesce(oi.status, 0), oi.default_auth_id, coalesce(om.region_name, '')
FROM sentry_integration i
LEFT JOIN sentry_organizationintegration oi ON oi.integration_id = i.id AND oi.status = 0
LEFT JOIN sentry_organizationmapping om ON om.organization_id = oi.organization_id
WHERE %s
ORDER BY oi.id`

// IntegrationByExternalID implements directory.Source.
func (p *Postgres) IntegrationByExternalID(ctx context.Context, provider, externalID string) (directory.Integration, error) {
	// Sentry keeps (provider, external_id) unique; should a database not,
	// the lowest id wins, consistently.
	return p.integration(ctx, fmt.Sprintf(pgIntegration,
		`i.id = (SELECT min(id) FROM sentry_integration WHERE provider = $1 AND external_id = $2)`), provider, externalID)
}

// IntegrationByID implements directory.Source.
func (p *Postgres) IntegrationByID(ctx context.Context, id int64) (directory.Integration, error) {
	return p.integration(ctx, fmt.Sprintf(pgIntegration, `i.id = $1`), id)
}

func (p *Postgres) integration(ctx context.Context, sql string, args ...any) (directory.Integration, error) {
	var in directory.Integration
	if !storableKeys(args) {
		return in, directory.ErrNotFound
	}
	rows, err := p.pool.Query(ctx, sql, args...)
	if err != nil {
		return in, p.directoryErr("postgres integration", err)
	}
	defer rows.Close()
	in, err = collectIntegration(rows)
	if err != nil && !errors.Is(err, directory.ErrNotFound) {
		return in, p.directoryErr("postgres integration", err)
	}
	return in, err
}

// OrganizationIntegration implements directory.Source.
func (p *Postgres) OrganizationIntegration(ctx context.Context, id int64) (directory.OrganizationIntegration, error) {
	var oi directory.OrganizationIntegration
	err := p.one(ctx, p.pool, "postgres organization integration", `
		SELECT oi.id, oi.organization_id, oi.integration_id, coalesce(oi.status, 0), oi.default_auth_id, coalesce(om.region_name, '')
		FROM sentry_organizationintegration oi
		LEFT JOIN sentry_organizationmapping om ON om.organization_id = oi.organization_id
		WHERE oi.id = $1`, []any{id},
		&oi.ID, &oi.OrganizationID, &oi.IntegrationID, &oi.Status, &oi.DefaultAuthID, &oi.Region)
	return oi, err
}

// Identity implements directory.Source.
func (p *Postgres) Identity(ctx context.Context, id int64) (directory.Identity, error) {
	var ident directory.Identity
	var data string
	err := p.one(ctx, p.pool, "postgres identity", `SELECT id, coalesce(data::text, '{}')
		FROM sentry_identity WHERE id = $1`, []any{id}, &ident.ID, &data)
	ident.Data = json.RawMessage(data)
	return ident, err
}

// UpdateIntegrationMetadata implements directory.Writer.
func (p *Postgres) UpdateIntegrationMetadata(ctx context.Context, integrationID int64, fn func(current json.RawMessage) (json.RawMessage, bool, error)) (json.RawMessage, error) {
	return p.updateJSON(ctx, "sentry_integration", "metadata", integrationID, fn)
}

// UpdateIdentityData implements directory.Writer.
func (p *Postgres) UpdateIdentityData(ctx context.Context, identityID int64, fn func(current json.RawMessage) (json.RawMessage, bool, error)) (json.RawMessage, error) {
	return p.updateJSON(ctx, "sentry_identity", "data", identityID, fn)
}

// updateJSON runs fn under SELECT ... FOR UPDATE of one row, so refreshers
// on every instance queue on the row and each later one sees the token
// the first wrote. The new value is passed as text and the server casts
// it to the column's type, text or jsonb.
//
// Once fn has produced a new value (a token it fetched, which for OAuth
// providers replaced the refresh token the row holds), that value must be
// stored: if the transaction fails with the database unavailable (a
// failover took the server away between the fetch and the COMMIT, or the
// COMMIT's answer was lost), writeBack stores it on whichever server
// takes writes next, without calling fn again.
func (p *Postgres) updateJSON(ctx context.Context, table, column string, id int64,
	fn func(json.RawMessage) (json.RawMessage, bool, error)) (json.RawMessage, error) {
	var result json.RawMessage
	var fnErr error
	var cur, next string // set once fn asked for a write
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var current string
		err := p.one(ctx, tx, "postgres lock "+table, `SELECT coalesce(`+column+`::text, '{}') FROM `+table+
			` WHERE id = $1 FOR UPDATE`, []any{id}, &current)
		if err != nil {
			return err
		}
		value, write, err := fn(json.RawMessage(current))
		if err != nil {
			fnErr = err
			return err
		}
		if !write {
			result = json.RawMessage(current)
			return nil
		}
		if !json.Valid(value) {
			fnErr = fmt.Errorf("update %s.%s: new value is not valid JSON", table, column)
			return fnErr
		}
		cur, next = current, string(value)
		if _, err := tx.Exec(ctx, `UPDATE `+table+` SET `+column+` = $2 WHERE id = $1`, id, next); err != nil {
			return pgErr("postgres update "+table, err)
		}
		result = value
		return nil
	})
	if fnErr != nil {
		return nil, fnErr // the caller's own error, not the database's
	}
	err = pgErr("postgres update "+table, err)
	if err != nil && next != "" && errors.Is(err, ErrUnavailable) {
		return p.writeBack(ctx, table, column, id, cur, next, err)
	}
	if err != nil {
		return nil, err
	}
	return result, nil
}

// writeBackFor bounds writeBack's retries: a managed database's failover
// takes up to 120 s (RDS Multi-AZ documents 60-120 s), a Patroni one its
// 30 s ttl plus the promotion.
const writeBackFor = 150 * time.Second

// writeBack stores next, which fn computed from cur, after the transaction
// that was to store it failed with failed. Each try locks the row again:
// a row that holds next already had the lost COMMIT land; a row that still
// holds cur gets next; a row that holds anything else was written by
// another instance meanwhile, whose value stands and is returned. It gives
// up after writeBackFor.
func (p *Postgres) writeBack(ctx context.Context, table, column string, id int64, cur, next string, failed error) (json.RawMessage, error) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeBackFor)
	defer cancel()
	backoff := 50 * time.Millisecond
	for {
		var stored string
		err := pgx.BeginFunc(wctx, p.pool, func(tx pgx.Tx) error {
			var current string
			if err := p.one(wctx, tx, "postgres lock "+table, `SELECT coalesce(`+column+`::text, '{}') FROM `+table+
				` WHERE id = $1 FOR UPDATE`, []any{id}, &current); err != nil {
				return err
			}
			stored = current
			if current != cur {
				return nil
			}
			if _, err := tx.Exec(wctx, `UPDATE `+table+` SET `+column+` = $2 WHERE id = $1`, id, next); err != nil {
				return err
			}
			stored = next
			return nil
		})
		err = pgErr("postgres write back "+table, err)
		if err == nil {
			return json.RawMessage(stored), nil
		}
		if !errors.Is(err, ErrUnavailable) {
			return nil, err
		}
		t := time.NewTimer(backoff)
		select {
		case <-wctx.Done():
			t.Stop()
			return nil, fmt.Errorf("postgres update %s: the new value was not stored within %s: %w (first: %v)", table, writeBackFor, err, failed)
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}
