// Command caddy is the Caddy binary with caddy-silo plugged in.
//
// This is the main file that xcaddy generates for
// `xcaddy build --with github.com/sentrysilo/caddy-silo`; it lives in the
// repository so that `go build -o caddy ./cmd/caddy` gives the same binary
// where xcaddy is not available.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// plug in Caddy modules here
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/sentrysilo/caddy-silo"
	_ "time/tzdata"
)

func main() {
	caddycmd.Main()
}
