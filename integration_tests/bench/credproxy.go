package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
	"github.com/sentrysilo/caddy-silo/modules/subnet"
)

func init() {
	Register("credproxy", Scenario{
		Help: "sentry_cred_proxy with a cached GitHub token vs plain reverse_proxy to the same fake third party (direct calls for scale)",
		Run:  runCredProxy,
	})
}

const (
	credBenchSecret = "bench-subnet-secret"
	credBenchOI     = 10
)

// runCredProxy measures the proxy's whole per-call work with a token that
// needs no refresh: the signature over the body, the organization
// integration and integration read from the database (never cached), the
// host checks, the credentials and the guarded dial, against a plain
// reverse_proxy to the same upstream in the same process.
func runCredProxy(ctx context.Context, env *Env) error {
	upstream, err := fastUpstream()
	if err != nil {
		return err
	}
	defer upstream.Close()
	up := "http://" + upstream.Addr().String()

	ports, err := env.Ports(3)
	if err != nil {
		return err
	}
	admin, plain, proxy := ports[0], ports[1].URL(), ports[2].URL()
	dir, err := env.TempDir()
	if err != nil {
		return err
	}
	dbPath := filepath.Join(dir, "silo.db")
	caddyfile := fmt.Sprintf(`{
%s	sentry_silo {
		storage sqlite %s
		region us http://127.0.0.1:1
		subnet_secret %s
		drainer {
			off
		}
	}
}
%s {
	reverse_proxy %s {
		flush_interval -1
		transport http {
			keepalive_idle_conns_per_host 512
		}
	}
}
%s {
	sentry_cred_proxy {
		allow_host 127.0.0.1
	}
	reverse_proxy 127.0.0.1:1
}
`, harness.GlobalOptions(admin), dbPath, credBenchSecret, plain, strings.TrimPrefix(up, "http://"), proxy)
	inst, err := env.Start(admin, caddyfile)
	if err != nil {
		return err
	}
	defer inst.Stop()

	db, err := openDirectory(ctx, dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	// A GitHub installation token valid for a day: every call uses it as
	// it is, as between refreshes in production.
	md := fmt.Sprintf(`{"access_token":"ghs_bench","expires_at":"%s","sender":{"id":1}}`, time.Now().Add(24*time.Hour).UTC().Format("2006-01-02T15:04:05"))
	for _, q := range []string{
		`INSERT INTO sentry_organizationmapping (organization_id, slug, region_name, status) VALUES (1, 'acme', 'us', 0)`,
		fmt.Sprintf(`INSERT INTO sentry_integration (id, provider, external_id, name, metadata, status) VALUES (20, 'github', '555', 'gh', '%s', 0)`, md),
		fmt.Sprintf(`INSERT INTO sentry_organizationintegration (id, organization_id, integration_id, status) VALUES (%d, 1, 20, 0)`, credBenchOI),
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %v", q, err)
		}
	}

	c := env.Concurrency
	client := Client(c)
	defer client.CloseIdleConnections()
	// The load generator sends plain GETs; requests to the proxy get the
	// region's signed headers on the way out (one fixed call, so one
	// signature computed once: the proxy still verifies it every time).
	base := up
	path := "repos/o/r/issues?state=open&per_page=50"
	signed := http.Header{}
	signed.Set(subnet.HeaderOrganizationIntegration, fmt.Sprint(credBenchOI))
	signed.Set(subnet.HeaderBaseURL, base)
	signed.Set(subnet.HeaderPath, path)
	signed.Set(subnet.HeaderSignature, subnet.Sign(credBenchSecret, base, path, fmt.Sprint(credBenchOI), nil))
	signed.Set("Accept", "application/json")
	client.Transport = &signingTransport{next: client.Transport, host: strings.TrimPrefix(proxy, "http://"), header: signed}

	fixed := func(u string) URLs { return func(uint64) string { return u } }
	proxyURL := proxy + subnet.ProxyPath
	for _, u := range []string{proxyURL, plain + "/" + path, up + "/" + path} {
		if err := send(ctx, client, u); err != nil {
			return fmt.Errorf("%s: %v\n%s", u, err, inst.Logs())
		}
	}
	if env.Profile != "" {
		err := profile(inst, env.Profile, 5*time.Second, func() { ClosedLoop(ctx, client, c, 5*time.Second, fixed(proxyURL)) })
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Out, "CPU profile of sentry_cred_proxy under load: %s\n", env.Profile)
		return nil
	}
	m := &matchup{env: env, client: client, pid: inst.Pid()}
	fmt.Fprintf(env.Out, "machine: %s, load average %s; concurrency %d; %d rounds of %s per target, alternating, after %s warm-up; storage SQLite; upstream answers 200 with %d bytes\n",
		env.Machine(), loadAverage(), c, env.Rounds, env.Duration/time.Duration(env.Rounds), env.Warmup, len(upstreamBody))
	targets := []*target{
		{name: "reverse_proxy (plain)", urls: fixed(plain + "/" + path)},
		{name: "sentry_cred_proxy, cached token", urls: fixed(proxyURL)},
		{name: "direct (for scale)", urls: fixed(up + "/" + path)},
	}
	rate := m.run(ctx, targets, env.Rate)

	tw := tabwriter.NewWriter(env.Out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "target\tclosed rps\tp50 ms\tp99 ms\tp99.9 ms\tcaddy CPU µs/req\t|\topen @%.0f/s: done/s\tp50 ms\tp99 ms\tp99.9 ms\t|\tserial p50 ms\tp99 ms\tp99.9 ms\terrors\t\n", rate)
	for _, t := range targets {
		cl, op, se := t.closedResult(), t.openResult(), t.serialResult()
		cpu := fmt.Sprintf("%.1f", t.cpuPerReq(t.cpuClosed, cl))
		if t == targets[2] {
			cpu = "-"
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t|\t%.0f\t%s\t%s\t%s\t|\t%s\t%s\t%s\t%d\t\n", t.name,
			cl.RPS(), ms(cl.P(.5)), ms(cl.P(.99)), ms(cl.P(.999)), cpu,
			op.RPS(), ms(op.P(.5)), ms(op.P(.99)), ms(op.P(.999)),
			ms(se.P(.5)), ms(se.P(.99)), ms(se.P(.999)), cl.Errors+op.Errors+se.Errors)
	}
	tw.Flush()
	b, g := targets[0], targets[1]
	fmt.Fprintf(env.Out, "%s: throughput %.2fx plain (target >= 0.85x; per-round ratios %s); p99 added: open-loop %+.3f ms, serial %+.3f ms (target <= 1 ms); serial p50 added %+.3f ms; CPU per request %+.1f µs\n",
		g.name, g.closedResult().RPS()/b.closedResult().RPS(), roundRatios(g, b),
		float64(g.openResult().P(.99)-b.openResult().P(.99))/float64(time.Millisecond),
		float64(g.serialResult().P(.99)-b.serialResult().P(.99))/float64(time.Millisecond),
		float64(g.serialResult().P(.5)-b.serialResult().P(.5))/float64(time.Millisecond),
		g.cpuPerReq(g.cpuClosed, g.closedResult())-b.cpuPerReq(b.cpuClosed, b.closedResult()))
	return nil
}

// signingTransport adds a region's subnet headers to requests for the
// proxy's host.
type signingTransport struct {
	next   http.RoundTripper
	host   string
	header http.Header
}

func (s *signingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != s.host {
		return s.next.RoundTrip(r)
	}
	out := *r
	out.Header = make(http.Header, len(r.Header)+len(s.header))
	for k, v := range r.Header {
		out.Header[k] = v
	}
	for k, v := range s.header {
		out.Header[k] = v
	}
	return s.next.RoundTrip(&out)
}
