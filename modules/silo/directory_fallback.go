package silo

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
)

// What the directory serves when its database cannot answer: the last good
// answer of every key it looked up (stale-if-error, bounded by
// directory_stale_if_error), kept across reloads (Adopt) and restarts (the
// snapshot file). See docs/sentry_silo.md, "When the directory's database
// is down".

// directoryMetrics are the directory's collectors for the whole process,
// so that they keep counting across reloads.
var directoryMetrics = directory.NewMetrics()

// snapshotInterval is how often the snapshot is written when the directory
// learned something: a large installation's (100,000 organizations by slug
// and by id, 100,000 project keys) costs about 0.14 s of CPU and a 16 MB
// write (BenchmarkSnapshotSave100k), a quarter of a percent of one core
// once a minute. A crash loses at most a minute of new answers from it; a
// stop writes it once more.
const snapshotInterval = time.Minute

// optionOff turns directory_stale_if_error or directory_snapshot off.
const optionOff = "off"

// metadataSecretProviders are the providers whose webhooks capture checks
// with a secret kept in the integration's metadata (Jira's shared_secret,
// Jira Server's webhook_secret: modules/internal/webhooks/jira.go and
// jira_server.go). The snapshot file holds no secret, so it leaves their
// integrations out: after a restart during an outage their webhooks are
// answered 503 (the sender retries) rather than refused for a missing
// secret. In memory, across reloads, they keep their metadata.
var metadataSecretProviders = []string{"jira", "jira_server"}

// publicMetadataMembers are the members of an integration's metadata that
// capture reads and that hold no secret, so the snapshot file keeps them:
// Slack's scopes, which make a direct message a Seer event when they hold
// assistant:write (modules/internal/webhooks/slack_seer.go, hasScope).
// Without them, a restored Slack integration's direct messages would be
// stored for the regions instead of routed as Seer's.
var publicMetadataMembers = []string{"scopes"}

// DefaultDirectorySnapshotPath is the snapshot file under Caddy's data
// directory.
func DefaultDirectorySnapshotPath() string {
	return filepath.Join(caddy.AppDataDir(), "sentry_silo", "directory-snapshot.gob")
}

// directoryFallback is the resolved configuration, and what it does with
// a config's directory.
type directoryFallback struct {
	staleIfError time.Duration      // 0: off
	snapshot     directory.Snapshot // Path "": no file
}

// resolveDirectoryFallback fills in the defaults (24h, the data directory's
// file) and refuses a snapshot that could never be served.
func resolveDirectoryFallback(stale *caddy.Duration, snapshot string) (*caddy.Duration, directoryFallback, error) {
	if stale == nil {
		d := caddy.Duration(directory.DefaultStaleIfError)
		stale = &d
	}
	if *stale < 0 {
		return nil, directoryFallback{}, errors.New("directory_stale_if_error: must not be negative (0 turns it off)")
	}
	f := directoryFallback{staleIfError: time.Duration(*stale)}
	switch snapshot {
	case optionOff:
	case "":
		if f.staleIfError > 0 {
			f.snapshot.Path = DefaultDirectorySnapshotPath()
		}
	default:
		if f.staleIfError == 0 {
			return nil, directoryFallback{}, fmt.Errorf("directory_snapshot %q: nothing would ever be served from it with directory_stale_if_error off", snapshot)
		}
		path, err := ResolveSecret("directory_snapshot", snapshot)
		if err != nil {
			return nil, directoryFallback{}, err
		}
		f.snapshot.Path = path
	}
	return stale, f, nil
}

// options are the fallback's part of the directory's options; source
// names the directory's database.
func (f directoryFallback) options(opts directory.Options, source string, logger *zap.Logger) directory.Options {
	opts.StaleIfError = f.staleIfError
	if opts.StaleIfError == 0 {
		opts.StaleIfError = -1 // off
	}
	opts.Metrics = directoryMetrics
	opts.SourceName = source
	opts.NeedsMetadata = metadataSecretProviders
	opts.SnapshotMetadata = publicMetadataMembers
	opts.OnFailing = func(failing bool, err error) {
		switch {
		case !failing:
			logger.Info("directory database answers again", zap.String("database", source))
		case f.staleIfError > 0:
			logger.Warn("directory database failing: lookups are answered with their last good answers; keys never looked up get 503",
				zap.String("database", source), zap.Error(err), zap.Duration("stale_if_error", f.staleIfError))
		default:
			logger.Warn("directory database failing: lookups get 503 (directory_stale_if_error is off)",
				zap.String("database", source), zap.Error(err))
		}
	}
	return opts
}

// restore gives a config's new directory its metrics and the last good
// answers: the running config's on a reload, else the snapshot file's (a
// restart). The running config's already hold what the file gave it at
// its start, and reading the file again would cost a large installation
// 0.2 s and 16 MB on every reload. It reads at most one local file and
// does not touch the database.
func (f directoryFallback) restore(ctx caddy.Context, dir *directory.Directory, logger *zap.Logger) {
	directoryMetrics.Register(ctx.GetMetricsRegistry())
	if old := activeApp(); old != nil && old.dir != nil {
		if n := dir.Adopt(old.dir); n > 0 {
			logger.Debug("directory answers carried over from the running config", zap.Int("entries", n))
			return
		}
	}
	if f.snapshot.Path == "" {
		return
	}
	start := time.Now()
	n, err := f.snapshot.Load(dir)
	switch {
	case errors.Is(err, directory.ErrSnapshotSource):
		logger.Warn("directory snapshot not used: it was saved from another directory database", zap.Error(err))
	case err != nil:
		logger.Warn("directory snapshot not used", zap.Error(err))
	case n > 0:
		logger.Info("directory snapshot loaded: its answers are served only while the directory's database fails",
			zap.String("path", f.snapshot.Path), zap.Int("entries", n), zap.Duration("took", time.Since(start)))
	}
}

// persist writes dir's snapshot until ctx ends, then once more.
func (f directoryFallback) persist(ctx context.Context, dir *directory.Directory, logger *zap.Logger) {
	if f.snapshot.Path == "" || dir == nil {
		return
	}
	f.snapshot.Persist(ctx, dir, snapshotInterval, func(err error) {
		logger.Error("saving the directory snapshot failed; it is retried", zap.Error(err), zap.Duration("retry_in", snapshotInterval))
	})
}

func parseDirectoryStaleIfError(d *caddyfile.Dispenser, a *App, _ *siloParse) error {
	var v string
	if !d.AllArgs(&v) {
		return d.ArgErr()
	}
	var dur caddy.Duration
	if v != optionOff && v != "0" {
		var err error
		if dur, err = parseDuration(d, "directory_stale_if_error", v); err != nil {
			return err
		}
	}
	a.DirectoryStaleIfError = &dur
	return nil
}

func parseDirectorySnapshot(d *caddyfile.Dispenser, a *App, _ *siloParse) error {
	if !d.AllArgs(&a.DirectorySnapshot) {
		return d.Err("directory_snapshot needs a file path, or off")
	}
	return nil
}
