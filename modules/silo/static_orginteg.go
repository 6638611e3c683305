package silo

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// StaticOrganizationIntegration is the id of one installation of a static
// integration (a row of sentry_organizationintegration): regions name it
// in X-Sentry-Subnet-Organization-Integration when they call the
// credential proxy. Without it a static integration serves capture only.
type StaticOrganizationIntegration struct {
	ID             int64 `json:"id"`
	IntegrationID  int64 `json:"integration_id"`
	OrganizationID int64 `json:"organization_id"`
}

// parseOrganizationIntegration reads
// `organization_integration <id> <integration_id> <organization_id>`.
func parseOrganizationIntegration(d *caddyfile.Dispenser, a *App, _ *siloParse) error {
	args := d.RemainingArgs()
	if len(args) != 3 {
		return d.Err("organization_integration needs <id> <integration_id> <organization_id>, e.g. organization_integration 21 11 1")
	}
	var n [3]int64
	for i, v := range args {
		x, err := strconv.ParseInt(v, 10, 64)
		if err != nil || x <= 0 {
			return d.Errf("organization_integration %s: %q must be a positive integer", args[0], v)
		}
		n[i] = x
	}
	a.OrganizationIntegrations = append(a.OrganizationIntegrations, StaticOrganizationIntegration{ID: n[0], IntegrationID: n[1], OrganizationID: n[2]})
	// The integration may come on a later line: checked with the JSON's
	// words at provision (checkOrganizationIntegrations).
	return nil
}

// checkOrganizationIntegrations refuses an id given twice, or one of an
// installation the static integrations do not list: capture and the
// credential proxy must see the same installations.
func checkOrganizationIntegrations(list []StaticOrganizationIntegration, integrations []StaticIntegration) error {
	ids := map[int64]bool{}
	pairs := map[[2]int64]bool{}
	for _, oi := range list {
		line := fmt.Sprintf("organization_integration %d %d %d", oi.ID, oi.IntegrationID, oi.OrganizationID)
		if oi.ID <= 0 || oi.IntegrationID <= 0 || oi.OrganizationID <= 0 {
			return fmt.Errorf("%s: ids must be positive integers", line)
		}
		if ids[oi.ID] {
			return fmt.Errorf("%s: organization integration id %d is listed twice", line, oi.ID)
		}
		pair := [2]int64{oi.IntegrationID, oi.OrganizationID}
		if pairs[pair] {
			return fmt.Errorf("%s: integration %d in organization %d already has an id", line, oi.IntegrationID, oi.OrganizationID)
		}
		ids[oi.ID], pairs[pair] = true, true
		i := slices.IndexFunc(integrations, func(in StaticIntegration) bool { return in.ID == oi.IntegrationID })
		if i < 0 {
			return fmt.Errorf("%s: integration %d is not a static integration (add an integration line for it)", line, oi.IntegrationID)
		}
		if !slices.Contains(integrations[i].Organizations, oi.OrganizationID) {
			return fmt.Errorf("%s: integration %d is not installed in organization %d (its integration line lists %v)", line, oi.IntegrationID, oi.OrganizationID, integrations[i].Organizations)
		}
	}
	return nil
}

// orgIntegrationID is the configured id of an installation, 0 when none.
func orgIntegrationID(list []StaticOrganizationIntegration, integration, organization int64) int64 {
	for _, oi := range list {
		if oi.IntegrationID == integration && oi.OrganizationID == organization {
			return oi.ID
		}
	}
	return 0
}
