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
		Wake:    func(mailboxes ...string) { consoleWake(a, mailboxes) },
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

// consoleWake wakes the drainers for the console's actions. With names
// (a replay, a retry) it is App.Wake. Without (a pause, a resume) every
// drainer must read the pauses again: the local one by a full scan, the
// other instances' by an empty notification, which their listener takes
// as "look at everything" (store.Postgres.Listen calls fn("")).
func consoleWake(a *App, mailboxes []string) {
	if len(mailboxes) > 0 {
		a.Wake(mailboxes...)
		return
	}
	if a.drainer != nil {
		a.drainer.Wake()
	}
	if a.notifier != nil {
		a.notifier.add([]string{""})
	}
}
