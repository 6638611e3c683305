package silo

// Readiness says whether this instance can do its work, for a load
// balancer's readiness check (the sentry_silo_health handler serves it).
// It is ready once both of these held, and stays ready after that: an
// instance that routes from its last good answers during an outage must
// stay in the pool, or the outage would take every instance out of it.
//
//   - storage: the storage migrations ran on this database (or migrate is
//     off, and the tables are the operator's business). Until then
//     captures answer 503.
//   - directory: the directory's database answered once (the start-up
//     check found every directory table, or a lookup was answered, found
//     or not found), or last good answers were restored (from the snapshot
//     file or the previous config), so that known organizations route
//     while that database is down.
//
// In monolith mode there is nothing to wait for.
type Readiness struct {
	Ready bool `json:"ready"`
	// Storage is "migrated", "migrating" or "unmanaged" (migrate off).
	Storage string `json:"storage"`
	// Directory is "answered", "restored" (last good answers, no answer
	// from the database yet) or "waiting".
	Directory string `json:"directory"`
	// Reasons say, when not ready, what is missing, in words a load
	// balancer's operator can act on; they never name a host or an
	// error (the readiness endpoint is on the public listener).
	Reasons []string `json:"reasons,omitempty"`
}

// Readiness states.
const (
	storageMigrated   = "migrated"
	storageMigrating  = "migrating"
	storageUnmanaged  = "unmanaged"
	directoryAnswered = "answered"
	directoryRestored = "restored"
	directoryWaiting  = "waiting"
	notUsedInMonolith = "monolith"
	reasonMigrations  = "the storage migrations have not run yet: is the storage database reachable? (see the log)"
	reasonNoDirectory = "the directory's database has not answered yet and no last good answers were restored: is it reachable, and are its tables there? (see the log)"
)

// Readiness returns this instance's readiness now.
func (a *App) Readiness() Readiness {
	if !a.Control() {
		return Readiness{Ready: true, Storage: notUsedInMonolith, Directory: notUsedInMonolith}
	}
	r := Readiness{Storage: storageMigrating, Directory: directoryWaiting}
	switch {
	case !*a.Migrate:
		r.Storage = storageUnmanaged
	case a.shared != nil && a.shared.migrated.Load():
		r.Storage = storageMigrated
	default:
		r.Reasons = append(r.Reasons, reasonMigrations)
	}
	var st struct {
		answered, restored bool
	}
	if a.dir != nil {
		s := a.dir.State()
		st.answered, st.restored = !s.LastAnswer.IsZero(), s.Restored > 0
	}
	switch {
	case (a.tablesFound != nil && a.tablesFound.Load()) || st.answered:
		r.Directory = directoryAnswered
	case st.restored:
		r.Directory = directoryRestored
	default:
		r.Reasons = append(r.Reasons, reasonNoDirectory)
	}
	r.Ready = len(r.Reasons) == 0
	return r
}
