// Package silocmd registers `caddy silo`, the operator's command line
// (modules/internal/silocli), with Caddy's command line. It is the thin
// adapter: it finds the admin endpoint and the configured subnet secret
// with Caddy's own helpers, as `caddy reload` does.
package silocmd

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/sentrysilo/caddy-silo/modules/internal/silocli"
	"github.com/sentrysilo/caddy-silo/modules/silo"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "silo",
		Usage: "<command> [arguments] [--address <interface>] [--config <path> [--adapter <name>]] [--json]",
		Short: "Operator console of caddy-silo: status, mailboxes, dead letters, pauses, signing",
		Long: `
Talks to the admin API of the sentry_silo app (routes under /sentry_silo/ on
Caddy's admin endpoint) and prints tables for people, or the API's JSON with
--json. The admin address is found as caddy reload finds it: --address if
given, else the admin listener of the --config file, else localhost:2019.

Commands: status, mailboxes, dead-letters list|show|replay|delete,
pause|resume region|mailbox <name>, pauses, retry <mailbox>, sign <url>.
Run caddy silo help for the list and caddy silo <command> --help for flags.

Exit codes: 0 ok, 1 the admin API answered an error, 2 bad command line,
3 the admin API could not be reached.
`,
		CobraFunc: func(cmd *cobra.Command) {
			// The subcommands parse their own flags (silocli), so that
			// they are tested without Caddy and listed by caddy silo help.
			cmd.DisableFlagParsing = true
			cmd.RunE = func(c *cobra.Command, args []string) error {
				run := func(caddycmd.Flags) (int, error) {
					return silocli.Run(context.Background(), args, silocli.Env{Stdout: os.Stdout, Host: host{}, Getenv: os.Getenv})
				}
				return caddycmd.WrapCommandFuncForCobra(run)(c, args)
			}
		},
	})
}

// host is silocli.Host on Caddy's helpers.
type host struct{}

// Admin resolves the address with caddycmd.DetermineAdminAPIAddress and
// dials it as caddycmd.AdminAPIRequest does. AdminAPIRequest itself is not
// used: it turns every status of 400 and above into an error string, and
// the exit code and message depend on the status and the JSON body.
func (host) Admin(address, configFile, adapter string) (silocli.Admin, error) {
	addr, err := caddycmd.DetermineAdminAPIAddress(address, nil, configFile, adapter)
	if err != nil {
		return silocli.Admin{}, err
	}
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil || na.PortRangeSize() > 1 {
		return silocli.Admin{}, fmt.Errorf("invalid admin address %s: %v", addr, err)
	}
	a := silocli.Admin{URL: "http://" + na.JoinHostPort(0)}
	a.Origin = a.URL
	if na.IsUnixNetwork() || na.IsFdNetwork() {
		// Any loopback host: the request goes to the socket. A unix
		// address may end in its permission bits ("|0222"), which are not
		// part of the path.
		a.URL, a.Origin = "http://127.0.0.1", ""
		if i := strings.LastIndex(na.Host, "|"); i >= 0 && na.IsUnixNetwork() {
			na.Host = na.Host[:i]
		}
	}
	network, dial := na.Network, na.JoinHostPort(0)
	a.Client = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, dial)
		},
	}}
	return a, nil
}

// SubnetSecret reads the sentry_silo app's subnet_secret from the config,
// loaded and adapted as caddy run would, and resolves its placeholders
// with the app's own ResolveSecret.
func (host) SubnetSecret(configFile, adapter string) (string, error) {
	cfg, _, _, err := caddycmd.LoadConfig(configFile, adapter)
	if err != nil {
		return "", err
	}
	if len(cfg) == 0 {
		return "", nil
	}
	var c struct {
		Apps struct {
			Silo struct {
				SubnetSecret string `json:"subnet_secret"`
			} `json:"sentry_silo"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil {
		return "", fmt.Errorf("reading the config: %v", err)
	}
	return silo.ResolveSecret("subnet_secret", c.Apps.Silo.SubnetSecret)
}
