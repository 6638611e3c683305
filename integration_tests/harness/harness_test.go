package harness

import (
	"fmt"
	"io"
	"net/http"
	"testing"
)

func TestStartReloadKillRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; left out under -short")
	}
	admin := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	port := FreePort(t)
	conf := func(body string) string {
		return fmt.Sprintf("{\n%s}\nhttp://127.0.0.1:%d {\n\trespond %q\n}\n", GlobalOptions(admin), port, body)
	}
	get := func() string {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	c := Start(t, admin, conf("one"))
	if got := get(); got != "one" {
		t.Fatalf("got %q", got)
	}
	c.Reload(t, conf("two"))
	if got := get(); got != "two" {
		t.Fatalf("after reload got %q", got)
	}
	c.Kill()
	if c.Running() {
		t.Fatal("still running after Kill")
	}
	c.Restart(t)
	if got := get(); got != "two" {
		t.Fatalf("after restart got %q", got)
	}
}
