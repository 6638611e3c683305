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
		pg, shared, err := openStoragePostgres(a.acquirePostgres, a.storageDSN, a.listenDSN)
		if err != nil {
			return err
		}
		a.shared = shared
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
		parts, err := openDirectoryPostgres(a.acquirePostgres, a.directoryDSN)
		if err != nil {
			return err
		}
		a.directoryDB = parts
	}
	return nil
}

// openStoragePostgres opens the storage database: every capture writes
// to it and the drainer reads its own writes there (the mailbox heads), so
// its pool settles only on a host that takes writes, whatever the DSN's
// host list (store.RequireWritable). The drainer's LISTEN session goes to
// listen_dsn when it is set.
func openStoragePostgres(acquire acquireFunc, storageDSN, listenDSN string) (*store.Postgres, *sharedStorage, error) {
	cfg, err := store.PostgresPoolConfig(storageDSN)
	if err == nil {
		err = store.RequireWritable(cfg.ConnConfig)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("storage postgres: %v", err)
	}
	shared, err := acquire("storage postgres", cfg)
	if err != nil {
		return nil, nil, err
	}
	if listenDSN == "" {
		return store.NewPostgres(shared.pool), shared, nil
	}
	lcfg, err := store.PostgresPoolConfig(listenDSN)
	if err == nil {
		err = store.RequireWritable(lcfg.ConnConfig)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("listen_dsn: %v", err)
	}
	return store.NewPostgres(shared.pool, store.ListenOn(lcfg.ConnConfig)), shared, nil
}

// openDirectoryPostgres opens Sentry's control database (directory_dsn).
// Routing reads go to the DSN as given, which may prefer a hot standby
// (target_session_attrs=prefer-standby). The credential proxy's tokens do
// not: it locks their row, writes refreshed tokens back and must read the
// token another instance just wrote, none of which a standby can do (a
// lagging one would hand out a token already replaced). When the DSN may
// settle on a standby, the tokens get a pool of their own on the same
// hosts that settles only on the primary (store.WritableCopy).
func openDirectoryPostgres(acquire acquireFunc, directoryDSN string) (directoryParts, error) {
	cfg, err := store.PostgresPoolConfig(directoryDSN)
	if err != nil {
		return directoryParts{}, fmt.Errorf("directory_dsn: %v", err)
	}
	shared, err := acquire("directory_dsn", cfg)
	if err != nil {
		return directoryParts{}, err
	}
	pg := store.NewPostgres(shared.pool)
	parts := directoryParts{source: pg, credentials: pg, tables: pg}
	if wcfg, copied := store.WritableCopy(cfg); copied {
		primary, err := acquire("directory_dsn (primary, for tokens)", wcfg)
		if err != nil {
			return directoryParts{}, err
		}
		parts.credentials = store.NewPostgres(primary.pool)
	}
	return parts, nil
}

// resolveListenDSN resolves listen_dsn, which only means something for
// PostgreSQL storage.
func resolveListenDSN(engine, raw string) (string, error) {
	dsn, err := ResolveSecret("listen_dsn", raw)
	if err != nil || dsn == "" {
		return dsn, err
	}
	if engine != EnginePostgres {
		return "", fmt.Errorf("listen_dsn is for storage postgres (the drainer's LISTEN session on the storage database); storage is %s", engine)
	}
	if _, err := store.PostgresPoolConfig(dsn); err != nil {
		return "", fmt.Errorf("listen_dsn: %v", err)
	}
	return dsn, nil
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

// acquireFunc is App.acquirePostgres, for the functions that open one
// database.
type acquireFunc func(what string, cfg *pgxpool.Config) (*sharedStorage, error)

func (a *App) acquirePostgres(what string, cfg *pgxpool.Config) (*sharedStorage, error) {
	// The key covers everything that shapes the pool, so a changed
	// setting gives a new pool and an unchanged one is reused.
	key := storageKey("postgres", cfg.ConnString()+fmt.Sprintf("|%d|%d|%s|%s|%s", cfg.MaxConns, cfg.MinConns,
		cfg.MaxConnLifetime, cfg.HealthCheckPeriod, store.SessionTarget(cfg.ConnConfig)))
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
