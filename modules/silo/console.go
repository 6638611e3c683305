package silo

import (
	"context"

	"github.com/sentrysilo/caddy-silo/modules/internal/admin"
	"github.com/sentrysilo/caddy-silo/modules/internal/mailbox"
	"github.com/sentrysilo/caddy-silo/modules/internal/rate"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// captureMeter counts the payloads this process's captures stored, for
// the admin API's status: one for the process, so that a reload does not
// restart its minute.
var captureMeter = rate.New(nil)

// countInserts is insert counting the rows it stored (duplicates of a
// pending row are not new rows).
func countInserts(insert mailbox.InsertFunc) mailbox.InsertFunc {
	return func(ctx context.Context, rows []store.NewPayload) ([]store.InsertResult, error) {
		res, err := insert(ctx, rows)
		if err == nil {
			n := 0
			for _, r := range res {
				if !r.Duplicate {
					n++
				}
			}
			captureMeter.Add(n)
		}
		return res, err
	}
}

// consoleAPI is the admin API over app a (a function, not a method: the
// App's methods are its lifecycle).
func consoleAPI(a *App) admin.API {
	api := admin.API{
		Stores:  a.payloads.admin,
		Wake:    a.Wake, // a pause or resume also NOTIFYs the others (store.Postgres.Pause)
		Regions: a.RegionNames,
		Instance: admin.Instance{
			Mode:     a.Mode,
			Captures: captureMeter,
			Directory: admin.Directory{
				StaticOrganizations: len(a.Organizations),
				StaticIntegrations:  len(a.Integrations),
				CacheEntries:        a.dir.CacheEntries,
				Tables:              a.directoryDB.tables,
			},
		},
	}
	if a.drainer != nil {
		api.BreakerOpen = a.drainer.BreakerOpen
		api.Instance.Drainer = a.drainer.Status
	}
	return api
}
