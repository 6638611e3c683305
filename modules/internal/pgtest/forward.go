// Package pgtest forwards to integration_tests/pgtest, where the helper
// lives so that black-box tests outside modules/ can import it too.
//
// Deprecated: import github.com/sentrysilo/caddy-silo/integration_tests/pgtest.
package pgtest

import (
	"testing"

	real "github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
)

type (
	Options = real.Options
	Cluster = real.Cluster
)

const EnvURL = real.EnvURL

func DSN(t testing.TB) string                        { return real.DSN(t) }
func NewCluster(t testing.TB, opts Options) *Cluster { return real.NewCluster(t, opts) }
func StartCluster(opts Options) (*Cluster, error)    { return real.StartCluster(opts) }
