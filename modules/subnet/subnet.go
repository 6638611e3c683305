// Package subnet is the wire contract between Sentry region silos and the
// control silo's integration credential proxy: the X-Sentry-Subnet-*
// header names, signature v0 and the timeout header format. It has no
// dependency on Caddy, so a Go region service can sign its calls with it.
package subnet

// ProxyPath is where the control silo serves the credential proxy. The
// path without the trailing slash is served too.
const ProxyPath = "/api/0/internal/integration-proxy/"

// Header names of the credential proxy (Sentry's src/sentry/silo/util.py).
const (
	// HeaderPrefix starts every header the proxy consumes; all of them are
	// stripped before the call leaves for the third party.
	HeaderPrefix = "X-Sentry-Subnet-"
	// HeaderOrganizationIntegration carries the OrganizationIntegration id
	// as a decimal string.
	HeaderOrganizationIntegration = "X-Sentry-Subnet-Organization-Integration"
	// HeaderBaseURL is the third party's base URL, e.g. https://slack.com/api.
	HeaderBaseURL = "X-Sentry-Subnet-Base-URL"
	// HeaderSignature is "v0=<hex HMAC-SHA256>", see Sign.
	HeaderSignature = "X-Sentry-Subnet-Signature"
	// HeaderPath is the path plus query relative to the base URL.
	HeaderPath = "X-Sentry-Subnet-Path"
	// HeaderKeyID names a keyring key (optional).
	HeaderKeyID = "X-Sentry-Subnet-Keyid"
	// HeaderTimeout is "<seconds>" or "<connect>,<read>" seconds.
	HeaderTimeout = "X-Sentry-Subnet-Timeout"
	// HeaderInternalProxyFailure is set on every proxy response: "true"
	// when the proxy itself failed, "false" when the status is the third
	// party's.
	HeaderInternalProxyFailure = "X-Sentry-Internal-Proxy-Failure"
)
