package admin

import (
	"context"
	"net/http"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/drain"
	"github.com/sentrysilo/caddy-silo/modules/internal/rate"
)

// Timeouts of the status's live checks: it is what an operator reads when
// things are down, so it answers quickly whatever is down.
const (
	pingTimeout      = time.Second
	directoryTimeout = 2 * time.Second
)

// Instance is what this process knows of itself, for GET status.
type Instance struct {
	// Mode is the app's mode (control or monolith).
	Mode string
	// Drainer reports this instance's drainer; nil when none runs here.
	Drainer func(regions []string) drain.Status
	// Captures counts the payloads this process's captures stored; nil
	// when it counts none.
	Captures *rate.Meter
	// Directory describes the directory.
	Directory Directory
}

// Directory is what the status shows of the directory.
type Directory struct {
	StaticOrganizations int
	StaticIntegrations  int
	// CacheEntries counts the cached lookups; nil means unknown.
	CacheEntries func() int
	// Tables checks the directory's database; nil means none.
	Tables DirectoryTables
}

// DirectoryTables is what the status asks of the directory's database.
type DirectoryTables interface {
	MissingDirectoryTables(ctx context.Context) ([]string, error)
	Where() string
}

func (in Instance) deliveredRetention() time.Duration {
	if in.Drainer == nil {
		return 0
	}
	return in.Drainer(nil).DeliveredRetention
}

// StatusView is GET /sentry_silo/status.
type StatusView struct {
	Mode      string             `json:"mode"`
	Storage   StorageView        `json:"storage"`
	Regions   []StatusRegionView `json:"regions"`
	Drainer   *DrainerView       `json:"drainer"`
	Rates     RatesView          `json:"rates"`
	Directory DirectoryView      `json:"directory"`
}

// StorageView is the storage database and its ping.
type StorageView struct {
	Engine string  `json:"engine"`
	Where  string  `json:"where"`
	OK     bool    `json:"ok"`
	PingMS float64 `json:"ping_ms"`
	Error  string  `json:"error"`
}

// StatusRegionView is one region in the status.
type StatusRegionView struct {
	Name                string     `json:"name"`
	Breaker             string     `json:"breaker"` // "closed" or "open"
	ConsecutiveFailures int        `json:"consecutive_failures"`
	InFlight            int        `json:"in_flight"`
	LastError           string     `json:"last_error"`
	LastErrorAt         *time.Time `json:"last_error_at"`
	Paused              *PauseView `json:"paused"`
}

// DrainerView is this instance's drainer.
type DrainerView struct {
	Running            bool       `json:"running"`
	Owner              string     `json:"owner"`
	Workers            int        `json:"workers"`
	Busy               int        `json:"busy"`
	Queued             int        `json:"queued"`
	LeasesHeld         int        `json:"leases_held"`
	DeliveredRetention float64    `json:"delivered_retention_seconds"`
	PausesLoadedAt     *time.Time `json:"pauses_loaded_at"`
	PausesError        string     `json:"pauses_error"`
}

// RatesView is this process's rates.
type RatesView struct {
	WindowSeconds       float64 `json:"window_seconds"`
	CapturesPerSecond   float64 `json:"captures_per_second"`
	DeliveriesPerSecond float64 `json:"deliveries_per_second"`
}

// DirectoryView is the directory's state.
type DirectoryView struct {
	StaticOrganizations int      `json:"static_organizations"`
	StaticIntegrations  int      `json:"static_integrations"`
	CacheEntries        int      `json:"cache_entries"`
	Database            string   `json:"database"`
	MissingTables       []string `json:"missing_tables"`
	Error               string   `json:"error"`
}

// GET /sentry_silo/status
func status(a API, w http.ResponseWriter, r *http.Request, _ []string) error {
	if _, err := params(r); err != nil {
		return err
	}
	names := a.regions()
	v := StatusView{Mode: a.Instance.Mode, Storage: a.storageStatus(r.Context()), Regions: []StatusRegionView{},
		Directory: a.directoryStatus(r.Context())}
	var ds *drain.Status
	if a.Instance.Drainer != nil {
		s := a.Instance.Drainer(names)
		ds = &s
		v.Drainer = &DrainerView{Running: s.Running, Owner: s.Owner, Workers: s.Workers, Busy: s.Busy, Queued: s.Queued,
			LeasesHeld: s.LeasesHeld, DeliveredRetention: s.DeliveredRetention.Seconds(),
			PausesLoadedAt: timeOrNil(s.PausesLoadedAt), PausesError: s.PausesError}
		v.Rates.DeliveriesPerSecond, v.Rates.WindowSeconds = s.DeliveredPerSecond, s.RateWindow.Seconds()
	}
	if a.Instance.Captures != nil {
		var window time.Duration
		v.Rates.CapturesPerSecond, window = a.Instance.Captures.Rate()
		v.Rates.WindowSeconds = max(v.Rates.WindowSeconds, window.Seconds())
	}
	ctx, cancel := context.WithTimeout(r.Context(), pingTimeout)
	pauses, err := a.pauseIndex(ctx)
	cancel()
	if err != nil {
		v.Storage.OK, v.Storage.Error = false, "reading the pauses: "+storeError("reading the pauses", err).Message
	}
	for i, name := range names {
		rv := StatusRegionView{Name: name, Breaker: "closed", Paused: pauses.regions[name]}
		if ds != nil && i < len(ds.Regions) && ds.Regions[i].Name == name {
			dr := ds.Regions[i]
			if dr.BreakerOpen {
				rv.Breaker = "open"
			}
			rv.ConsecutiveFailures, rv.InFlight, rv.LastError, rv.LastErrorAt = dr.ConsecutiveFailures, dr.InFlight, dr.LastError, timeOrNil(dr.LastErrorAt)
		}
		v.Regions = append(v.Regions, rv)
	}
	return writeJSON(w, http.StatusOK, v)
}

// storageStatus pings the storage database.
func (a API) storageStatus(ctx context.Context) StorageView {
	h := a.Stores.Health
	if h == nil {
		return StorageView{Error: "no storage is configured"}
	}
	v := StorageView{Engine: h.Engine(), Where: h.Where()}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	start := time.Now()
	err := h.Ping(pctx)
	v.PingMS = float64(time.Since(start).Microseconds()) / 1000
	if err != nil {
		v.Error = storeError("ping", err).Message
		return v
	}
	v.OK = true
	return v
}

// directoryStatus describes the directory and checks its tables.
func (a API) directoryStatus(ctx context.Context) DirectoryView {
	d := a.Instance.Directory
	v := DirectoryView{StaticOrganizations: d.StaticOrganizations, StaticIntegrations: d.StaticIntegrations, MissingTables: []string{}}
	if d.CacheEntries != nil {
		v.CacheEntries = d.CacheEntries()
	}
	if d.Tables == nil {
		return v
	}
	v.Database = d.Tables.Where()
	tctx, cancel := context.WithTimeout(ctx, directoryTimeout)
	defer cancel()
	missing, err := d.Tables.MissingDirectoryTables(tctx)
	if err != nil {
		v.Error = storeError("checking the directory tables", err).Message
		return v
	}
	if missing != nil {
		v.MissingTables = missing
	}
	return v
}
