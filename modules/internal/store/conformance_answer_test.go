package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

func callbackPayload(mailbox, body string) store.NewPayload {
	p := payload(mailbox, body)
	p.Provider = "slack"
	p.DestinationType = store.DestinationCallback
	p.CallbackURL = "https://hooks.slack.com/actions/T1/1/x"
	p.Path = "/extensions/slack/action/"
	return p
}

// RecordRegionAnswer keeps the region's answer and moves the row to a
// mailbox of its own in one statement; the answer follows the row into
// the dead letters and back through a replay.
func testRegionAnswer(t *testing.T, s engineStore, _ func(string)) {
	ctx := testCtx(t)
	const mb = "slack:us:7"
	res := mustInsert(t, s, callbackPayload(mb, "click"), payload(mb, "event after the click"))
	click, event := res[0].ID, res[1].ID
	if err := s.ReschedulePayload(ctx, click, 2, now(), 503, "region answered 503"); err != nil {
		t.Fatal(err)
	}
	for _, p := range next(t, s, mb, now(), false) {
		if p.Answered || p.RegionAnswer != nil {
			t.Fatalf("a fresh row reads as answered: %+v", p)
		}
	}

	answer := []byte{'{', 0x00, 0xff, '}'} // kept byte for byte
	cbBox := "slack:us:callback-" + fmt.Sprint(click)
	at := now()
	if err := s.RecordRegionAnswer(ctx, click, cbBox, answer, 200, at); err != nil {
		t.Fatal(err)
	}
	// The old mailbox holds only the event now: nothing waits behind the
	// callback.
	if got := ids(next(t, s, mb, at, false)); !slices.Equal(got, []int64{event}) {
		t.Fatalf("old mailbox after the answer = %v, want [%d]", got, event)
	}
	rows := next(t, s, cbBox, at, true)
	if len(rows) != 1 {
		t.Fatalf("callback mailbox = %+v", rows)
	}
	r := rows[0]
	if r.ID != click || !r.Answered || !bytes.Equal(r.RegionAnswer, answer) || r.Attempts != 0 || !r.ScheduleFor.Equal(at) ||
		r.LastStatus != 200 || r.LastError != "" || r.MailboxName != cbBox || r.CallbackURL == "" ||
		r.DestinationType != store.DestinationCallback || string(r.Body) != "click" {
		t.Fatalf("answered row = %+v", r)
	}
	due, err := s.DueMailboxes(ctx, at, 10, nil)
	if err != nil || !slices.Contains(due, cbBox) || !slices.Contains(due, mb) {
		t.Fatalf("DueMailboxes = %v, %v; want both mailboxes", due, err)
	}

	// A failed POST, then the dead letter: the answer stays.
	if err := s.ReschedulePayload(ctx, click, 3, at, 500, "response_url answered 500"); err != nil {
		t.Fatal(err)
	}
	if r := next(t, s, cbBox, at, false)[0]; !r.Answered || !bytes.Equal(r.RegionAnswer, answer) {
		t.Fatalf("rescheduling lost the answer: %+v", r)
	}
	if err := s.DeadLetterPayload(ctx, click, store.ReasonCallbackFailed, 500, "response_url answered 500", at); err != nil {
		t.Fatal(err)
	}
	dls, err := s.DeadLetters(ctx, 10, 0)
	if err != nil || len(dls) != 1 {
		t.Fatalf("DeadLetters = %+v, %v", dls, err)
	}
	if d := dls[0]; d.ID != click || !d.Answered || !bytes.Equal(d.RegionAnswer, answer) || d.Reason != store.ReasonCallbackFailed ||
		d.MailboxName != cbBox || d.Attempts != 3 {
		t.Fatalf("dead letter = %+v", d)
	}
	replayAt := now()
	newID, err := s.ReplayDeadLetter(ctx, click, replayAt)
	if err != nil {
		t.Fatal(err)
	}
	rows = next(t, s, cbBox, replayAt, false)
	if len(rows) != 1 || rows[0].ID != newID || !rows[0].Answered || !bytes.Equal(rows[0].RegionAnswer, answer) || rows[0].Attempts != 0 {
		t.Fatalf("replayed row = %+v", rows)
	}

	// An empty answer is an answer.
	empty := mustInsert(t, s, callbackPayload(mb, "empty"))[0].ID
	if err := s.RecordRegionAnswer(ctx, empty, "slack:us:callback-"+fmt.Sprint(empty), nil, 204, at); err != nil {
		t.Fatal(err)
	}
	if r := next(t, s, "slack:us:callback-"+fmt.Sprint(empty), at, false); len(r) != 1 || !r[0].Answered || r[0].RegionAnswer == nil || len(r[0].RegionAnswer) != 0 {
		t.Fatalf("empty answer = %+v", r)
	}
	// A dead letter of a row the region never answered replays as such.
	if err := s.DeadLetterPayload(ctx, event, store.ReasonCallbackRefused, 0, "refused", at); err != nil {
		t.Fatal(err)
	}
	dls, _ = s.DeadLetters(ctx, 10, 0)
	if len(dls) != 1 || dls[0].Answered || dls[0].RegionAnswer != nil {
		t.Fatalf("unanswered dead letter = %+v", dls)
	}
	if err := s.RecordRegionAnswer(ctx, 999_999, "x:y:z", []byte("{}"), 200, at); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RecordRegionAnswer on a missing row: %v, want ErrNotFound", err)
	}
}

// testMigrateFromPrevious upgrades a database holding the schema and rows
// of the previous release: the rows survive and read as unanswered, and
// the new column works.
func testMigrateFromPrevious(t *testing.T, e engine) {
	s, exec := e.open(t, false)
	dir := filepath.Join("migrations", e.name)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if e.name == "postgres" {
		exec(`CREATE TABLE silo_schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`)
	} else {
		exec(`CREATE TABLE silo_schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`)
	}
	for _, entry := range entries {
		name := entry.Name()
		if name == "directory.sql" || name >= "0003" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		exec(string(b))
		version, _, _ := strings.Cut(name, "_")
		exec(fmt.Sprintf(`INSERT INTO silo_schema_migrations (version, applied_at) VALUES (%s, %s)`, strings.TrimLeft(version, "0"),
			map[string]string{"postgres": "now()", "sqlite": "0"}[e.name]))
	}
	old := mustInsert(t, s, callbackPayload("slack:us:7", "before the upgrade"), payload("github:us:1", "dead before the upgrade"))
	if err := s.DeadLetterPayload(testCtx(t), old[1].ID, store.ReasonMaxAge, 0, "", now()); err == nil {
		t.Fatal("the previous schema accepted the new dead-letter statement")
	}
	exec(fmt.Sprintf(`DELETE FROM silo_webhook_payload WHERE id = %d`, old[1].ID))

	if err := s.Migrate(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	rows := next(t, s, "slack:us:7", now(), false)
	if len(rows) != 1 || rows[0].Answered || string(rows[0].Body) != "before the upgrade" {
		t.Fatalf("row from before the upgrade = %+v", rows)
	}
	at := now()
	if err := s.RecordRegionAnswer(testCtx(t), rows[0].ID, "slack:us:callback-1", []byte(`{"text":"ok"}`), 200, at); err != nil {
		t.Fatal(err)
	}
	if r := next(t, s, "slack:us:callback-1", at, false); len(r) != 1 || string(r[0].RegionAnswer) != `{"text":"ok"}` {
		t.Fatalf("answered after the upgrade = %+v", r)
	}
	if err := s.Migrate(testCtx(t)); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
}
