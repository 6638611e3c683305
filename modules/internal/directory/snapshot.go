package directory

import (
	"bufio"
	"context"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// The snapshot is the directory's last good answers, kept so that an
// instance restarted while its database is down still routes what it knew.
// It is written by Snapshot.Persist (periodically and when the config
// stops) with a temporary file and a rename, so a reader never sees half
// a file, and read by Snapshot.Load when a config is provisioned. Restored entries are
// stale from the start: they answer only a lookup whose query failed, and
// within the stale bound counted from when the database gave them.
//
// The file holds what routing needs and nothing secret: organizations (by
// slug and by id), project keys, Sentry App installations and apps, and
// integrations with their organizations and regions but without their
// metadata (which holds tokens and signing secrets) beyond the members
// named in SnapshotMetadata; the integrations of NeedsMetadata providers
// are left out. Identities are never cached, so
// never written. gob, not JSON, because Provision must stay fast: a large
// installation's 300,000 entries (100,000 organizations by slug and by id,
// 100,000 project keys) decode 6 to 9 times faster with gob than with
// encoding/json (0.24 s against 1.5 s on a loaded 2-core machine), from a
// file half the size (16 MB against 34 MB).

// Snapshot is the file a directory's last good answers are saved to and
// restored from. It is separate from Directory so that the Directory keeps
// to lookups; the zero value (no Path) is not usable.
type Snapshot struct {
	Path string
}

// snapshotVersion is the file's format; a file of another version is
// ignored.
const snapshotVersion = 1

// snapshotData is the encoded snapshot: one list per lookup kind that
// may answer stale.
type snapshotData struct {
	Version       int
	Source        string // the database the answers came from (Options.SourceName)
	SavedAt       int64  // unix nanoseconds
	OrgsBySlug    []snapshotEntry[string, Organization]
	OrgsByID      []snapshotEntry[int64, Organization]
	Installations []snapshotEntry[string, SentryAppInstallation]
	AppsByID      []snapshotEntry[int64, SentryApp]
	AppsBySlug    []snapshotEntry[string, SentryApp]
	ProjectKeys   []snapshotEntry[string, string]
	IntegByExt    []snapshotEntry[externalKey, Integration]
	IntegByID     []snapshotEntry[int64, Integration]
}

// snapshotEntry is one cache entry: Expires is when its database answer
// expired, or will (unix nanoseconds).
type snapshotEntry[K comparable, V any] struct {
	Key     K
	Value   V
	Expires int64
}

// ErrSnapshotSource is Snapshot.Load's error for a snapshot of another
// database (directory_dsn was changed): its answers are not used.
var ErrSnapshotSource = errors.New("directory snapshot is of another database")

// export copies the entries that could still be served stale at now;
// forFile strips what the file must not hold.
func (d *Directory) export(now int64, forFile bool) *snapshotData {
	var integ func(Integration) (Integration, bool)
	if forFile {
		integ = func(in Integration) (Integration, bool) {
			if d.needsMetadata[in.Provider] {
				return in, false
			}
			in.Metadata = keepMembers(in.Metadata, d.snapshotMetadata)
			return in, true
		}
	}
	return &snapshotData{
		Version:       snapshotVersion,
		Source:        d.sourceName,
		SavedAt:       now,
		OrgsBySlug:    exportFlight(&d.orgBySlug, now, nil),
		OrgsByID:      exportFlight(&d.orgByID, now, nil),
		Installations: exportFlight(&d.installation, now, nil),
		AppsByID:      exportFlight(&d.appByID, now, nil),
		AppsBySlug:    exportFlight(&d.appBySlug, now, nil),
		ProjectKeys:   exportFlight(&d.projectKey, now, nil),
		IntegByExt:    exportFlight(&d.integByExt, now, integ),
		IntegByID:     exportFlight(&d.integByID, now, integ),
	}
}

// restore adds s's entries that are within the stale bound at now as
// stale entries, unless a newer one is there; it returns how many.
func (d *Directory) restore(s *snapshotData, now int64) int {
	n := restoreFlight(&d.orgBySlug, s.OrgsBySlug, now)
	n += restoreFlight(&d.orgByID, s.OrgsByID, now)
	n += restoreFlight(&d.installation, s.Installations, now)
	n += restoreFlight(&d.appByID, s.AppsByID, now)
	n += restoreFlight(&d.appBySlug, s.AppsBySlug, now)
	n += restoreFlight(&d.projectKey, s.ProjectKeys, now)
	n += restoreFlight(&d.integByExt, s.IntegByExt, now)
	n += restoreFlight(&d.integByID, s.IntegByID, now)
	d.health.restored.Add(int64(n))
	return n
}

// keepMembers returns the members of the JSON object meta named in keys
// (nil when there are none, or meta is not an object).
func keepMembers(meta json.RawMessage, keys []string) json.RawMessage {
	if len(meta) == 0 || len(keys) == 0 {
		return nil
	}
	var all map[string]json.RawMessage
	if json.Unmarshal(meta, &all) != nil {
		return nil
	}
	kept := make(map[string]json.RawMessage, len(keys))
	for _, k := range keys {
		if v, ok := all[k]; ok {
			kept[k] = v
		}
	}
	if len(kept) == 0 {
		return nil
	}
	out, err := json.Marshal(kept)
	if err != nil {
		return nil
	}
	return out
}

func exportFlight[K comparable, V any](f *flight[K, V], now int64, keep func(V) (V, bool)) []snapshotEntry[K, V] {
	if f.stale == 0 {
		return nil
	}
	var out []snapshotEntry[K, V]
	f.cache.each(func(k K, e cacheEntry[V]) {
		if e.missing || now >= e.expires+f.stale {
			return
		}
		v := e.v
		if keep != nil {
			var ok bool
			if v, ok = keep(v); !ok {
				return
			}
		}
		out = append(out, snapshotEntry[K, V]{Key: k, Value: v, Expires: e.expires})
	})
	return out
}

func restoreFlight[K comparable, V any](f *flight[K, V], entries []snapshotEntry[K, V], now int64) int {
	if f.stale == 0 {
		return 0
	}
	n := 0
	for _, se := range entries {
		// Never fresh: a restored entry answers only a failed query.
		exp := min(se.Expires, now)
		if now >= exp+f.stale {
			continue
		}
		if f.cache.restore(se.Key, cacheEntry[V]{v: se.Value, expires: exp}, now) {
			n++
		}
	}
	return n
}

// Adopt takes old's last good answers as stale entries (a reload builds a
// new directory; without this its first outage would find it empty), and
// what old knew of the database's health, so that readiness and the
// failing-database wait carry over. It takes nothing from a directory of
// another database. It returns how many entries it took.
func (d *Directory) Adopt(old *Directory) int {
	if old == nil || old == d || old.sourceName != d.sourceName {
		return 0
	}
	n := d.restore(old.export(d.now().UnixNano(), false), d.now().UnixNano())
	if d.health.lastAnswer.Load() == 0 {
		d.health.lastAnswer.Store(old.health.lastAnswer.Load())
	}
	if d.health.lastError.Load() == 0 {
		d.health.lastError.Store(old.health.lastError.Load())
		d.health.errMsg.Store(old.health.errMsg.Load())
		d.health.failing.Store(old.health.failing.Load())
		d.health.reported.Store(old.health.reported.Load())
		d.health.reportedFailing.Store(old.health.reportedFailing.Load())
		next, prev := failures(d), failures(old)
		for i := range next {
			next[i].Store(prev[i].Load())
		}
	}
	return n
}

// failures are the failure times of d's kinds of lookup, in a fixed order.
func failures(d *Directory) []*atomic.Int64 {
	return []*atomic.Int64{
		&d.orgBySlug.failedAt, &d.orgByID.failedAt, &d.installation.failedAt, &d.appByID.failedAt,
		&d.appBySlug.failedAt, &d.projectKey.failedAt, &d.integByExt.failedAt, &d.integByID.failedAt,
		&d.orgInteg.failedAt,
	}
}

// Save writes d's snapshot to the file: a temporary file in the same
// directory, synced, then renamed over Path, so that Path always holds a
// whole snapshot. The directory is created (0700) and the file is 0600.
func (f Snapshot) Save(d *Directory) error {
	path := f.Path
	now := d.now().UnixNano()
	s := d.export(now, true)
	err := writeFileAtomic(path, func(w io.Writer) error { return gob.NewEncoder(w).Encode(s) })
	if err != nil {
		err = fmt.Errorf("saving the directory snapshot %s: %w", path, err)
		msg := err.Error()
		d.health.saveErr.Store(&msg)
		return err
	}
	d.health.saved.Store(now)
	d.health.saveErr.Store(nil)
	return nil
}

// Load restores the file's snapshot into d (see restore) and returns how
// many entries it took. A missing file is no error (0 entries); a file of
// another database is ErrSnapshotSource.
func (f Snapshot) Load(d *Directory) (int, error) {
	path := f.Path
	file, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer file.Close()
	var s snapshotData
	if err := gob.NewDecoder(bufio.NewReaderSize(file, 1<<16)).Decode(&s); err != nil {
		return 0, fmt.Errorf("directory snapshot %s: unreadable: %w", path, err)
	}
	if s.Version != snapshotVersion {
		return 0, fmt.Errorf("directory snapshot %s: format version %d, this build reads %d", path, s.Version, snapshotVersion)
	}
	if s.Source != d.sourceName {
		return 0, fmt.Errorf("%w: %s was saved from %s, the directory now reads %s", ErrSnapshotSource, path, s.Source, d.sourceName)
	}
	removeStaleTemps(path)
	return d.restore(&s, d.now().UnixNano()), nil
}

// Persist saves d's snapshot to the file every interval if d's database
// answered anything since the last save, and once more when ctx ends;
// report gets each failed save (the next tick tries again).
func (f Snapshot) Persist(ctx context.Context, d *Directory, interval time.Duration, report func(error)) {
	// Nothing saved yet: the first answer makes a save due, even one that
	// came before Persist started. Restored and adopted entries alone do
	// not: the file (or the previous config's last save) has them.
	var saved uint64
	save := func() {
		changes := d.health.changes.Load()
		if changes == saved {
			return
		}
		if err := f.Save(d); err != nil {
			report(err)
			return
		}
		saved = changes
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			save()
			return
		case <-tick.C:
			save()
		}
	}
}

// writeFileAtomic writes path through a synced temporary file renamed
// over it.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*"+tempSuffix)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(tmp, 1<<16)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	// The rename is durable once the directory is.
	if dh, err := os.Open(dir); err == nil {
		_ = dh.Sync()
		_ = dh.Close()
	}
	return nil
}

const tempSuffix = ".tmp"

// staleTempAge is how old a temporary snapshot file must be to be taken
// for a crash's leftover: a save takes well under a second, and another
// instance sharing the directory may be writing its own right now.
const staleTempAge = time.Hour

// removeStaleTemps removes temporary files a crash left next to path.
func removeStaleTemps(path string) {
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".*"+tempSuffix))
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && time.Since(fi.ModTime()) > staleTempAge {
			_ = os.Remove(m)
		}
	}
}
