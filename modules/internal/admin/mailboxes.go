package admin

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/drain"
	"github.com/sentrysilo/caddy-silo/modules/internal/mailbox"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// Bounds of the mailbox listing (docs/admin-api.md, "Cost at scale").
const (
	// DefaultDepthCap is where a mailbox's count stops: counting reads
	// one index entry per row (and, on pages not vacuumed yet, the row):
	// a page of 100 mailboxes of 10,000 rows took 114 ms on PostgreSQL
	// capped at 1,000 and 1.55 s capped at 10,000, against 8 and 113 ms
	// once vacuumed (BenchmarkConsoleMailboxesPostgres, 1M rows).
	DefaultDepthCap = 1000
	MaxDepthCap     = 10_000
	// filterVisits bounds the mailboxes one filtered page visits (one
	// index probe each, ~10-20 µs): the page may come back short, with a
	// cursor to go on.
	filterVisits = 10_000
	// sortVisits bounds the mailboxes a sorted listing looks at: every
	// head of 100,000 mailboxes took 0.6 s on PostgreSQL.
	sortVisits = 100_000
	// headsChunk and depthsChunk are the heads and counts asked of the
	// store at a time.
	headsChunk  = 1000
	depthsChunk = 1000
	// The head rows of GET /sentry_silo/mailboxes/<name>.
	defaultHeadRows = 10
	maxHeadRows     = 100
)

// Sort orders of the mailbox listing, and their cursor kinds.
const (
	sortName   = "name"
	sortDepth  = "depth"
	sortOldest = "oldest"
)

var mailboxCursorKinds = map[string]string{sortName: "mn", sortDepth: "md", sortOldest: "mo"}

// mailboxFilter selects mailboxes by their head.
type mailboxFilter struct {
	provider, region string
	minAge           time.Duration
}

func (f mailboxFilter) empty() bool { return f == mailboxFilter{} }

func (f mailboxFilter) match(h store.MailboxHead, now time.Time) bool {
	return (f.provider == "" || h.Provider == f.provider) &&
		(f.region == "" || h.Region == f.region) &&
		(f.minAge == 0 || now.Sub(h.DateAdded) >= f.minAge)
}

// boxItem is a listed mailbox and its capped depth.
type boxItem struct {
	head  store.MailboxHead
	depth int64
}

// listing is what one mailbox listing request asks.
type listing struct {
	filter   mailboxFilter
	sort     string
	after    string // the cursor's position, "" for the first page
	limit    int
	depthCap int
}

func parseListing(q url.Values) (listing, error) {
	l := listing{sort: sortName}
	var err error
	if v := q.Get("sort"); v != "" {
		if _, ok := mailboxCursorKinds[v]; !ok {
			return l, badRequest("sort %q: must be name, depth or oldest", v)
		}
		l.sort = v
	}
	for name, dst := range map[string]*string{"provider": &l.filter.provider, "region": &l.filter.region} {
		if v := q.Get(name); v != "" {
			if err := checkName(name, v); err != nil {
				return l, err
			}
			*dst = v
		}
	}
	if v := q.Get("min_age"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return l, badRequest("min_age %q: must be a positive duration such as 90s, 10m or 2h", v)
		}
		l.filter.minAge = d
	}
	if l.limit, err = limit(q); err != nil {
		return l, err
	}
	if l.depthCap, err = intParam(q, "depth_cap", DefaultDepthCap, 1, MaxDepthCap); err != nil {
		return l, err
	}
	l.after, err = decodeCursor(q, mailboxCursorKinds[l.sort])
	return l, err
}

// GET /sentry_silo/mailboxes
func mailboxList(a API, w http.ResponseWriter, r *http.Request, _ []string) error {
	st := a.Stores.Mailboxes
	if st == nil {
		return unavailable("mailboxes")
	}
	q, err := params(r, "provider", "region", "min_age", "sort", "limit", "after", "depth_cap")
	if err != nil {
		return err
	}
	l, err := parseListing(q)
	if err != nil {
		return err
	}
	ctx, cancel := opContext(r)
	defer cancel()
	now := a.now()
	var items []boxItem
	var next string
	truncated := false
	if l.sort == sortName {
		items, next, err = l.byName(ctx, st, now)
	} else {
		items, next, truncated, err = l.sorted(ctx, st, now)
	}
	if err != nil {
		return storeError("listing mailboxes", err)
	}
	pauses, err := a.pauseIndex(ctx)
	if err != nil {
		return storeError("reading the pauses", err)
	}
	out := make([]MailboxView, 0, len(items))
	for _, it := range items {
		out = append(out, mailboxView(it.head, it.depth, l.depthCap, now, pauses.forMailbox(it.head.Name, it.head.Region)))
	}
	var nextp *string
	if next != "" {
		c := encodeCursor(mailboxCursorKinds[l.sort], next)
		nextp = &c
	}
	return writeJSON(w, http.StatusOK, map[string]any{"mailboxes": out, "next": nextp, "depth_cap": l.depthCap, "truncated": truncated})
}

// byName walks the mailboxes in name order from the cursor, keeping those
// the filter matches, until the page is full or filterVisits mailboxes
// were visited. next is where the following page starts, "" at the end.
func (l listing) byName(ctx context.Context, st MailboxStore, now time.Time) ([]boxItem, string, error) {
	var page []boxItem
	cursor, visited := l.after, 0
	chunk := headsChunk
	if l.filter.empty() {
		chunk = l.limit + 1 // one more tells whether there is a next page
	}
	for visited < filterVisits {
		want := min(chunk, filterVisits-visited)
		heads, err := st.MailboxHeads(ctx, cursor, want)
		if err != nil {
			return nil, "", err
		}
		for _, h := range heads {
			visited++
			cursor = h.Name
			if !l.filter.match(h, now) {
				continue
			}
			if len(page) == l.limit {
				// A match past a full page: there is a next page.
				return page, page[len(page)-1].head.Name, l.depths(ctx, st, page)
			}
			page = append(page, boxItem{head: h})
		}
		if len(heads) < want {
			return page, "", l.depths(ctx, st, page) // the last mailbox
		}
	}
	if len(page) == l.limit {
		cursor = page[len(page)-1].head.Name
	}
	return page, cursor, l.depths(ctx, st, page)
}

// depths fills the items' capped depths.
func (l listing) depths(ctx context.Context, st MailboxStore, items []boxItem) error {
	for start := 0; start < len(items); start += depthsChunk {
		part := items[start:min(start+depthsChunk, len(items))]
		names := make([]string, len(part))
		for i, it := range part {
			names[i] = it.head.Name
		}
		ds, err := st.MailboxDepths(ctx, names, l.depthCap)
		if err != nil {
			return err
		}
		if len(ds) != len(part) {
			return errors.New("mailbox depths: " + strconv.Itoa(len(ds)) + " counts for " + strconv.Itoa(len(part)) + " mailboxes")
		}
		for i := range part {
			part[i].depth = ds[i]
		}
	}
	return nil
}

// sorted reads every mailbox (up to sortVisits), sorts them and returns
// the page after the cursor; truncated is set when there were more.
func (l listing) sorted(ctx context.Context, st MailboxStore, now time.Time) ([]boxItem, string, bool, error) {
	var all []boxItem
	cursor, visited, truncated := "", 0, false
	for {
		want := min(5*headsChunk, sortVisits-visited)
		if want == 0 {
			more, err := st.MailboxHeads(ctx, cursor, 1)
			if err != nil {
				return nil, "", false, err
			}
			truncated = len(more) > 0
			break
		}
		heads, err := st.MailboxHeads(ctx, cursor, want)
		if err != nil {
			return nil, "", false, err
		}
		for _, h := range heads {
			visited++
			cursor = h.Name
			if l.filter.match(h, now) {
				all = append(all, boxItem{head: h})
			}
		}
		if len(heads) < want {
			break
		}
	}
	if l.sort == sortDepth {
		if err := l.depths(ctx, st, all); err != nil {
			return nil, "", false, err
		}
	}
	slices.SortFunc(all, l.compare)
	start := 0
	if l.after != "" {
		start = len(all)
		for i, it := range all {
			if l.compareToCursor(it) > 0 {
				start = i
				break
			}
		}
	}
	page := all[start:min(start+l.limit, len(all))]
	next := ""
	if start+l.limit < len(all) {
		next = l.sortKey(page[len(page)-1])
	}
	if l.sort == sortOldest {
		if err := l.depths(ctx, st, page); err != nil {
			return nil, "", false, err
		}
	}
	return page, next, truncated, nil
}

// sortKey is an item's cursor position: "<depth or unix µs>.<name>".
func (l listing) sortKey(it boxItem) string {
	v := it.depth
	if l.sort == sortOldest {
		v = it.head.DateAdded.UnixMicro()
	}
	return strconv.FormatInt(v, 10) + "." + it.head.Name
}

// order is an item's place in the sort: a number (deepest or oldest
// first) and the name.
func (l listing) order(it boxItem) (int64, string) {
	if l.sort == sortDepth {
		return -it.depth, it.head.Name
	}
	return it.head.DateAdded.UnixMicro(), it.head.Name
}

func (l listing) compare(x, y boxItem) int {
	xn, xs := l.order(x)
	yn, ys := l.order(y)
	switch {
	case xn != yn:
		if xn < yn {
			return -1
		}
		return 1
	default:
		return strings.Compare(xs, ys)
	}
}

// compareToCursor places an item against the cursor: > 0 when after it.
func (l listing) compareToCursor(it boxItem) int {
	num, name, _ := strings.Cut(l.after, ".")
	v, _ := strconv.ParseInt(num, 10, 64)
	c := boxItem{head: store.MailboxHead{Name: name}}
	if l.sort == sortDepth {
		c.depth = v
	} else {
		c.head.DateAdded = time.UnixMicro(v)
	}
	return l.compare(it, c)
}

// GET /sentry_silo/mailboxes/<name>
func mailboxOne(a API, w http.ResponseWriter, r *http.Request, segs []string) error {
	st := a.Stores.Mailboxes
	if st == nil {
		return unavailable("mailboxes")
	}
	name := segs[1]
	if err := checkName("mailbox", name); err != nil {
		return err
	}
	q, err := params(r, "limit", "depth_cap")
	if err != nil {
		return err
	}
	n, err := intParam(q, "limit", defaultHeadRows, 1, maxHeadRows)
	if err != nil {
		return err
	}
	depthCap, err := intParam(q, "depth_cap", DefaultDepthCap, 1, MaxDepthCap)
	if err != nil {
		return err
	}
	ctx, cancel := opContext(r)
	defer cancel()
	rows, err := st.ListPayloads(ctx, store.RowFilter{Mailbox: name}, 0, n)
	if err != nil {
		return storeError("reading mailbox "+name, err)
	}
	if len(rows) == 0 {
		return httpError(http.StatusNotFound, "mailbox %q has no pending payload", name)
	}
	h := rows[0]
	head := store.MailboxHead{Name: name, HeadID: h.ID, Region: h.Region, Provider: h.Provider, DateAdded: h.DateAdded,
		ScheduleFor: h.ScheduleFor, Attempts: h.Attempts, LastStatus: h.LastStatus, LastError: h.LastError}
	item := []boxItem{{head: head}}
	if err := (listing{depthCap: depthCap}).depths(ctx, st, item); err != nil {
		return storeError("counting mailbox "+name, err)
	}
	pauses, err := a.pauseIndex(ctx)
	if err != nil {
		return storeError("reading the pauses", err)
	}
	now := a.now()
	out := make([]PayloadView, 0, len(rows))
	for _, s := range rows {
		out = append(out, PayloadView{RowView: rowView(s), NextAttemptAt: nextAttempt(s.ScheduleFor, now)})
	}
	return writeJSON(w, http.StatusOK, map[string]any{
		"mailbox": mailboxView(head, item[0].depth, depthCap, now, pauses.forMailbox(name, head.Region)),
		"head":    out,
	})
}

// POST /sentry_silo/mailboxes/<name>/retry
func retry(a API, w http.ResponseWriter, r *http.Request, segs []string) error {
	st := a.Stores.Mailboxes
	if st == nil {
		return unavailable("mailboxes")
	}
	name := segs[1]
	if _, err := params(r); err != nil {
		return err
	}
	ctx, cancel := opContext(r)
	defer cancel()
	if err := st.RetryMailbox(ctx, name, a.now()); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return httpError(http.StatusNotFound, "no mailbox %q (or it is empty)", name)
		}
		return storeError("retrying a mailbox", err)
	}
	a.wake(name)
	return writeJSON(w, http.StatusOK, map[string]any{"mailbox": name, "retried": true})
}

// pauseIndex is the pauses in force, by kind and name.
type pauseIndex struct {
	regions, mailboxes map[string]*PauseView
}

func (a API) pauseIndex(ctx context.Context) (pauseIndex, error) {
	idx := pauseIndex{regions: map[string]*PauseView{}, mailboxes: map[string]*PauseView{}}
	if a.Stores.Pauses == nil {
		return idx, nil
	}
	ps, err := a.Stores.Pauses.Pauses(ctx)
	if err != nil {
		return idx, err
	}
	for _, p := range ps {
		if p.Kind == store.PauseRegion {
			idx.regions[p.Name] = pauseView(p)
		} else {
			idx.mailboxes[p.Name] = pauseView(p)
		}
	}
	return idx, nil
}

// forMailbox is the pause that holds a mailbox, by the drainer's rule: its
// own, else its region's (not for a region's callback mailboxes; a
// mailbox of a legacy name by its head's region), nil when none.
func (p pauseIndex) forMailbox(name, headRegion string) *PauseView {
	if v := p.mailboxes[name]; v != nil {
		return v
	}
	if region, ok := drain.RegionPauseHolds(name); ok {
		return p.regions[region]
	}
	if _, parsed := mailbox.Parse(name); !parsed {
		return p.regions[headRegion]
	}
	return nil
}
