// Package directory answers "who owns this?" for the control silo: which
// region an organization, Sentry App installation, project key or
// integration belongs to. It reads the subset of Sentry's control-silo
// schema listed in docs/design.md, through static entries from the Caddyfile,
// then a TTL cache with negative caching and single-flighted misses, then
// SQL.
package directory

import (
	"context"
	"encoding/json"
	"errors"
)

// StatusActive is Sentry's ObjectStatus.ACTIVE.
const StatusActive = 0

// ErrNotFound is returned by every lookup that finds nothing. Callers map
// it to their own answer (404 for the gateway, 400 for capture...).
var ErrNotFound = errors.New("directory: not found")

// Organization is a row of sentry_organizationmapping.
type Organization struct {
	ID     int64  `json:"id"`
	Slug   string `json:"slug"`
	Region string `json:"region"`
	Status int    `json:"status"`
}

// Integration is a row of sentry_integration with its organization
// integrations. Metadata is the raw JSON text of the metadata column.
type Integration struct {
	ID         int64           `json:"id"`
	Provider   string          `json:"provider"`
	ExternalID string          `json:"external_id"`
	Name       string          `json:"name"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
	Status     int             `json:"status"`
	// Organizations holds the ACTIVE organization integrations only,
	// each with the region of its organization (empty when the
	// organization has no mapping).
	Organizations []OrganizationIntegration `json:"organizations,omitempty"`
}

// Regions returns the distinct regions of the integration's active
// organizations, sorted by name (Sentry sorts cells by name, and the
// "first region" of §3.2 is the first of this list).
func (i *Integration) Regions() []string {
	seen := make(map[string]struct{}, len(i.Organizations))
	var out []string
	for _, oi := range i.Organizations {
		if oi.Region == "" {
			continue
		}
		if _, ok := seen[oi.Region]; ok {
			continue
		}
		seen[oi.Region] = struct{}{}
		out = append(out, oi.Region)
	}
	sortStrings(out)
	return out
}

// OrganizationIntegration is a row of sentry_organizationintegration.
type OrganizationIntegration struct {
	ID             int64  `json:"id"`
	OrganizationID int64  `json:"organization_id"`
	IntegrationID  int64  `json:"integration_id"`
	Status         int    `json:"status"`
	DefaultAuthID  *int64 `json:"default_auth_id,omitempty"`
	// Region is the region of the organization (from the organization
	// mapping), empty when unknown.
	Region string `json:"region,omitempty"`
}

// Identity is a row of sentry_identity. Data is the raw JSON text of the
// data column (access_token, refresh_token, expires).
type Identity struct {
	ID   int64           `json:"id"`
	Data json.RawMessage `json:"data"`
}

// SentryApp is a row of sentry_sentryapp.
type SentryApp struct {
	ID      int64  `json:"id"`
	Slug    string `json:"slug"`
	OwnerID int64  `json:"owner_id"`
}

// SentryAppInstallation is a row of sentry_sentryappinstallation.
type SentryAppInstallation struct {
	UUID           string `json:"uuid"`
	OrganizationID int64  `json:"organization_id"`
	SentryAppID    int64  `json:"sentry_app_id"`
}

// Source is the SQL side of the directory: one query per lookup, no
// caching. Every method returns ErrNotFound when nothing matches.
// Implementations live in the store package (PostgreSQL and SQLite).
type Source interface {
	OrganizationBySlug(ctx context.Context, slug string) (Organization, error)
	OrganizationByID(ctx context.Context, id int64) (Organization, error)
	SentryAppInstallation(ctx context.Context, uuid string) (SentryAppInstallation, error)
	SentryAppByID(ctx context.Context, id int64) (SentryApp, error)
	SentryAppBySlug(ctx context.Context, slug string) (SentryApp, error)
	// ProjectKeyRegion returns the region_name of a
	// sentry_projectkeymapping row.
	ProjectKeyRegion(ctx context.Context, publicKey string) (string, error)
	// IntegrationByExternalID returns the integration of that provider
	// and external id, with its active organization integrations and
	// their regions.
	IntegrationByExternalID(ctx context.Context, provider, externalID string) (Integration, error)
	// IntegrationByID is the same lookup by primary key.
	IntegrationByID(ctx context.Context, id int64) (Integration, error)
	// OrganizationIntegration returns one organization integration (any
	// status) with the region of its organization.
	OrganizationIntegration(ctx context.Context, id int64) (OrganizationIntegration, error)
	Identity(ctx context.Context, id int64) (Identity, error)
}

// Writer is the part of the directory the credential proxy writes to:
// refreshed tokens. Each update runs fn under a row lock (SELECT ... FOR
// UPDATE in PostgreSQL, an immediate transaction in SQLite) so that only
// one refresher runs per expiry across all instances; fn sees the current
// value and returns the new one, or write=false to keep it (someone else
// already refreshed).
type Writer interface {
	UpdateIntegrationMetadata(ctx context.Context, integrationID int64, fn func(current json.RawMessage) (next json.RawMessage, write bool, err error)) (json.RawMessage, error)
	UpdateIdentityData(ctx context.Context, identityID int64, fn func(current json.RawMessage) (next json.RawMessage, write bool, err error)) (json.RawMessage, error)
}
