package webhookcapture

import (
	"context"
	"errors"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
	"github.com/sentrysilo/caddy-silo/modules/internal/webhooks"
)

// errNoDirectory is answered 503: without a directory nothing can be
// routed, and the provider should retry.
var errNoDirectory = errors.New("webhook capture: no directory configured")

// newDirectory returns the lookups the parsers use: the app's cached
// directory (static organizations, then the cache, then SQL).
func newDirectory(dir *directory.Directory) webhooks.Directory {
	if dir == nil {
		return noDirectory{}
	}
	return dir
}

type noDirectory struct{}

func (noDirectory) Organization(context.Context, string) (directory.Organization, error) {
	return directory.Organization{}, errNoDirectory
}

func (noDirectory) IntegrationByExternalID(context.Context, string, string) (directory.Integration, error) {
	return directory.Integration{}, errNoDirectory
}

func (noDirectory) IntegrationByID(context.Context, int64) (directory.Integration, error) {
	return directory.Integration{}, errNoDirectory
}

var _ webhooks.Directory = (*directory.Directory)(nil)
