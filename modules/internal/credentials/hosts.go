package credentials

import (
	"encoding/json"
	"net"
	"net/url"
	"strings"

	"github.com/sentrysilo/caddy-silo/modules/internal/httpx"
)

// publicHosts are the API hosts each provider answers on. A leading "."
// matches any subdomain. Only HTTPS on the default port is accepted for
// them.
var publicHosts = map[string][]string{
	GitHub:  {"api.github.com", "uploads.github.com"},
	GitLab:  {"gitlab.com"},
	Slack:   {"slack.com"},
	Discord: {"discord.com", "discordapp.com"},
	MSTeams: {"smba.trafficmanager.net", ".botframework.com"},
	VSTS:    {"dev.azure.com", ".dev.azure.com", ".visualstudio.com"},
}

// metadataHostKeys are the metadata fields that record where a
// self-hosted or per-tenant installation lives.
var metadataHostKeys = map[string][]string{
	GitHubEnterprise: {"installation.url", "domain_name"},
	GitLab:           {"base_url"},
	MSTeams:          {"service_url"},
	VSTS:             {"domain_name"},
}

// OwnsHost reports whether base, a third-party base URL, belongs to the
// integration: one of its provider's public API hosts, or the host its
// metadata records (GitHub Enterprise, GitLab, MS Teams service_url, Azure
// DevOps domain). Configured extra hosts are the caller's business.
func OwnsHost(provider string, metadata json.RawMessage, base *url.URL) bool {
	host := httpx.NormalHost(base.Hostname())
	port := httpx.Port(base)
	if base.Scheme == "https" && port == "443" {
		for _, h := range publicHosts[provider] {
			if host == h || (strings.HasPrefix(h, ".") && strings.HasSuffix(host, h)) {
				return true
			}
		}
	}
	keys := metadataHostKeys[provider]
	if len(keys) == 0 {
		return false
	}
	var md map[string]json.RawMessage
	if json.Unmarshal(metadata, &md) != nil {
		return false
	}
	for _, key := range keys {
		u := metadataURL(md, key)
		if u == nil || u.Hostname() == "" {
			continue
		}
		if httpx.NormalHost(u.Hostname()) == host && httpx.Port(u) == port {
			return true
		}
	}
	return false
}

// metadataURL reads a (possibly nested, dotted) metadata string as a URL;
// a bare "host[/path]" is taken as https.
func metadataURL(md map[string]json.RawMessage, key string) *url.URL {
	first, rest, nested := strings.Cut(key, ".")
	raw, ok := md[first]
	if !ok {
		return nil
	}
	if nested {
		var inner map[string]json.RawMessage
		if json.Unmarshal(raw, &inner) != nil {
			return nil
		}
		return metadataURL(inner, rest)
	}
	var s string
	if json.Unmarshal(raw, &s) != nil || s == "" {
		return nil
	}
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return nil
	}
	return u
}

// SplitHostPort is net.SplitHostPort that accepts a host without a port.
func SplitHostPort(hostport string) (host, port string) {
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		return httpx.NormalHost(h), p
	}
	return httpx.NormalHost(strings.Trim(hostport, "[]")), ""
}
