package directory

import (
	"context"
	"time"
)

// Options configures a Directory.
type Options struct {
	// TTL is how long a found entry is served from memory [30s].
	TTL time.Duration
	// NegativeTTL is how long a miss is remembered [5s].
	NegativeTTL time.Duration
	// Organizations are static entries from the Caddyfile; they are
	// consulted before the cache and the database.
	Organizations []Organization
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Directory is the cached directory used on every request. The zero value
// is not usable; build one with New.
type Directory struct {
	src  Source
	opts Options
}

// New returns a Directory reading from src (nil means static entries only).
func New(src Source, opts Options) *Directory {
	return &Directory{src: src, opts: opts}
}

// Organization finds an organization by slug, or by id when idOrSlug is all
// digits.
func (d *Directory) Organization(ctx context.Context, idOrSlug string) (Organization, error) {
	return Organization{}, ErrNotFound
}
