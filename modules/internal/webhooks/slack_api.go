package webhooks

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sentrysilo/caddy-silo/modules/internal/directory"
	"github.com/sentrysilo/caddy-silo/modules/internal/httpx"
)

// SlackCall is a Slack Web API call the edge makes itself, as the app,
// before it answers the request: the loading modal of a dialog action
// (views.open) or the halt message of a Seer event no organization can
// take (chat.postEphemeral). Parsers only describe it; the handler makes
// it with SlackAPI.
type SlackCall struct {
	// Method is the Web API method ("views.open").
	Method string
	// Integration is whose bot token authorises the call.
	Integration directory.Integration
	// Body is the JSON body.
	Body []byte
	// Kind names the call for metrics and logs: "loading_modal" or
	// "halt_message".
	Kind string
}

// DefaultSlackAPIBase is Slack's Web API (GovSlack workspaces use
// https://slack-gov.com/api).
const DefaultSlackAPIBase = "https://slack.com/api"

// DefaultSlackCallTimeout bounds one call, dial to answer: a trigger_id
// is good for 3 s after the interaction, and Slack wants the interaction
// answered within the same 3 s; 2 s leaves a second for the trip to us
// and the payload's commit, which run alongside.
const DefaultSlackCallTimeout = 2 * time.Second

// SlackBotAuthorizer sets an integration's bot token on a request. The
// credentials package implements it: the token is read where every other
// token is, and never comes back to the caller.
type SlackBotAuthorizer interface {
	AuthorizeSlackBot(ctx context.Context, in directory.Integration, req *http.Request) error
}

// SlackAPI makes SlackCalls. Safe for concurrent use.
type SlackAPI struct {
	base    string
	auth    SlackBotAuthorizer
	client  *http.Client
	timeout time.Duration
}

// SlackAPIOptions configure NewSlackAPI.
type SlackAPIOptions struct {
	// Base is the Web API's URL, https [DefaultSlackAPIBase].
	Base string
	// Auth sets the bot tokens.
	Auth SlackBotAuthorizer
	// Timeout bounds each call [DefaultSlackCallTimeout].
	Timeout time.Duration
	// RootCAs, when set, replaces the system's roots (tests).
	RootCAs *x509.CertPool
}

// CheckSlackAPIBase validates a Web API base URL for config errors: https,
// a host, no credentials, query or fragment.
func CheckSlackAPIBase(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || !u.IsAbs() || u.Hostname() == "":
		return fmt.Errorf("slack_api_base %q: not an absolute URL", raw)
	case u.Scheme != "https":
		return fmt.Errorf("slack_api_base %q: the scheme must be https", raw)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("slack_api_base %q: no credentials, query or fragment", raw)
	}
	return nil
}

// NewSlackAPI returns a client of the Web API at o.Base. Its dials go
// through the address guard: the default base (or any base named without
// a port) reaches public addresses only; a base named with its port may
// also reach loopback and private networks, the rule of callback_hosts
// (a Slack-compatible server on a private network, a test's fake Slack).
func NewSlackAPI(o SlackAPIOptions) (*SlackAPI, error) {
	if o.Base == "" {
		o.Base = DefaultSlackAPIBase
	}
	if err := CheckSlackAPIBase(o.Base); err != nil {
		return nil, err
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultSlackCallTimeout
	}
	u, _ := url.Parse(o.Base)
	named, port := httpx.NormalHost(u.Hostname()), u.Port()
	policy := func(host, p string) httpx.Policy {
		if port != "" && host == named && p == port {
			return httpx.PublicOnly &^ (httpx.Loopback | httpx.Private)
		}
		return httpx.PublicOnly
	}
	transport := httpx.NewTransport(httpx.TransportOptions{
		DialContext: (&httpx.Dialer{
			Dialer:    net.Dialer{Timeout: o.Timeout, KeepAlive: httpx.KeepAlive},
			PolicyFor: policy,
		}).DialContext,
		MaxIdleConnsPerHost: 8,
		TLSClientConfig:     &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
	})
	return &SlackAPI{
		base:    strings.TrimSuffix(o.Base, "/"),
		auth:    o.Auth,
		client:  &http.Client{Transport: transport, CheckRedirect: httpx.NoRedirects},
		timeout: o.Timeout,
	}, nil
}

// SlackError is a call Slack answered with ok false, or with a status
// other than 200. Code is Slack's error code ("expired_trigger_id").
// Neither carries a token.
type SlackError struct {
	Method string
	Status int
	Code   string
}

func (e *SlackError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("slack %s: %s", e.Method, e.Code)
	}
	return fmt.Sprintf("slack %s: answered %d", e.Method, e.Status)
}

// maxSlackAnswer bounds the part of Slack's answer that is read: the
// verdict is in its first member.
const maxSlackAnswer = 64 << 10

// Call makes c, bounded by the client's timeout, and returns nil when
// Slack answered ok. Its errors never hold the token or the body.
func (a *SlackAPI) Call(ctx context.Context, c *SlackCall) error {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+"/"+c.Method, bytes.NewReader(c.Body))
	if err != nil {
		return fmt.Errorf("slack %s: %w", c.Method, err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	if a.auth == nil {
		return fmt.Errorf("slack %s: no credentials configured", c.Method)
	}
	if err := a.auth.AuthorizeSlackBot(ctx, c.Integration, req); err != nil {
		return fmt.Errorf("slack %s: integration %d: %w", c.Method, c.Integration.ID, err)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is ours, but keep errors short
		}
		return fmt.Errorf("slack %s: %w", c.Method, err)
	}
	defer resp.Body.Close()
	var answer struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	derr := json.NewDecoder(io.LimitReader(resp.Body, maxSlackAnswer)).Decode(&answer)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxSlackAnswer))
	if resp.StatusCode != http.StatusOK || derr != nil || !answer.OK {
		return &SlackError{Method: c.Method, Status: resp.StatusCode, Code: slackErrorCode(answer.Error)}
	}
	return nil
}

// slackErrorCode keeps an error code to what Slack's codes are made of
// (lower case, digits, underscores), so that a log line holds nothing
// else an answer might carry.
func slackErrorCode(s string) string {
	if len(s) > 64 {
		return "invalid_error_code"
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return "invalid_error_code"
		}
	}
	return s
}
