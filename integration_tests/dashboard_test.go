package integration_tests

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/sentrysilo/caddy-silo/integration_tests/harness"
)

// chromiumPath finds Debian's headless-capable Chromium (.ci/run installs
// it). The browser test needs it and fails without it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium found (chromium, chromium-browser, google-chrome): apt-get install -y chromium")
	return ""
}

// The operator's password for the console's basic_auth, and its bcrypt
// hash at cost 4 (caddy hash-password --algorithm bcrypt --bcrypt-cost 4):
// the default cost 14 would spend a second of a loaded CI core on the
// first request.
const (
	operatorPassword = "operator-pw"
	operatorHash     = "$2a$04$8FR.WduDjwUij7ah8CS0Z.Q7Nkm396rXQvl1WR2sBqoKlHbBEsZI2"
)

// dashboardCaddyfile runs the silo on the drain setup's storage and region,
// a capture site, and two consoles: one whose origin the admin endpoint
// lists (it may act), one it does not (read-only in effect).
func dashboardCaddyfile(s *drainSetup, admin, site, console, stranger *harness.Port) string {
	global := strings.Replace(harness.GlobalOptions(admin),
		"\tadmin "+admin.Addr+"\n",
		fmt.Sprintf("\tadmin %s {\n\t\torigins %s %s\n\t}\n", admin.Addr, admin.Addr, console.Addr), 1)
	return fmt.Sprintf(`{
%s	sentry_silo {
		storage %s
		region us %s
		directory_cache 1s 1s
		drainer {
			poll_interval 200ms
			lease 2s
			region_breaker 3 200ms
		}
	}
}
http://%s {
	route {
		sentry_webhook_capture
		respond "control" 200
	}
}
http://%s {
	handle_path /ops/* {
		basic_auth {
			alice %s
		}
		sentry_silo_console {
			refresh 1s
		}
	}
}
http://%s {
	sentry_silo_console
}
`, global, s.storage, s.us.srv.URL, site.Addr, console.Addr, operatorHash, stranger.Addr)
}

// The dashboard in a real browser, on the real binary with live data: it
// shows the mailbox and the dead letters; its Replay, Delete, Pause and
// Resume buttons change the database; the page runs with no script or
// CSP error; a console whose origin the admin endpoint does not list
// cannot act.
func TestDashboardInBrowser(t *testing.T) {
	s := newDrainSetup(t)
	chromium := chromiumPath(t)
	admin, site, consolePort, stranger := harness.ReservePort(t), harness.ReservePort(t), harness.ReservePort(t), harness.ReservePort(t)
	s.us.status.Store(404) // every delivery is a dead letter, dropped_404
	c := harness.Start(t, admin, dashboardCaddyfile(s, admin, site, consolePort, stranger))
	in := &drainInstance{c: c, base: site.URL()}
	s.seed(t, 1)
	for i := 1; i <= 3; i++ {
		in.capture(t, 1, fmt.Sprintf("dl-%d", i))
	}
	deadIDs := func() []int64 { return int64s(t, s, `SELECT id FROM silo_dead_letter ORDER BY id`) }
	waitFor(t, "three dead letters", 30*time.Second, func() bool { return len(deadIDs()) == 3 })
	dead := deadIDs()
	// Now the region is down: the next webhook waits in its mailbox.
	s.us.down.Store(true)
	in.capture(t, 1, "pending-1")
	waitFor(t, "a pending payload", 10*time.Second, func() bool { return dbCount(t, s, `SELECT count(*) FROM silo_webhook_payload`) == 1 })

	t.Run("stranger console cannot act", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, stranger.URL()+fmt.Sprintf("/sentry_silo/dead_letters/%d/replay", dead[0]), nil)
		req.Header.Set("Origin", stranger.URL())
		resp, err := drainClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "origin") {
			t.Fatalf("replay through a console the admin endpoint does not list: %d %s", resp.StatusCode, b)
		}
		if len(deadIDs()) != 3 {
			t.Fatal("the refused replay changed the dead letters")
		}
	})

	ctx, problems := newBrowser(t, chromium)
	// The operator logs in to the console's basic_auth; pauses record who.
	login := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+operatorPassword))
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": login}}); err != nil {
		t.Fatal(err)
	}
	page := consolePort.URL() + "/ops/"
	// Each step has its own bound (a Wait never ends by itself), generous
	// for a loaded 2-core machine: a step takes well under a second alone.
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		stepCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if err := chromedp.Do(stepCtx, steps...); err != nil {
			shown, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("%s: %v\npage:\n%s\npage errors: %v\ninstance log:\n%s", what, err, shown, problems(), relTail(c.Logs(), 15))
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	poll := func(expr string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(0)) // the step's bound applies
	}
	click := func(sel string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(sel)) }
	var mailboxName string
	if err := s.db.QueryRow(`SELECT mailbox_name FROM silo_webhook_payload`).Scan(&mailboxName); err != nil {
		t.Fatal(err)
	}
	mailbox := fmt.Sprintf(`#mailboxes tr[data-mailbox=%q]`, mailboxName)
	deadRow := func(id int64) string { return fmt.Sprintf(`#dead-letters tr[data-dead-letter="%d"]`, id) }

	do("load the page",
		chromedp.Navigate(page),
		poll(`document.querySelectorAll('#dead-letters tr[data-dead-letter]').length === 3`),
		chromedp.WaitVisible(chromedp.CSS(mailbox)),
		chromedp.WaitVisible(chromedp.CSS(`#regions tr[data-region="us"]`)))
	if depth, reason := text(mailbox+" td.depth"), text(deadRow(dead[0])+" .badge"); depth != "1" || reason != "dropped_404" {
		t.Fatalf("mailbox depth %q (want 1), dead letter reason %q (want dropped_404)", depth, reason)
	}

	do("replay", click(deadRow(dead[0])+" button.replay-dead-letter"))
	waitFor(t, "the replay in the database", 10*time.Second, func() bool {
		return !slices.Contains(deadIDs(), dead[0]) && dbCount(t, s, `SELECT count(*) FROM silo_webhook_payload`) == 2
	})
	do("the page shows the replay",
		poll(`document.querySelectorAll('#dead-letters tr[data-dead-letter]').length === 2`),
		poll(`document.querySelector('`+mailbox+` td.depth').textContent === '2'`),
		poll(`document.getElementById('banner').textContent.includes('replayed as payload')`))

	// Delete takes two clicks: the first arms the button.
	do("delete",
		click(deadRow(dead[1])+" button.arm-delete"),
		click(deadRow(dead[1])+" button.delete-dead-letter"))
	waitFor(t, "the delete in the database", 10*time.Second, func() bool {
		ids := deadIDs()
		return len(ids) == 1 && ids[0] == dead[2]
	})

	do("pause", click(`#regions tr[data-region="us"] button.pause-region`))
	waitFor(t, "the pause in the database", 10*time.Second, func() bool {
		return dbCount(t, s, `SELECT count(*) FROM silo_pause WHERE kind = 'region' AND name = 'us' AND paused_by = 'dashboard (alice)'`) == 1
	})
	do("the page shows the pause",
		chromedp.WaitVisible(chromedp.CSS(`#regions tr[data-region="us"] button.resume-region`)),
		poll(`document.querySelectorAll('#dead-letters tr[data-dead-letter]').length === 1`),
		poll(`Number(document.getElementById('chart-deliveries').dataset.samples) >= 3`))

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.ArtifactDir(), "dashboard.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
	do("resume", click(`#regions tr[data-region="us"] button.resume-region`))
	waitFor(t, "the resume in the database", 10*time.Second, func() bool {
		return dbCount(t, s, `SELECT count(*) FROM silo_pause`) == 0
	})
	do("the page shows the resume", chromedp.WaitVisible(chromedp.CSS(`#regions tr[data-region="us"] button.pause-region`)))

	if p := problems(); len(p) > 0 {
		t.Fatalf("the page logged errors:\n%s", strings.Join(p, "\n"))
	}

	// The console the admin endpoint does not list shows the data, and
	// says what to change when an action is refused. (The browser logs the
	// 403 as an error, so this comes after the check above.)
	do("a refused action in the page",
		chromedp.Navigate(stranger.URL()+"/"),
		chromedp.WaitVisible(chromedp.CSS(deadRow(dead[2])+" button.replay-dead-letter")),
		click(deadRow(dead[2])+" button.replay-dead-letter"),
		poll(`document.getElementById('banner').textContent.includes('list its origin (`+stranger.URL()+`)')`))
	if ids := deadIDs(); len(ids) != 1 || ids[0] != dead[2] {
		t.Fatalf("dead letters after a refused replay: %v", ids)
	}

	if os.Getenv("SILO_UPDATE_SCREENSHOT") != "" {
		// The README's picture: two minutes of traffic for the charts,
		// then the region fails and is paused.
		dashboardShowcase(t, s, in, page, do, click)
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		root, err := harness.ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "docs", "img", "dashboard.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot written to docs/img/dashboard.png")
	}
}

// dashboardShowcase runs captures at a varying pace (1 to 4 every 200ms)
// for 90s with the region up, then 30s with it down, and pauses it from
// the page (the one the admin endpoint lets act).
func dashboardShowcase(t *testing.T, s *drainSetup, in *drainInstance, page string, do func(string, ...chromedp.Action[chromedp.Void]), click func(string) chromedp.Action[chromedp.Void]) {
	do("back to the console", chromedp.Navigate(page))
	s.us.status.Store(0)
	s.us.down.Store(false)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for i := range 600 {
		<-tick.C
		if i == 450 {
			s.us.down.Store(true)
		}
		for j := range 1 + (i/25)%4 {
			if err := in.tryCapture(1, fmt.Sprintf("show-%d-%d", i, j)); err != nil {
				t.Fatal(err)
			}
		}
	}
	do("pause for the picture",
		click(`#regions tr[data-region="us"] button.pause-region`),
		chromedp.WaitVisible(chromedp.CSS(`#regions tr[data-region="us"] button.resume-region`)))
}

// newBrowser starts headless Chromium for the test and returns its
// context and a function listing the errors the page has logged so far:
// uncaught exceptions, console.error calls and the browser's own error
// entries (a refusal by the Content-Security-Policy is one).
func newBrowser(t *testing.T, chromium string) (context.Context, func() []string) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // the tests run as root
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// The first Do starts the browser, bound to ctx (no timeout on it: the
	// steps have their own, 60 s each).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium (%s): %v", chromium, err)
	}
	var mu sync.Mutex
	var problems []string
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				if strings.Contains(m.URL, "favicon.ico") {
					continue // the browser asks the site for one; the console has none
				}
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line))
				mu.Unlock()
			}
		}
	}()
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), problems...)
	}
}

func int64s(t *testing.T, s *drainSetup, q string) []int64 {
	t.Helper()
	rows, err := s.db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
