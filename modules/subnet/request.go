package subnet

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// SignRequest turns r, a call aimed at a third party under baseURL (say
// POST https://slack.com/api/chat.postMessage with base
// https://slack.com/api), into the same call sent through the control
// silo's credential proxy at control (e.g. http://control:8000), as
// Sentry's IntegrationProxyClient does: the method, body and headers stay,
// the URL becomes control + ProxyPath, and the subnet headers are added
// and signed with secret. When r's URL does not start with baseURL (a
// pagination link to another host), the base becomes that URL's scheme
// and host. The body is read into memory and made replayable.
func SignRequest(r *http.Request, control *url.URL, secret, baseURL, orgIntegrationID string) error {
	if secret == "" {
		return errors.New("subnet: no secret to sign with")
	}
	if control == nil || control.Scheme == "" || control.Host == "" {
		return errors.New("subnet: control address must be an absolute URL")
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	full := r.URL.String()
	base := strings.TrimRight(baseURL, "/")
	if base == "" || !strings.HasPrefix(full, base) {
		base = r.URL.Scheme + "://" + r.URL.Host
	}
	path := strings.TrimLeft(full[len(base):], "/")

	r.Header.Set(HeaderOrganizationIntegration, orgIntegrationID)
	r.Header.Set(HeaderBaseURL, base)
	r.Header.Set(HeaderPath, path)
	r.Header.Set(HeaderSignature, Sign(secret, base, path, orgIntegrationID, body))

	target := *control
	target.Path = strings.TrimRight(control.Path, "/") + ProxyPath
	target.RawPath, target.RawQuery, target.Fragment = "", "", ""
	r.URL = &target
	r.Host = ""
	return nil
}

// SetTimeout asks the proxy for these connect and read timeouts on the
// third-party call. It does not take part in the signature.
func SetTimeout(r *http.Request, connect, read time.Duration) {
	r.Header.Set(HeaderTimeout, FormatTimeout(connect, read))
}

func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(r.Body)
	_ = r.Body.Close()
	if err != nil {
		return nil, err
	}
	r.ContentLength = int64(len(body))
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return body, nil
}
