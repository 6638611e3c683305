package store

import (
	"encoding/json"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
)

// integrationRows is what both engines' result sets offer (pgx.Rows,
// *sql.Rows).
type integrationRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// collectIntegration assembles an integration from the rows of the
// integration query (pgIntegration, sqliteIntegration): one row per active
// organization integration, or one row of NULLs after the integration's
// columns when it has none. No row at all is directory.ErrNotFound; other
// errors are the engine's, for the caller to map.
func collectIntegration(rows integrationRows) (directory.Integration, error) {
	var in directory.Integration
	found := false
	for rows.Next() {
		var (
			metadata string
			oiID     *int64
			orgID    *int64
			oiStatus *int
			oi       directory.OrganizationIntegration
		)
		if err := rows.Scan(&in.ID, &in.Provider, &in.ExternalID, &in.Name, &metadata, &in.Status,
			&oiID, &orgID, &oiStatus, &oi.DefaultAuthID, &oi.Region); err != nil {
			return in, err
		}
		if !found {
			in.Metadata = json.RawMessage(metadata)
			found = true
		}
		if oiID != nil {
			oi.ID, oi.OrganizationID, oi.IntegrationID, oi.Status = *oiID, *orgID, in.ID, *oiStatus
			in.Organizations = append(in.Organizations, oi)
		}
	}
	if err := rows.Err(); err != nil {
		return in, err
	}
	if !found {
		return in, directory.ErrNotFound
	}
	return in, nil
}
