package silocli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/sentrysilo/caddy-silo/modules/subnet"
)

// SecretEnv is the environment variable `caddy silo sign` reads the subnet
// secret from: Sentry's own setting name, which a region's environment
// has already.
const SecretEnv = "SENTRY_SUBNET_SECRET"

type signOpts struct {
	control, baseURL, orgIntegration, method, data, secretFile, format string
	headers                                                            headerList
}

type headerList []string

func (h *headerList) String() string     { return strings.Join(*h, ", ") }
func (h *headerList) Set(v string) error { *h = append(*h, v); return nil }

func signFlags(fs *flag.FlagSet, inv *invocation) {
	o := &inv.sign
	fs.StringVar(&o.control, "control", "http://localhost:8000", "the control silo's address, where the credential proxy runs")
	fs.StringVar(&o.orgIntegration, "org-integration", "", "the OrganizationIntegration id the call is made for (required)")
	fs.StringVar(&o.baseURL, "base-url", "", "the third party's base URL, e.g. https://discord.com/api/v10 [the URL's scheme and host]")
	fs.StringVar(&o.method, "X", "GET", "short for --method")
	fs.StringVar(&o.method, "method", "GET", "HTTP method")
	fs.StringVar(&o.data, "d", "", "short for --data")
	fs.StringVar(&o.data, "data", "", "request body; @file reads it from a file")
	fs.Var(&o.headers, "H", "short for --header")
	fs.Var(&o.headers, "header", "a request header \"Name: value\" (repeatable)")
	fs.StringVar(&o.secretFile, "secret-file", "", "read the subnet secret from this file [$"+SecretEnv+", else the config's subnet_secret]")
	fs.StringVar(&o.format, "format", "curl", "curl (a command to run) or http (the request as sent)")
}

// runSign prints the call to url signed for the credential proxy, as a
// region makes it (subnet.SignRequest, the one home of the signature). The
// secret is read from --secret-file, $SENTRY_SUBNET_SECRET or the config,
// in that order, and is never printed: only its signature is.
func runSign(_ context.Context, inv *invocation) error {
	o := inv.sign
	if err := inv.wantArgs(1); err != nil {
		return err
	}
	target, err := url.Parse(inv.args[0])
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return usageErr("sign: %q is not an absolute http(s) URL of the third party", inv.args[0])
	}
	if _, err := positiveID(o.orgIntegration); err != nil {
		return usageErr("sign: --org-integration <id> is required: the OrganizationIntegration id, a positive integer")
	}
	control, err := url.Parse(o.control)
	if err != nil || control.Scheme == "" || control.Host == "" {
		return usageErr("sign: --control %q is not an absolute URL", o.control)
	}
	if o.format != "curl" && o.format != "http" {
		return usageErr("sign: --format %q: curl or http", o.format)
	}
	body, dataFile, err := signBody(o.data)
	if err != nil {
		return err
	}
	secret, err := inv.secret()
	if err != nil {
		return err
	}
	req, err := http.NewRequest(strings.ToUpper(o.method), target.String(), bytes.NewReader(body))
	if err != nil {
		return usageErr("sign: %v", err)
	}
	for _, h := range o.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return usageErr("sign: header %q: write it \"Name: value\"", h)
		}
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if len(body) > 0 && req.Header.Get("Content-Type") == "" && json.Valid(body) {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := subnet.SignRequest(req, control, secret, o.baseURL, o.orgIntegration); err != nil {
		return usageErr("sign: %v", err)
	}
	if inv.json {
		out, _ := json.Marshal(map[string]any{"method": req.Method, "url": req.URL.String(), "headers": req.Header, "body": string(body)})
		return printJSON(inv.env.Stdout, out)
	}
	if o.format == "http" {
		return printHTTP(inv, req, body)
	}
	return printCurl(inv, req, body, dataFile)
}

// secret finds the subnet secret. A secret from the environment or a file
// is trimmed of the newline editors and `echo` leave; the config's is used
// as the app resolves it.
func (inv *invocation) secret() (string, error) {
	if f := inv.sign.secretFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", usageErr("sign: --secret-file: %v", err)
		}
		if s := strings.TrimRight(string(b), "\r\n"); s != "" {
			return s, nil
		}
		return "", usageErr("sign: --secret-file %s is empty", f)
	}
	if s := strings.TrimRight(inv.env.Getenv(SecretEnv), "\r\n"); s != "" {
		return s, nil
	}
	s, err := inv.env.Host.SubnetSecret(inv.config, inv.adapter)
	if err != nil {
		return "", usageErr("sign: reading subnet_secret from the config: %v", err)
	}
	if s == "" {
		return "", usageErr("sign: no subnet secret: give --secret-file, set $%s, or --config a config whose sentry_silo app sets subnet_secret", SecretEnv)
	}
	return s, nil
}

// signBody is the body of --data: the text itself, or @file's bytes
// (dataFile is then the file, which the curl command reads too).
func signBody(data string) (body []byte, dataFile string, err error) {
	if !strings.HasPrefix(data, "@") {
		return []byte(data), "", nil
	}
	dataFile = data[1:]
	body, err = os.ReadFile(dataFile)
	if err != nil {
		return nil, "", usageErr("sign: --data %s: %v", data, err)
	}
	return body, dataFile, nil
}

func sortedHeaders(h http.Header) []string {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

func printCurl(inv *invocation, req *http.Request, body []byte, dataFile string) error {
	var b strings.Builder
	b.WriteString("curl -sS")
	if req.Method != http.MethodGet || len(body) > 0 {
		b.WriteString(" -X " + shellQuote(req.Method))
	}
	b.WriteString(" " + shellQuote(req.URL.String()))
	for _, k := range sortedHeaders(req.Header) {
		for _, v := range req.Header[k] {
			b.WriteString(" \\\n  -H " + shellQuote(k+": "+v))
		}
	}
	switch {
	case dataFile != "":
		b.WriteString(" \\\n  --data-binary " + shellQuote("@"+dataFile))
	case len(body) > 0:
		b.WriteString(" \\\n  --data-binary " + shellQuote(string(body)))
	}
	_, err := fmt.Fprintln(inv.env.Stdout, b.String())
	return err
}

func printHTTP(inv *invocation, req *http.Request, body []byte) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", req.Method, req.URL.RequestURI(), req.URL.Host)
	for _, k := range sortedHeaders(req.Header) {
		for _, v := range req.Header[k] {
			fmt.Fprintf(&b, "%s: %s\r\n", textproto.CanonicalMIMEHeaderKey(k), v)
		}
	}
	if len(body) > 0 {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	if utf8.Valid(body) {
		b.Write(body)
	} else {
		fmt.Fprintf(&b, "(%d bytes of binary body)", len(body))
	}
	_, err := fmt.Fprintln(inv.env.Stdout, b.String())
	return err
}

// shellQuote quotes s for a POSIX shell: single quotes, and each single
// quote written as '\”. The signature covers the body byte for byte, so
// nothing in it may be interpreted.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:@=,+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
