package store

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/textproto"
)

// encodeHeaders renders the request headers as the JSON text stored in
// request_headers: canonical name -> every value, in order. Sentry stores
// name -> one string; we keep multi-valued headers because the region
// re-verifies signatures over exactly what the provider sent.
func encodeHeaders(h http.Header) (string, error) {
	out := make(map[string][]string, len(h))
	for k, vs := range h {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		out[ck] = append(out[ck], vs...)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return "", fmt.Errorf("encode request headers: %w", err)
	}
	return string(b), nil
}

// decodeHeaders reads request_headers. It also accepts Sentry's own shape
// (name -> one string), so rows copied from hybridcloud_webhookpayload
// replay too.
func decodeHeaders(s string) (http.Header, error) {
	if s == "" {
		return http.Header{}, nil
	}
	var multi map[string][]string
	if err := json.Unmarshal([]byte(s), &multi); err == nil {
		return http.Header(multi), nil
	}
	var single map[string]string
	if err := json.Unmarshal([]byte(s), &single); err != nil {
		return nil, fmt.Errorf("decode request headers: %w", err)
	}
	h := make(http.Header, len(single))
	for k, v := range single {
		h[textproto.CanonicalMIMEHeaderKey(k)] = []string{v}
	}
	return h, nil
}

// destinationOf fills the default destination type.
func destinationOf(p *NewPayload) string {
	if p.DestinationType == "" {
		return DestinationRegion
	}
	return p.DestinationType
}

// prepareInsert checks a whole batch before any database work (so one bad
// payload never fails a group commit half-way) and encodes each payload's
// headers, for both engines' InsertPayloads.
func prepareInsert(payloads []NewPayload) (headers []string, err error) {
	headers = make([]string, len(payloads))
	for i := range payloads {
		if err := payloads[i].Validate(); err != nil {
			return nil, err
		}
		if headers[i], err = encodeHeaders(payloads[i].Headers); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidPayload, err)
		}
	}
	return headers, nil
}

// dedupKey identifies a pending payload for de-duplication.
type dedupKey struct{ mailbox, key string }

// thePastUnix is Sentry's THE_PAST, the schedule_for of a payload that has
// never been attempted: always due.
const thePastUnix = 1470009600 // 2016-08-01T00:00:00Z
