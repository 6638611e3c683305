package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

var sqliteEngine = engine{
	name: "sqlite",
	open: func(t testing.TB, migrate bool) (engineStore, func(string)) {
		s := openSQLite(t, filepath.Join(t.TempDir(), "silo.db"), migrate)
		return s, sqliteExec(t, s.Path())
	},
}

func openSQLite(t testing.TB, path string, migrate bool) *store.SQLite {
	t.Helper()
	s, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if migrate {
		// One database for everything: ours and the directory's tables.
		if err := s.Migrate(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		if err := s.MigrateDirectory(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// sqliteExec runs fixture SQL on a connection of the test's own.
func sqliteExec(t testing.TB, path string) func(string) {
	return func(q string) {
		t.Helper()
		db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("fixture %q: %v", q, err)
		}
	}
}

func TestSQLite(t *testing.T) {
	runConformance(t, sqliteEngine)
}

func TestSQLiteOpenCreatesDirectories(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "silo.db")
	s := openSQLite(t, path, true)
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	var mode string
	db, _ := sql.Open("sqlite", path)
	defer db.Close()
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v", mode, err)
	}
	_ = s
	for _, bad := range []string{"", "x.db?mode=memory", "file:x.db"} {
		if _, err := store.OpenSQLite(bad); err == nil {
			t.Errorf("OpenSQLite(%q) succeeded", bad)
		}
	}
}

// TestSQLiteReloadOverlap opens two stores on one file, as the old and the
// new config do during a reload, and writes through both at once.
func TestSQLiteReloadOverlap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "silo.db")
	a := openSQLite(t, path, true)
	b := openSQLite(t, path, true)
	var wg sync.WaitGroup
	for i, s := range []engineStore{a, b, a, b} {
		wg.Go(func() {
			for j := range 25 {
				if _, err := s.InsertPayloads(testCtx(t), []store.NewPayload{payload("github:us:1", fmt.Sprint(i, j))}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := next(t, a, "github:us:1", now(), false); len(got) != 100 {
		t.Fatalf("%d rows, want 100", len(got))
	}
}

func TestSQLiteUnavailable(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "silo.db"), true)
	s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s.InsertPayloads(ctx, []store.NewPayload{payload("github:us:1", "x")})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("insert on a closed store: %v, want ErrUnavailable", err)
	}
	if _, err := s.DueMailboxes(ctx, now(), 10, nil); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("read on a closed store: %v, want ErrUnavailable", err)
	}
}

// TestSQLiteDurableSettings checks the connection settings the writer
// runs with.
func TestSQLiteDurableSettings(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "silo.db"), true)
	// The ids of deleted rows are never handed out again (AUTOINCREMENT).
	r := mustInsert(t, s, payload("github:us:1", "a"), payload("github:us:1", "b"))
	for _, x := range r {
		if err := s.DeletePayload(testCtx(t), x.ID); err != nil {
			t.Fatal(err)
		}
	}
	if again := mustInsert(t, s, payload("github:us:1", "c")); again[0].ID <= r[1].ID {
		t.Errorf("id %d reused (last was %d)", again[0].ID, r[1].ID)
	}
}
