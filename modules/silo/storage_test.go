package silo

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

func TestListenDSNOption(t *testing.T) {
	var a App
	in := "sentry_silo {\n\tstorage postgres {env.SILO_DATABASE_URL}\n\tlisten_dsn {env.SILO_LISTEN_URL}\n}"
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(a)
	if !strings.Contains(string(got), `"listen_dsn":"{env.SILO_LISTEN_URL}"`) {
		t.Fatalf("JSON %s has no listen_dsn", got)
	}
	for _, bad := range []string{"listen_dsn", "listen_dsn a b"} {
		var a App
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("sentry_silo {\n\t" + bad + "\n}")); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// The storage database settles on a host that takes writes; a DSN that
// asks for a standby, or a listen_dsn without PostgreSQL storage, is
// refused at provision, before anything connects.
func TestStorageTopologies(t *testing.T) {
	regions := []RegionConfig{{Name: "us", Address: "http://us.internal"}}
	pg := func(dsn string) *StorageConfig { return &StorageConfig{Engine: EnginePostgres, DSN: dsn} }
	const two = "postgres://u:secret@10.0.0.1:5432,10.0.0.2:5432/silo"
	for _, tc := range []struct {
		name    string
		app     App
		want    string // error substring, "" for success
		pools   int    // pools acquired
		ownCred bool   // the credential proxy's tokens have a pool of their own
	}{
		{"two hosts", App{Storage: pg(two)}, "", 1, false},
		{"storage on a standby", App{Storage: pg(two + "?target_session_attrs=prefer-standby")}, "storage postgres: target_session_attrs=prefer-standby would connect to a standby", 0, false},
		{"listen_dsn", App{Storage: pg(two), ListenDSN: "postgres://u:secret@10.0.0.1:5432/silo"}, "", 1, false},
		{"listen_dsn on a standby", App{Storage: pg(two), ListenDSN: "host=10.0.0.2 target_session_attrs=standby"}, "listen_dsn: target_session_attrs=standby", 0, false},
		{"listen_dsn with sqlite", App{ListenDSN: "host=10.0.0.1"}, "listen_dsn is for storage postgres", 0, false},
		{"bad listen_dsn", App{Storage: pg(two), ListenDSN: "postgres://u:hunter2@x:notaport/db"}, "listen_dsn: postgres: invalid DSN", 0, false},
		{"directory on a replica", App{Storage: pg(two), DirectoryDSN: two + "?target_session_attrs=prefer-standby"}, "", 3, true},
		{"directory on the primary", App{Storage: pg(two), DirectoryDSN: two + "?target_session_attrs=read-write"}, "", 2, false},
		{"directory on one host", App{Storage: pg(two), DirectoryDSN: "postgres://u:secret@10.0.0.3:5432/sentry"}, "", 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.app
			a.Regions = regions
			a.logger = zap.NewNop()
			err := a.resolve()
			if err == nil {
				err = a.openStorage()
			}
			defer a.releaseStorage()
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want it to contain %q", err, tc.want)
				}
				if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("error %q quotes a password", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(a.poolKeys) != tc.pools {
				t.Errorf("%d pools, want %d", len(a.poolKeys), tc.pools)
			}
			own := any(a.directoryDB.credentials) != any(a.directoryDB.source)
			if own != tc.ownCred {
				t.Errorf("tokens on a pool of their own: %v, want %v", own, tc.ownCred)
			}
		})
	}
}
