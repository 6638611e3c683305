package credproxy

import (
	"net/http"
	"reflect"
	"testing"
)

func TestOutboundHeaders(t *testing.T) {
	in := http.Header{
		"Connection":                      {"keep-alive, X-Per-Hop"},
		"X-Per-Hop":                       {"1"},
		"Keep-Alive":                      {"timeout=5"},
		"Te":                              {"trailers"},
		"Transfer-Encoding":               {"chunked"},
		"Upgrade":                         {"h2c"},
		"Proxy-Authorization":             {"Basic x"},
		"Content-Length":                  {"3"},
		"Content-Encoding":                {"gzip"},
		"X-Forwarded-Proto":               {"https"},
		"X-Sentry-Subnet-Signature":       {"v0=00"},
		"X-Sentry-Subnet-Keyid":           {"k"},
		"X-Sentry-Internal-Proxy-Failure": {"true"},
		"Content-Type":                    {"application/json"},
		"Accept":                          {"application/vnd.github.v3.diff"},
		"User-Agent":                      {"sentry/1"},
		"Cookie":                          {"a=1"},
		"X-Sentry-Subnet-Organization-Integration": {"1"},
	}
	want := http.Header{
		"Content-Type": {"application/json"},
		"Accept":       {"application/vnd.github.v3.diff"},
		"User-Agent":   {"sentry/1"},
		"Cookie":       {"a=1"},
	}
	if got := outboundHeaders(in); !reflect.DeepEqual(got, want) {
		t.Fatalf("outbound headers\n got %v\nwant %v", got, want)
	}
	resp := http.Header{
		"Connection":                      {"X-Hop"},
		"X-Hop":                           {"1"},
		"Content-Length":                  {"10"},
		"Content-Encoding":                {"gzip"},
		"Set-Cookie":                      {"a=1", "b=2"},
		"X-Sentry-Internal-Proxy-Failure": {"true"},
		"X-Sentry-Subnet-Path":            {"x"},
		"Link":                            {`<https://api.github.com/x?page=2>; rel="next"`},
	}
	got := http.Header{}
	copyResponseHeaders(got, resp)
	wantResp := http.Header{
		"Content-Length":   {"10"},
		"Content-Encoding": {"gzip"},
		"Set-Cookie":       {"a=1", "b=2"},
		"Link":             {`<https://api.github.com/x?page=2>; rel="next"`},
	}
	if !reflect.DeepEqual(got, wantResp) {
		t.Fatalf("response headers\n got %v\nwant %v", got, wantResp)
	}
}
