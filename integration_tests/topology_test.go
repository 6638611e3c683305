package integration_tests

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The topology tests: the README's production Caddyfile on two databases
// (ours, and Sentry's control tables as Sentry creates them) and two
// instances. Helpers are in topology_helpers_test.go; the Sentry schema
// in testdata/sentry_control_schema.sql.

// Gateway routes come from Sentry's tables in the control database, on
// both instances: organization by slug and by id, Sentry App installation
// and app slug, JS SDK loader public key, and apigw's 404 for an unknown
// organization.
func TestTopologyGatewayRoutesFromControlDatabase(t *testing.T) {
	top := newTopology(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range top.instances {
		for k, r := range topoRoutes {
			if p := top.gatewayCall(ctx, i, r, fmt.Sprintf("route-%d-%d", i, k)); p != "" {
				t.Error(p)
			}
		}
	}
}

// The credential proxy reads tokens from Sentry's tables in the control
// database and writes refreshed ones back there, where Sentry's own code
// reads them: GitHub installation tokens into sentry_integration.metadata
// (jsonb, expires_at as naive UTC ISO), GitLab OAuth tokens into
// sentry_identity.data (text). One refresh per expiry across both
// instances. The storage database holds our tables only, and a stale copy
// of an integration there is never used.
func TestTopologyCredentialProxyOnControlDatabase(t *testing.T) {
	top := newTopology(t)
	onlyOurTables := func(t *testing.T) {
		if got := topoTables(t, top.storage, `sentry\_%`); len(got) > 0 {
			t.Errorf("the storage database holds directory tables %v: they belong to the control database", got)
		}
		if got := topoTables(t, top.control, `silo\_%`); len(got) > 0 {
			t.Errorf("the control database holds our tables %v", got)
		}
		if got := topoSchema(t, top.control); got != top.controlSchema {
			t.Errorf("Sentry's tables were altered:\nbefore %s\nafter  %s", top.controlSchema, got)
		}
	}
	metadata := func(t *testing.T, id int) map[string]any {
		return topoJSON(t, top.control, `SELECT metadata::text FROM sentry_integration WHERE id = $1`, id)
	}
	wantRefreshed := func(t *testing.T, calls []topoAPICall, token string) {
		t.Helper()
		if tokens := topoTokens(calls); len(tokens) != 1 || tokens[token] == 0 {
			t.Errorf("the third party's API saw tokens %v, want only %s", tokens, token)
		}
		md := metadata(t, topoIntegrationBoth)
		if md["access_token"] != token {
			t.Errorf("control sentry_integration.metadata access_token = %v, want %s", md["access_token"], token)
		}
		// Sentry compares datetime.fromisoformat(expires_at) with a naive
		// utcnow(): an offset in the value would make that comparison
		// raise in Sentry.
		exp, _ := md["expires_at"].(string)
		at, err := time.Parse("2006-01-02T15:04:05", strings.SplitN(exp, ".", 2)[0])
		if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?$`).MatchString(exp) || err != nil ||
			at.Sub(time.Now().UTC()) < 50*time.Minute || at.Sub(time.Now().UTC()) > 70*time.Minute {
			t.Errorf("control metadata expires_at = %q, want naive UTC ISO about an hour ahead", exp)
		}
		sender, _ := md["sender"].(map[string]any)
		if md["account_type"] != "Organization" || md["domain_name"] != "github.com/acme" || sender["login"] != "octo" {
			t.Errorf("the write-back lost Sentry's other metadata keys: %v", md)
		}
		var kind string
		if err := top.control.QueryRow(`SELECT jsonb_typeof(metadata) FROM sentry_integration WHERE id = $1`, topoIntegrationBoth).Scan(&kind); err != nil || kind != "object" {
			t.Errorf("metadata is a jsonb %s (%v), want an object", kind, err)
		}
	}

	t.Run("storage holds only our tables", onlyOurTables)

	t.Run("GitHub: one refresh across both instances, written to control", func(t *testing.T) {
		seen := top.tp.callCount()
		if failed := top.concurrentProxyCalls(12, topoOIBothUS, topoOIBothDE); len(failed) > 0 {
			t.Errorf("%d of 12 calls failed:\n  %s", len(failed), strings.Join(failed[:min(4, len(failed))], "\n  "))
		}
		if n := top.tp.minted(topoInstallBoth); n != 1 {
			t.Errorf("%d tokens minted for installation %s, want 1 (one expiry)", n, topoInstallBoth)
		}
		wantRefreshed(t, top.tp.callsSince(seen), "ghs_7001_1")
	})

	t.Run("GitLab: one refresh_token grant, identity written to control", func(t *testing.T) {
		seen := top.tp.callCount()
		if failed := top.concurrentProxyCalls(8, topoOIGitLab); len(failed) > 0 {
			t.Errorf("%d of 8 calls failed:\n  %s", len(failed), strings.Join(failed[:min(4, len(failed))], "\n  "))
		}
		if tokens := topoTokens(top.tp.callsSince(seen)); len(tokens) != 1 || tokens["glat_1"] == 0 {
			t.Errorf("the third party's API saw tokens %v, want only glat_1", tokens)
		}
		if grants := top.tp.grantsPresented(); len(grants) != 1 || grants[0] != topoGitLabRefresh {
			t.Errorf("refresh tokens presented to GitLab: %v, want once %s", grants, topoGitLabRefresh)
		}
		data := topoJSON(t, top.control, `SELECT data FROM sentry_identity WHERE id = $1`, topoIdentityGitLab)
		exp, _ := data["expires"].(float64)
		if data["access_token"] != "glat_1" || data["refresh_token"] != "glrt_1" ||
			time.Until(time.Unix(int64(exp), 0)) < time.Hour || fmt.Sprint(data["scopes"]) != "[api]" {
			t.Errorf("control sentry_identity.data = %v, want access_token glat_1, refresh_token glrt_1, expires in ~2h, scopes kept", data)
		}
	})

	t.Run("GitHub: the next expiry refreshes once more", func(t *testing.T) {
		// An hour later: the token has expired at GitHub, and Sentry's
		// metadata says so.
		top.tp.revoke(metadata(t, topoIntegrationBoth)["access_token"].(string))
		mustExec(t, top.control, `UPDATE sentry_integration SET metadata = jsonb_set(metadata, '{expires_at}', '"2020-01-01T00:00:00"'),
			date_updated = now() WHERE id = $1`, topoIntegrationBoth)
		before := top.tp.minted(topoInstallBoth)
		seen := top.tp.callCount()
		if failed := top.concurrentProxyCalls(12, topoOIBothUS, topoOIBothDE); len(failed) > 0 {
			t.Errorf("%d of 12 calls failed:\n  %s", len(failed), strings.Join(failed[:min(4, len(failed))], "\n  "))
		}
		if n := top.tp.minted(topoInstallBoth); n != before+1 {
			t.Errorf("%d tokens minted for this expiry, want 1", n-before)
		}
		var ok []topoAPICall
		for _, c := range top.tp.callsSince(seen) {
			if c.ok { // a call with the revoked token may come first (401, then one refresh)
				ok = append(ok, c)
			}
		}
		wantRefreshed(t, ok, fmt.Sprintf("ghs_7001_%d", before+1))
	})

	t.Run("storage still holds only our tables", onlyOurTables)

	t.Run("a stale copy in the storage database is not used", func(t *testing.T) {
		// An operator's leftover from a single-database set-up, or the
		// tables migrate created there: a copy of integration 9002 with
		// another token.
		if len(topoTables(t, top.storage, "sentry_integration")) == 0 {
			mustExec(t, top.storage, `CREATE TABLE sentry_integration (id bigint PRIMARY KEY, provider text NOT NULL,
				external_id text NOT NULL, name text NOT NULL, metadata text NOT NULL, status integer NOT NULL)`)
		}
		future := time.Now().UTC().Add(8 * time.Hour).Format("2006-01-02T15:04:05")
		mustExec(t, top.storage, `INSERT INTO sentry_integration (id, provider, external_id, name, metadata, status) VALUES ($1, 'github', $2, 'acme-only', $3, 0)`,
			topoIntegrationUS, topoInstallUS, `{"access_token":"`+topoStaleCopy+`","expires_at":"`+future+`"}`)
		seen := top.tp.callCount()
		if failed := top.concurrentProxyCalls(6, topoOIUS); len(failed) > 0 {
			t.Errorf("%d of 6 calls failed:\n  %s", len(failed), strings.Join(failed[:min(4, len(failed))], "\n  "))
		}
		if tokens := topoTokens(top.tp.callsSince(seen)); len(tokens) != 1 || tokens[topoSeededUS] == 0 {
			t.Errorf("the third party's API saw tokens %v, want only the control database's %s", tokens, topoSeededUS)
		}
		if n := top.tp.minted(topoInstallUS); n != 0 {
			t.Errorf("%d tokens minted for installation %s, whose token in control is valid", n, topoInstallUS)
		}
		if md := metadata(t, topoIntegrationUS); md["access_token"] != topoSeededUS {
			t.Errorf("control metadata of integration %d changed: %v", topoIntegrationUS, md)
		}
	})

	t.Run("no secret in the logs", func(t *testing.T) {
		logs := top.logs()
		for _, secret := range []string{credSubnetSecret, credGitLabSecret, "ghs_7001_", "ghs_7002_", "glat_", "glrt_", "v0=", "BEGIN RSA"} {
			if strings.Contains(logs, secret) {
				t.Errorf("a log line holds %q:\n%s", secret, grepLines(logs, secret))
			}
		}
	})
}
