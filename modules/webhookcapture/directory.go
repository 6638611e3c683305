package webhookcapture

import (
	"context"
	"errors"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
	"github.com/sentrysilo/caddy-silo/modules/internal/webhooks"
	"github.com/sentrysilo/caddy-silo/modules/silo"
)

// errNoDirectory is answered 503: without a directory nothing can be
// routed, and the provider should retry.
var errNoDirectory = errors.New("webhook capture: no directory configured")

// newDirectory returns the lookups the parsers use: the app's cached
// directory when it offers integration lookups, else the organization
// lookups of the directory and the integration lookups of the store (the
// same SQL, uncached).
func newDirectory(app *silo.App) webhooks.Directory {
	dir := app.Directory()
	if d, ok := any(dir).(webhooks.Directory); ok && dir != nil {
		return d
	}
	return &splitDirectory{app: app}
}

type splitDirectory struct{ app *silo.App }

func (s *splitDirectory) source() directory.Source {
	if st := s.app.Store(); st != nil {
		return st
	}
	return nil
}

func (s *splitDirectory) Organization(ctx context.Context, idOrSlug string) (directory.Organization, error) {
	if d := s.app.Directory(); d != nil {
		return d.Organization(ctx, idOrSlug)
	}
	return directory.Organization{}, errNoDirectory
}

func (s *splitDirectory) IntegrationByExternalID(ctx context.Context, provider, externalID string) (directory.Integration, error) {
	src := s.source()
	if src == nil {
		return directory.Integration{}, errNoDirectory
	}
	return src.IntegrationByExternalID(ctx, provider, externalID)
}

func (s *splitDirectory) IntegrationByID(ctx context.Context, id int64) (directory.Integration, error) {
	src := s.source()
	if src == nil {
		return directory.Integration{}, errNoDirectory
	}
	return src.IntegrationByID(ctx, id)
}
