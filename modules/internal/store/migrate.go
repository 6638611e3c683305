package store

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Migrations are embedded and versioned: migrations/<engine>/NNNN_name.sql
// is applied once, in version order, and recorded in
// silo_schema_migrations(version, applied_at). migrations/<engine>/
// directory.sql is not versioned: MigrateDirectory runs it, and it only
// creates the Sentry directory tables that are missing.
//
//go:embed migrations
var migrationFS embed.FS

// migration is one versioned script.
type migration struct {
	version int
	name    string
	sql     string
}

// DirectoryTables are the Sentry control-silo tables the directory reads,
// as directory.sql creates them where they are missing.
var DirectoryTables = []string{
	"sentry_organizationmapping",
	"sentry_integration",
	"sentry_organizationintegration",
	"sentry_identity",
	"sentry_sentryapp",
	"sentry_sentryappinstallation",
	"sentry_projectkeymapping",
}

// directoryScript is the unversioned CREATE TABLE IF NOT EXISTS script.
const directoryScript = "directory.sql"

// migrationsFor returns the versioned migrations of an engine, in order.
func migrationsFor(engine string) ([]migration, error) {
	dir := path.Join("migrations", engine)
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		if name == directoryScript || !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive version and '_'", name)
		}
		b, err := fs.ReadFile(migrationFS, path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share a version", out[i-1].name, out[i].name)
		}
	}
	return out, nil
}

// directorySQL returns an engine's directory table script.
func directorySQL(engine string) (string, error) {
	b, err := fs.ReadFile(migrationFS, path.Join("migrations", engine, directoryScript))
	return string(b), err
}
