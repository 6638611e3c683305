package silocli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

const apiRoot = "/sentry_silo"

func runStatus(ctx context.Context, inv *invocation) error {
	if err := inv.wantArgs(0); err != nil {
		return err
	}
	var s statusAnswer
	raw, err := inv.api.get(ctx, apiRoot+"/status", nil, &s)
	if err != nil {
		return err
	}
	if inv.json {
		return printJSON(inv.env.Stdout, raw)
	}
	w := inv.env.Stdout
	tw := newTable(w)
	fmt.Fprintf(tw, "mode\t%s\n", s.Mode)
	health := "ok"
	if !s.Storage.OK {
		health = "FAILING: " + s.Storage.Error
	}
	fmt.Fprintf(tw, "storage\t%s, %s: %s (ping %.2f ms)\n", s.Storage.Engine, s.Storage.Where, health, s.Storage.PingMS)
	if d := s.Drainer; d == nil {
		fmt.Fprintf(tw, "drainer\toff on this instance\n")
	} else {
		state := "running"
		if !d.Running {
			state = "STOPPED"
		}
		fmt.Fprintf(tw, "drainer\t%s as %s: %d of %d workers busy, %s queued, %s held\n", state, d.Owner,
			d.Busy, d.Workers, plural(int64(d.Queued), "mailbox", "mailboxes"), plural(int64(d.LeasesHeld), "lease", "leases"))
		if d.PausesError != "" {
			fmt.Fprintf(tw, "\tpauses: last read FAILED (%s), keeping the pauses it knew\n", cell(d.PausesError))
		}
		if d.DeliveredRetentionSeconds > 0 {
			fmt.Fprintf(tw, "\tdelivered history kept %s\n", age(d.DeliveredRetentionSeconds))
		}
	}
	fmt.Fprintf(tw, "rates\t%.1f captures/s, %.1f deliveries/s (last %s)\n", s.Rates.CapturesPerSecond, s.Rates.DeliveriesPerSecond, age(s.Rates.WindowSeconds))
	dir := fmt.Sprintf("%s, %s, %s", plural(int64(s.Directory.StaticOrganizations), "static organization", "static organizations"),
		plural(int64(s.Directory.StaticIntegrations), "static integration", "static integrations"),
		plural(int64(s.Directory.CacheEntries), "cached entry", "cached entries"))
	if s.Directory.Database != "" {
		dir += "; " + s.Directory.Database
	}
	if len(s.Directory.MissingTables) > 0 {
		dir += "; MISSING TABLES: " + strings.Join(s.Directory.MissingTables, ", ")
	}
	if s.Directory.Error != "" {
		dir += "; ERROR: " + s.Directory.Error
	}
	fmt.Fprintf(tw, "directory\t%s\n", dir)
	tw.Flush()

	fmt.Fprintln(w)
	tw = newTable(w)
	fmt.Fprintln(tw, "REGION\tBREAKER\tIN FLIGHT\tFAILURES\tPAUSED\tLAST ERROR")
	for _, r := range s.Regions {
		last := "-"
		if r.LastError != "" {
			last = cell(r.LastError) + " at " + stamp(r.LastErrorAt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", r.Name, r.Breaker, r.InFlight, r.ConsecutiveFailures, pauseCell(r.Paused), last)
	}
	return tw.Flush()
}

type mailboxOpts struct {
	sort, minAge, after string
	limit               int
}

func mailboxFlags(fs *flag.FlagSet, inv *invocation) {
	inv.filters["provider"] = fs.String("provider", "", "only mailboxes of this provider (github, slack, ...)")
	inv.filters["region"] = fs.String("region", "", "only mailboxes of this region")
	fs.StringVar(&inv.mailbox.minAge, "min-age", "", "only mailboxes whose oldest payload is at least this old (90s, 10m, 2h)")
	fs.StringVar(&inv.mailbox.sort, "sort", "", "name, depth or oldest [name]")
	fs.IntVar(&inv.mailbox.limit, "limit", 0, "page size, 1 to 1000 [100]; with a mailbox name, head rows, 1 to 100 [10]")
	fs.StringVar(&inv.mailbox.after, "after", "", "the cursor a previous page printed")
}

func runMailboxes(ctx context.Context, inv *invocation) error {
	switch len(inv.args) {
	case 0:
	case 1:
		return runMailbox(ctx, inv, inv.args[0])
	default:
		return inv.wantArgs(1)
	}
	q := inv.query()
	if v := inv.mailbox.minAge; v != "" {
		if _, err := time.ParseDuration(v); err != nil {
			return usageErr("--min-age %q: a duration such as 90s, 10m or 2h", v)
		}
		q.Set("min_age", v)
	}
	if v := inv.mailbox.sort; v != "" {
		if v != "name" && v != "depth" && v != "oldest" {
			return usageErr("--sort %q: name, depth or oldest", v)
		}
		q.Set("sort", v)
	}
	if err := setLimit(q, inv.mailbox.limit, 1000); err != nil {
		return err
	}
	if v := inv.mailbox.after; v != "" {
		q.Set("after", v)
	}
	var a mailboxesAnswer
	raw, err := inv.api.get(ctx, apiRoot+"/mailboxes", q, &a)
	if err != nil {
		return err
	}
	if inv.json {
		return printJSON(inv.env.Stdout, raw)
	}
	w := inv.env.Stdout
	if len(a.Mailboxes) == 0 && a.Next == nil {
		fmt.Fprintln(w, "no mailbox has pending payloads")
		return nil
	}
	now := inv.env.Now()
	tw := newTable(w)
	fmt.Fprintln(tw, "MAILBOX\tREGION\tPROVIDER\tDEPTH\tOLDEST\tATTEMPTS\tLAST STATUS\tNEXT ATTEMPT\tPAUSED\tLAST ERROR")
	for _, m := range a.Mailboxes {
		depth := strconv.FormatInt(m.Depth, 10)
		if m.DepthCapped {
			depth += "+"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", m.Name, m.Region, m.Provider, depth, age(m.OldestAge),
			m.HeadAttempts, status(m.HeadStatus), until(m.NextAttemptAt, now), pauseCell(m.Paused), cell(m.HeadError))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if a.Truncated {
		fmt.Fprintln(w, "(the order covers the first 100,000 mailboxes by name)")
	}
	if a.Next != nil {
		fmt.Fprintf(w, "more: add --after %s\n", *a.Next)
	}
	return nil
}

func runMailbox(ctx context.Context, inv *invocation, name string) error {
	q := url.Values{}
	for k, v := range inv.filters {
		if *v != "" {
			return usageErr("--%s filters the listing; it does not apply to one mailbox", k)
		}
	}
	if inv.mailbox.sort != "" || inv.mailbox.minAge != "" || inv.mailbox.after != "" {
		return usageErr("--sort, --min-age and --after apply to the listing, not to one mailbox")
	}
	if err := setLimit(q, inv.mailbox.limit, 100); err != nil {
		return err
	}
	var a mailboxAnswer
	raw, err := inv.api.get(ctx, apiRoot+"/mailboxes/"+segment(name), q, &a)
	if err != nil {
		return err
	}
	if inv.json {
		return printJSON(inv.env.Stdout, raw)
	}
	w, m, now := inv.env.Stdout, a.Mailbox, inv.env.Now()
	tw := newTable(w)
	depth := strconv.FormatInt(m.Depth, 10)
	if m.DepthCapped {
		depth = "at least " + depth
	}
	fmt.Fprintf(tw, "mailbox\t%s (region %s, provider %s)\n", m.Name, m.Region, m.Provider)
	fmt.Fprintf(tw, "depth\t%s, oldest %s\n", depth, age(m.OldestAge))
	fmt.Fprintf(tw, "head\t%d: %s, last status %s, next attempt %s\n", m.HeadID, plural(int64(m.HeadAttempts), "attempt", "attempts"), status(m.HeadStatus), until(m.NextAttemptAt, now))
	if m.HeadError != "" {
		fmt.Fprintf(tw, "last error\t%s\n", cell(m.HeadError))
	}
	fmt.Fprintf(tw, "paused\t%s\n", pauseCell(m.Paused))
	tw.Flush()
	fmt.Fprintln(w)
	return rowTable(w, a.Head, now, false)
}

// rowTable prints payloads, or dead letters (dead: their reason and time).
func rowTable(w interface{ Write([]byte) (int, error) }, rows []row, now time.Time, dead bool) error {
	tw := newTable(w)
	if dead {
		fmt.Fprintln(tw, "ID\tMAILBOX\tREASON\tLAST STATUS\tATTEMPTS\tDEAD AT\tREQUEST\tLAST ERROR")
	} else {
		fmt.Fprintln(tw, "ID\tMAILBOX\tCAPTURED\tATTEMPTS\tLAST STATUS\tNEXT ATTEMPT\tREQUEST\tLAST ERROR")
	}
	for _, r := range rows {
		req := r.Method + " " + r.Path
		if r.Destination == "response_url" {
			req = "callback " + req
		}
		if dead {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.ID, r.Mailbox, r.Reason, status(r.LastStatus), r.Attempts, stamp(r.DeadAt), cell(req), cell(r.LastError))
		} else {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.ID, r.Mailbox, stamp(r.DateAdded), r.Attempts, status(r.LastStatus), until(r.NextAttemptAt, now), cell(req), cell(r.LastError))
		}
	}
	return tw.Flush()
}

// rowFilterFlags are the dead letters' filters (docs/admin-api.md,
// "Filters"), as flags named like the query parameters.
func rowFilterFlags(fs *flag.FlagSet, inv *invocation) {
	inv.filters["mailbox"] = fs.String("mailbox", "", "only this mailbox")
	inv.filters["provider"] = fs.String("provider", "", "only this provider")
	inv.filters["region"] = fs.String("region", "", "only this region")
	inv.filters["reason"] = fs.String("reason", "", "dropped_404, attempts_exceeded, max_age, callback_refused or callback_failed")
	inv.filters["since"] = fs.String("since", "", "dead at or after: RFC 3339, or a duration ago (1h)")
	inv.filters["until"] = fs.String("until", "", "dead before: RFC 3339, or a duration ago (10m)")
	if inv.cmd.name == "dead-letters list" {
		fs.IntVar(&inv.mailbox.limit, "limit", 0, "page size, 1 to 1000 [100]")
		fs.StringVar(&inv.mailbox.after, "after", "", "the cursor a previous page printed")
	}
}

func bulkFlags(fs *flag.FlagSet, inv *invocation) {
	rowFilterFlags(fs, inv)
	fs.BoolVar(&inv.all, "all", false, "every dead letter (a bulk action without a filter is refused otherwise)")
}

// query is the filters given, as query parameters; a time given as a
// duration is that long before now.
func (inv *invocation) query() url.Values {
	q := url.Values{}
	for k, v := range inv.filters {
		if *v != "" {
			q.Set(k, *v)
		}
	}
	return q
}

// filterQuery is query with --since and --until checked and made absolute.
func (inv *invocation) filterQuery() (url.Values, error) {
	q := inv.query()
	for _, k := range []string{"since", "until"} {
		v := q.Get(k)
		if v == "" {
			continue
		}
		if _, err := time.Parse(time.RFC3339Nano, v); err == nil {
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return nil, usageErr("--%s %q: an RFC 3339 time (2026-12-02T09:00:00Z) or a duration ago (90s, 2h)", k, v)
		}
		q.Set(k, inv.env.Now().Add(-d).UTC().Format(time.RFC3339))
	}
	return q, nil
}

func setLimit(q url.Values, limit, most int) error {
	if limit == 0 {
		return nil
	}
	if limit < 1 || limit > most {
		return usageErr("--limit %d: from 1 to %d", limit, most)
	}
	q.Set("limit", strconv.Itoa(limit))
	return nil
}

func runDeadLetterList(ctx context.Context, inv *invocation) error {
	if err := inv.wantArgs(0); err != nil {
		return err
	}
	q, err := inv.filterQuery()
	if err != nil {
		return err
	}
	if err := setLimit(q, inv.mailbox.limit, 1000); err != nil {
		return err
	}
	if v := inv.mailbox.after; v != "" {
		if _, err := positiveID(v); err != nil {
			return usageErr("--after %q: the id a previous page printed", v)
		}
		q.Set("after", v)
	}
	var a deadLettersAnswer
	raw, err := inv.api.get(ctx, apiRoot+"/dead_letters", q, &a)
	if err != nil {
		return err
	}
	if inv.json {
		return printJSON(inv.env.Stdout, raw)
	}
	w := inv.env.Stdout
	if len(a.DeadLetters) == 0 && a.Next == nil {
		fmt.Fprintln(w, "no dead letters")
		return nil
	}
	if err := rowTable(w, a.DeadLetters, inv.env.Now(), true); err != nil {
		return err
	}
	if a.Next != nil {
		fmt.Fprintf(w, "more: add --after %d\n", *a.Next)
	}
	return nil
}

func positiveID(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("not a positive integer")
	}
	return n, nil
}

func (inv *invocation) idArg() (string, error) {
	if err := inv.wantArgs(1); err != nil {
		return "", err
	}
	if _, err := positiveID(inv.args[0]); err != nil {
		return "", usageErr("dead letter id %q: %v", inv.args[0], err)
	}
	return inv.args[0], nil
}

func runDeadLetterShow(ctx context.Context, inv *invocation) error {
	id, err := inv.idArg()
	if err != nil {
		return err
	}
	var d detailAnswer
	raw, err := inv.api.get(ctx, apiRoot+"/dead_letters/"+id, nil, &d)
	if err != nil {
		return err
	}
	if inv.json {
		return printJSON(inv.env.Stdout, raw)
	}
	w := inv.env.Stdout
	tw := newTable(w)
	fmt.Fprintf(tw, "dead letter\t%d in %s (region %s, provider %s)\n", d.ID, d.Mailbox, d.Region, d.Provider)
	fmt.Fprintf(tw, "reason\t%s at %s, after %s; last status %s\n", d.Reason, stamp(d.DeadAt), plural(int64(d.Attempts), "attempt", "attempts"), status(d.LastStatus))
	if d.LastError != "" {
		fmt.Fprintf(tw, "last error\t%s\n", d.LastError)
	}
	fmt.Fprintf(tw, "captured\t%s\n", stamp(d.DateAdded))
	fmt.Fprintf(tw, "request\t%s %s (to %s)\n", d.Method, d.Path, d.Destination)
	if d.DeliveryKey != "" {
		fmt.Fprintf(tw, "delivery key\t%s\n", d.DeliveryKey)
	}
	if d.CallbackURL != "" {
		fmt.Fprintf(tw, "callback\t%s\n", d.CallbackURL)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nheaders (credentials and signatures masked):")
	names := make([]string, 0, len(d.Headers))
	for k := range d.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		for _, v := range d.Headers[k] {
			fmt.Fprintf(w, "  %s: %s\n", k, v)
		}
	}
	note := ""
	if d.Body.Truncated {
		note = ", preview of the first 4096 bytes"
	}
	if d.Body.Masked {
		note += ", secret fields masked"
	}
	fmt.Fprintf(w, "\nbody (%d bytes, %s%s):\n%s\n", d.Body.Size, d.Body.Encoding, note, d.Body.Preview)
	return nil
}

func runDeadLetterReplay(ctx context.Context, inv *invocation) error {
	return deadLetterAction(ctx, inv, http.MethodPost, "/replay", "replayed")
}

func runDeadLetterDelete(ctx context.Context, inv *invocation) error {
	return deadLetterAction(ctx, inv, http.MethodDelete, "", "deleted")
}

// deadLetterAction replays or deletes one dead letter (an id) or every
// match of the filters. A bulk action is repeated while the API says
// "more": each request does at most 50,000 rows or 20 s, and repeating it
// goes on where it stopped (docs/admin-api.md, "Bulk actions").
func deadLetterAction(ctx context.Context, inv *invocation, method, suffix, verb string) error {
	q, err := inv.filterQuery()
	if err != nil {
		return err
	}
	if len(inv.args) > 0 {
		if len(q) > 0 || inv.all {
			return usageErr("give a dead letter id or filters (or --all), not both")
		}
		id, err := inv.idArg()
		if err != nil {
			return err
		}
		path := apiRoot + "/dead_letters/" + id
		if method == http.MethodPost {
			path += suffix
		}
		raw, err := inv.api.call(ctx, method, path, nil, nil)
		if err != nil {
			return err
		}
		if inv.json {
			return printJSON(inv.env.Stdout, raw)
		}
		var a struct {
			PayloadID int64 `json:"payload_id"`
		}
		_ = json.Unmarshal(raw, &a)
		if verb == "replayed" {
			fmt.Fprintf(inv.env.Stdout, "dead letter %s replayed as payload %d, at the tail of its mailbox\n", id, a.PayloadID)
		} else {
			fmt.Fprintf(inv.env.Stdout, "dead letter %s deleted\n", id)
		}
		return nil
	}
	if len(q) == 0 && !inv.all {
		return usageErr("%s every dead letter? give filters (--mailbox, --region, --reason, ...) or --all", strings.TrimSuffix(verb, "d"))
	}
	if inv.all {
		q.Set("all", "true")
	}
	var total, batches int64
	for {
		raw, err := inv.api.call(ctx, method, apiRoot+"/dead_letters"+suffix, q, nil)
		if err != nil {
			if total > 0 {
				return fmt.Errorf("%w (%d dead letters %s before the failure)", err, total, verb)
			}
			return err
		}
		var a bulkAnswer
		if err := json.Unmarshal(raw, &a); err != nil {
			return &Error{Code: ExitAPI, Err: fmt.Errorf("%s: the answer is not the documented JSON: %v", verb, err)}
		}
		n := a.Replayed
		if n == nil {
			n = a.Deleted
		}
		if n != nil {
			total += *n
		}
		batches += a.Batches
		// A request that touched nothing and still says "more" would loop
		// for ever; the API does not answer that, but a wrong one must not
		// hang the operator's terminal.
		if !a.More || n == nil || *n == 0 {
			break
		}
	}
	if inv.json {
		out, _ := json.Marshal(map[string]any{verb: total, "batches": batches, "more": false})
		return printJSON(inv.env.Stdout, out)
	}
	fmt.Fprintf(inv.env.Stdout, "%s %s (%s)\n", plural(total, "dead letter", "dead letters"), verb, plural(batches, "batch", "batches"))
	return nil
}

type pauseOpts struct{ reason, by string }

func pauseFlags(fs *flag.FlagSet, inv *invocation) {
	fs.StringVar(&inv.pause.reason, "reason", "", "why, shown with the pause")
	fs.StringVar(&inv.pause.by, "by", "", "who [$USER]")
}

// target is the "region|mailbox <name>" of pause and resume, as its path.
func (inv *invocation) target() (kind, path string, err error) {
	if len(inv.args) != 2 || (inv.args[0] != "region" && inv.args[0] != "mailbox") {
		return "", "", usageErr("caddy silo %s takes region <name> or mailbox <name>", inv.cmd.name)
	}
	kind = inv.args[0]
	collection := map[string]string{"region": "/regions/", "mailbox": "/mailboxes/"}[kind]
	return kind, apiRoot + collection + segment(inv.args[1]), nil
}

func runPause(ctx context.Context, inv *invocation) error {
	kind, path, err := inv.target()
	if err != nil {
		return err
	}
	by := inv.pause.by
	if by == "" {
		by = inv.env.Getenv("USER")
	}
	raw, err := inv.api.call(ctx, http.MethodPost, path+"/pause", nil, map[string]string{"reason": inv.pause.reason, "by": by})
	if err != nil {
		return err
	}
	if inv.json {
		return printJSON(inv.env.Stdout, raw)
	}
	var a struct {
		Pause   pause `json:"pause"`
		Created bool  `json:"created"`
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		return &Error{Code: ExitAPI, Err: fmt.Errorf("pause: the answer is not the documented JSON: %v", err)}
	}
	if a.Created {
		fmt.Fprintf(inv.env.Stdout, "%s %s paused: nothing is delivered to it until `caddy silo resume %s %s`\n", kind, inv.args[1], kind, inv.args[1])
	} else {
		fmt.Fprintf(inv.env.Stdout, "%s %s was paused already, since %s%s\n", kind, inv.args[1], stamp(a.Pause.PausedAt), byReason(a.Pause))
	}
	return nil
}

func byReason(p pause) string {
	s := ""
	if p.PausedBy != "" {
		s += " by " + p.PausedBy
	}
	if p.Reason != "" {
		s += ": " + p.Reason
	}
	return s
}

func runResume(ctx context.Context, inv *invocation) error {
	kind, path, err := inv.target()
	if err != nil {
		return err
	}
	raw, err := inv.api.call(ctx, http.MethodPost, path+"/resume", nil, nil)
	if err != nil {
		return err
	}
	if inv.json {
		return printJSON(inv.env.Stdout, raw)
	}
	var a struct {
		Resumed bool `json:"resumed"`
	}
	_ = json.Unmarshal(raw, &a)
	if a.Resumed {
		fmt.Fprintf(inv.env.Stdout, "%s %s resumed\n", kind, inv.args[1])
	} else {
		fmt.Fprintf(inv.env.Stdout, "%s %s was not paused\n", kind, inv.args[1])
	}
	return nil
}

func runPauses(ctx context.Context, inv *invocation) error {
	if err := inv.wantArgs(0); err != nil {
		return err
	}
	var a struct {
		Pauses []pause `json:"pauses"`
	}
	raw, err := inv.api.get(ctx, apiRoot+"/pauses", nil, &a)
	if err != nil {
		return err
	}
	if inv.json {
		return printJSON(inv.env.Stdout, raw)
	}
	if len(a.Pauses) == 0 {
		fmt.Fprintln(inv.env.Stdout, "nothing is paused")
		return nil
	}
	tw := newTable(inv.env.Stdout)
	fmt.Fprintln(tw, "KIND\tNAME\tSINCE\tBY\tREASON")
	for _, p := range a.Pauses {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Kind, p.Name, stamp(p.PausedAt), cell(p.PausedBy), cell(p.Reason))
	}
	return tw.Flush()
}

func runRetry(ctx context.Context, inv *invocation) error {
	if err := inv.wantArgs(1); err != nil {
		return err
	}
	raw, err := inv.api.call(ctx, http.MethodPost, apiRoot+"/mailboxes/"+segment(inv.args[0])+"/retry", nil, nil)
	if err != nil {
		return err
	}
	if inv.json {
		return printJSON(inv.env.Stdout, raw)
	}
	fmt.Fprintf(inv.env.Stdout, "mailbox %s: its head is due now\n", inv.args[0])
	return nil
}
