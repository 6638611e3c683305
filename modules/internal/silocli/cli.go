// Package silocli is `caddy silo`: the operator's command line over the
// admin API of the sentry_silo app (docs/admin-api.md), and the signing
// tool of the credential proxy. It is free of Caddy: the caddy adapter
// (modules/silocmd) registers it and gives it a Host, which finds the admin
// endpoint and the configured subnet secret the way Caddy's own commands
// do. Output is a table for people, or the API's JSON with --json; the
// exit codes are documented in docs/cli.md.
package silocli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Host is what the command line needs of Caddy.
type Host interface {
	// Admin finds the admin endpoint as `caddy reload` does (address if
	// set, else the admin listener of configFile adapted with adapter,
	// else Caddy's default).
	Admin(address, configFile, adapter string) (Admin, error)
	// SubnetSecret returns the subnet secret configured in configFile
	// (the sentry_silo app's subnet_secret, placeholders resolved), "" when
	// the config sets none. Errors never hold the secret.
	SubnetSecret(configFile, adapter string) (string, error)
}

// Admin is how to reach the admin endpoint.
type Admin struct {
	// Client dials the endpoint, whatever its network (TCP, unix socket).
	Client *http.Client
	// URL is what requests are addressed to, "http://localhost:2019".
	URL string
	// Origin is sent as the Origin header, which the admin endpoint checks
	// on TCP; "" sends none (a unix socket), as `caddy reload` does.
	Origin string
}

// Env is where a run reads and writes.
type Env struct {
	Stdout io.Writer
	Host   Host
	// Getenv reads the environment (os.Getenv).
	Getenv func(string) string
	// Now is the clock, for ages and --since 1h [time.Now].
	Now func() time.Time
}

// Run runs `caddy silo <args...>` and returns its exit code with the error
// to print (nil when the code is ExitOK). Output goes to env.Stdout.
func Run(ctx context.Context, args []string, env Env) (int, error) {
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	err := dispatch(ctx, args, env)
	if err == nil {
		return ExitOK, nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code, err
	}
	return ExitAPI, err
}

// command is one leaf of the command tree, e.g. "dead-letters replay".
type command struct {
	name  string // the words after `caddy silo`
	args  string // its positional arguments, for the usage line
	short string
	// flags adds the command's own flags; the common ones are added for
	// every command that talks to the admin API.
	flags func(*flag.FlagSet, *invocation)
	// offline commands do not talk to the admin API (sign).
	offline bool
	run     func(context.Context, *invocation) error
}

// commands is the whole tree, in the order `caddy silo help` lists it.
var commands = []command{
	{name: "status", short: "storage, regions (breaker, in flight, last error, pause), drainer, rates, directory", run: runStatus},
	{name: "mailboxes", args: "[<mailbox>]", short: "mailboxes with pending payloads (filters, sort); with a name, one mailbox and its head rows", flags: mailboxFlags, run: runMailboxes},
	{name: "dead-letters list", short: "dead letters in capture order, filtered, paged", flags: rowFilterFlags, run: runDeadLetterList},
	{name: "dead-letters show", args: "<id>", short: "open one dead letter: headers (masked), body preview", run: runDeadLetterShow},
	{name: "dead-letters replay", args: "<id> | <filters> | --all", short: "replay one dead letter, or every match in capture order", flags: bulkFlags, run: runDeadLetterReplay},
	{name: "dead-letters delete", args: "<id> | <filters> | --all", short: "delete one dead letter, or every match", flags: bulkFlags, run: runDeadLetterDelete},
	{name: "pause", args: "region|mailbox <name>", short: "stop deliveries to a region or a mailbox (captures go on, no attempt is spent)", flags: pauseFlags, run: runPause},
	{name: "resume", args: "region|mailbox <name>", short: "lift a pause", run: runResume},
	{name: "pauses", short: "every pause in force", run: runPauses},
	{name: "retry", args: "<mailbox>", short: "make a mailbox's head due now (attempts kept)", run: runRetry},
	{name: "sign", args: "<url>", short: "sign a call for the credential proxy; prints a curl command (or the request)", flags: signFlags, offline: true, run: runSign},
}

// invocation is one run of one command.
type invocation struct {
	cmd  *command
	env  Env
	fs   *flag.FlagSet
	args []string // positional

	address, config, adapter string
	json                     bool
	filters                  map[string]*string // query parameter -> flag value
	all                      bool               // bulk: every row
	mailbox                  mailboxOpts
	pause                    pauseOpts
	sign                     signOpts

	api *client
}

func dispatch(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printHelp(env.Stdout)
		return nil
	}
	lead, words := leadingFlags(args)
	cmd, rest := find(words)
	rest = append(lead, rest...)
	if cmd == nil {
		return usageErr("unknown command %q; run `caddy silo help` for the list", strings.Join(words[:min(len(words), 2)], " "))
	}
	inv := &invocation{cmd: cmd, env: env, filters: map[string]*string{}}
	inv.fs = flag.NewFlagSet("caddy silo "+cmd.name, flag.ContinueOnError)
	inv.fs.SetOutput(io.Discard) // its errors are ours to print, once
	if !cmd.offline {
		inv.fs.StringVar(&inv.address, "address", "", "admin endpoint address, e.g. localhost:2019 or unix//run/caddy-admin.sock [from --config, else localhost:2019]")
	}
	inv.fs.StringVar(&inv.config, "config", "", "config file to read the admin address (and for sign the subnet secret) from")
	inv.fs.StringVar(&inv.config, "c", "", "short for --config")
	inv.fs.StringVar(&inv.adapter, "adapter", "", "config adapter of --config (e.g. caddyfile) [from the file name]")
	inv.fs.StringVar(&inv.adapter, "a", "", "short for --adapter")
	inv.fs.BoolVar(&inv.json, "json", false, "print the JSON answer instead of a table")
	if cmd.flags != nil {
		cmd.flags(inv.fs, inv)
	}
	pos, err := parseInterspersed(inv.fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(env.Stdout, inv)
		return nil
	}
	if err != nil {
		return usageErr("caddy silo %s: %v (see caddy silo %s --help)", cmd.name, err, cmd.name)
	}
	inv.args = pos
	if !cmd.offline {
		admin, err := env.Host.Admin(inv.address, inv.config, inv.adapter)
		if err != nil {
			return usageErr("finding the admin endpoint: %v", err)
		}
		inv.api = &client{http: admin.Client, base: admin.URL, origin: admin.Origin}
	}
	return cmd.run(ctx, inv)
}

// leadingFlags splits off the common flags written before the command
// (`caddy silo --address localhost:2020 status`), with their values.
func leadingFlags(args []string) (flags, rest []string) {
	for len(args) > 0 && strings.HasPrefix(args[0], "-") && args[0] != "-" {
		name := strings.TrimLeft(args[0], "-")
		n := 1
		if !strings.Contains(name, "=") && valueFlags[name] && len(args) > 1 {
			n = 2
		}
		flags, args = append(flags, args[:n]...), args[n:]
	}
	return flags, args
}

// valueFlags are the common flags that take a value.
var valueFlags = map[string]bool{"address": true, "config": true, "c": true, "adapter": true, "a": true}

// find picks the longest command whose words start args.
func find(args []string) (*command, []string) {
	var best *command
	words := 0
	for i := range commands {
		w := strings.Fields(commands[i].name)
		if len(w) <= len(args) && len(w) > words && equalWords(w, args[:len(w)]) {
			best, words = &commands[i], len(w)
		}
	}
	return best, args[words:]
}

func equalWords(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// parseInterspersed parses flags wherever they are among the positional
// arguments (`dead-letters show 981 --json`), which the flag package alone
// stops at. Everything after "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var tail []string
	for i, a := range args {
		if a == "--" {
			args, tail = args[:i], args[i+1:]
			break
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return append(pos, tail...), nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

// wantArgs checks the number of positional arguments.
func (inv *invocation) wantArgs(n int) error {
	if len(inv.args) != n {
		return usageErr("caddy silo %s takes %s, got %d argument(s) (see --help)", inv.cmd.name, orNone(inv.cmd.args), len(inv.args))
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "no argument"
	}
	return s
}

func printHelp(w io.Writer) {
	fmt.Fprint(w, `caddy silo: the operator console of caddy-silo, over the admin API.

Usage: caddy silo <command> [arguments] [flags]

Commands:
`)
	names := make([]string, 0, len(commands))
	byName := map[string]command{}
	for _, c := range commands {
		names = append(names, c.name)
		byName[c.name] = c
	}
	tw := newTable(w)
	for _, n := range names {
		c := byName[n]
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.name, c.args, c.short)
	}
	tw.Flush()
	fmt.Fprint(w, `
Flags of every command that talks to the admin API:
  --address <addr>    the admin endpoint [from --config, else localhost:2019]
  --config, -c <file> read the admin address from this config, as caddy reload does
  --adapter, -a <name> adapter of --config
  --json              print the API's JSON instead of a table

Exit codes: 0 ok, 1 the admin API answered an error, 2 bad command line,
3 the admin API could not be reached. Run caddy silo <command> --help for
a command's own flags.
`)
}

func printUsage(w io.Writer, inv *invocation) {
	fmt.Fprintf(w, "Usage: caddy silo %s %s [flags]\n\n%s.\n\nFlags:\n", inv.cmd.name, inv.cmd.args, inv.cmd.short)
	var lines []string
	inv.fs.VisitAll(func(f *flag.Flag) {
		if len(f.Name) == 1 {
			return // short aliases are named in their long form's help
		}
		lines = append(lines, fmt.Sprintf("  --%s\t%s", f.Name, f.Usage))
	})
	sort.Strings(lines)
	tw := newTable(w)
	for _, l := range lines {
		fmt.Fprintln(tw, l)
	}
	tw.Flush()
}
