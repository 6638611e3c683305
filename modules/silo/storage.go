package silo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/sentrysilo/caddy-silo/modules/internal/admin"
	"github.com/sentrysilo/caddy-silo/modules/internal/credentials"
	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
	"github.com/sentrysilo/caddy-silo/modules/internal/drain"
	"github.com/sentrysilo/caddy-silo/modules/internal/mailbox"
	"github.com/sentrysilo/caddy-silo/modules/internal/store"
)

// storages holds the open databases across reloads: a reload with the same
// storage reuses the pool (or SQLite handle) instead of reconnecting, and
// both configs share it during the overlap. Keys are hashes, so a DSN
// never sits in a map key that might be logged.
var storages = caddy.NewUsagePool()

// sharedStorage is what the UsagePool holds for one database.
type sharedStorage struct {
	pool   *pgxpool.Pool // postgres only
	sqlite *store.SQLite // sqlite only
	// migrated is set once migrations succeeded on this database, so
	// reloads do not run them again.
	migrated atomic.Bool
}

func (s *sharedStorage) Destruct() error {
	if s.pool != nil {
		s.pool.Close()
	}
	if s.sqlite != nil {
		s.sqlite.Close()
	}
	return nil
}

func storageKey(kind, value string) string {
	sum := sha256.Sum256([]byte(kind + "\x00" + value))
	return kind + ":" + hex.EncodeToString(sum[:12])
}

// openStorage acquires the storage (and the directory database when it is
// elsewhere) and takes from each engine the parts the app hands out.
// Nothing here connects: pgxpool dials lazily.
func (a *App) openStorage() error {
	switch a.Storage.Engine {
	case EnginePostgres:
		shared, err := a.acquirePostgres("storage postgres", a.storageDSN)
		if err != nil {
			return err
		}
		a.shared = shared
		pg := store.NewPostgres(shared.pool)
		a.payloads = payloadParts{migrate: pg.Migrate, insert: countInserts(pg.InsertPayloads), drain: pg, notify: pg,
			admin: admin.Stores{Mailboxes: pg, DeadLetters: pg, Delivered: pg, Pauses: pg, Health: pg}}
		a.directoryDB = directoryParts{source: pg, credentials: pg, tables: pg}
	case EngineSQLite:
		key := storageKey("sqlite", a.storagePath)
		v, _, err := storages.LoadOrNew(key, func() (caddy.Destructor, error) {
			db, err := store.OpenSQLite(a.storagePath)
			if err != nil {
				return nil, err
			}
			return &sharedStorage{sqlite: db}, nil
		})
		if err != nil {
			return fmt.Errorf("storage sqlite %s: %v", a.storagePath, err)
		}
		a.poolKeys = append(a.poolKeys, key)
		a.shared = v.(*sharedStorage)
		db := a.shared.sqlite
		// One process writes the file: no other instance to notify.
		a.payloads = payloadParts{migrate: db.Migrate, insert: countInserts(db.InsertPayloads), drain: db,
			admin: admin.Stores{Mailboxes: db, DeadLetters: db, Delivered: db, Pauses: db, Health: db}}
		a.directoryDB = directoryParts{source: db, credentials: db, tables: db}
	}
	if a.directoryDSN != "" {
		shared, err := a.acquirePostgres("directory_dsn", a.directoryDSN)
		if err != nil {
			return err
		}
		pg := store.NewPostgres(shared.pool)
		a.directoryDB = directoryParts{source: pg, credentials: pg, tables: pg}
	}
	return nil
}

// payloadParts are the storage database's parts, one per consumer: each
// takes only what it uses (capture the group-commit insert, the drainer
// its Store, the admin API its own), from the same engine.
type payloadParts struct {
	migrate func(context.Context) error
	insert  mailbox.InsertFunc
	drain   drain.Store
	admin   admin.Stores
	notify  mailboxNotifier // nil when the engine cannot wake other instances
}

// directoryParts are the parts of the directory's database: its source
// for the cached directory, the row-locked token store of the credential
// proxy, and its tables for the start-up check.
type directoryParts struct {
	source      directory.Source
	credentials credentials.Store
	tables      directoryTables
}

// directoryTables is what the app needs to create or check the directory
// tables.
type directoryTables interface {
	MigrateDirectory(ctx context.Context) error
	MissingDirectoryTables(ctx context.Context) ([]string, error)
	Where() string
}

func (a *App) acquirePostgres(what, dsn string) (*sharedStorage, error) {
	cfg, err := store.PostgresPoolConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	// The key covers everything that shapes the pool, so a changed
	// setting gives a new pool and an unchanged one is reused.
	key := storageKey("postgres", cfg.ConnString()+fmt.Sprintf("|%d|%d|%s|%s", cfg.MaxConns, cfg.MinConns, cfg.MaxConnLifetime, cfg.HealthCheckPeriod))
	v, loaded, err := storages.LoadOrNew(key, func() (caddy.Destructor, error) {
		p, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			return nil, err
		}
		return &sharedStorage{pool: p}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	a.poolKeys = append(a.poolKeys, key)
	if c := a.logger.Check(zap.DebugLevel, "postgres pool acquired"); c != nil {
		c.Write(zap.String("for", what), zap.Bool("reused", loaded))
	}
	return v.(*sharedStorage), nil
}

// releaseStorage drops exactly the references this app took, once.
func (a *App) releaseStorage() {
	for _, k := range a.poolKeys {
		_, _ = storages.Delete(k)
	}
	a.poolKeys = nil
}

// storageReferences reports how many configs hold each storage; tests use
// it to show that reloads do not leak references.
func storageReferences() map[string]int {
	out := map[string]int{}
	storages.Range(func(k, _ any) bool {
		n, _ := storages.References(k)
		out[k.(string)] = n
		return true
	})
	return out
}
