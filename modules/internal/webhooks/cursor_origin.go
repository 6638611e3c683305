package webhooks

import (
	"context"
	"hash/fnv"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

func init() { register("cursor_origin", parseCursorOrigin) }

// CursorOriginWindow is how far webhook-timestamp may be from now (Cursor
// Origin's guidance, Sentry's CURSOR_ORIGIN_WEBHOOK_TOLERANCE_SECONDS).
const CursorOriginWindow = 5 * time.Minute

// cursorOriginSignaturePrefix starts each Ed25519 signature in
// webhook-signature ("v1ed,<base64>", space-separated when Origin signs
// with more than one key).
const cursorOriginSignaturePrefix = "v1ed,"

// cursorOriginRegionEvents are the events a region handles (pushes write
// commits, metadata updates the repository). installation.* and ping are
// control's; anything else nothing handles yet.
var cursorOriginRegionEvents = map[string]bool{
	"repository.pushed":           true,
	"repository.metadata.updated": true,
}

var (
	cursorOriginEnvelopes    = new(jsonReader)
	cursorOriginRepositoryID = cursorOriginEnvelopes.path("event", "payload", "repository", "id")
)

// parseCursorOrigin captures Cursor Origin's webhooks
// (/extensions/cursor-origin/webhook/), routed on their headers, in
// Sentry's order: no webhook-event-type, ping and installation.* events
// are served by control, which owns the integration; an event no region
// handles is acknowledged and dropped; one that does not look signed
// (webhook-id, a fresh webhook-timestamp and a v1ed signature) is a 401,
// before anything is stored; then the integration of
// webhook-installation-id must exist with organizations in a known
// region (else 400). The Ed25519 signature itself is checked by the
// receiving silo against Origin's published keys.
func parseCursorOrigin(ctx context.Context, env *Env, req *Request) (Result, error) {
	sub, _ := subpath(req.Path, "cursor-origin")
	if strings.TrimSuffix(sub, "/") != "webhook" {
		return passOn, nil
	}
	event := first(req.Header, "Webhook-Event-Type")
	switch {
	case event == "", event == "ping", strings.HasPrefix(event, "installation."):
		return passOn, nil
	case !cursorOriginRegionEvents[event]:
		return respond(http.StatusAccepted, "dropped"), nil
	case !cursorOriginLooksSigned(req.Header, env.now()):
		return reject(http.StatusUnauthorized, ReasonBadSignature), nil
	}
	in, err := env.integrationByExternalID(ctx, "cursor_origin", first(req.Header, "Webhook-Installation-Id"))
	res, err := env.captureFor("cursor_origin", in, err, rejected(ReasonNoRegion))
	if err != nil || res.Action != Capture {
		return res, err
	}
	res.DeliveryKey = first(req.Header, "Webhook-Id")
	if key, ok := cursorOriginBucketKey(req.Body); ok {
		res.BucketKey, res.HasBucket = key, true
	}
	return res, nil
}

// cursorOriginLooksSigned reports whether a delivery carries what a signed
// one does: a webhook-id, a webhook-timestamp within CursorOriginWindow
// of now, and a v1ed signature among the values of webhook-signature.
func cursorOriginLooksSigned(h http.Header, now time.Time) bool {
	ts := first(h, "Webhook-Timestamp")
	if first(h, "Webhook-Id") == "" || ts == "" {
		return false
	}
	signed := false
	for _, v := range strings.Fields(first(h, "Webhook-Signature")) {
		signed = signed || strings.HasPrefix(v, cursorOriginSignaturePrefix)
	}
	if !signed {
		return false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	return math.Abs(float64(now.Unix()-sec)) <= CursorOriginWindow.Seconds()
}

// cursorOriginBucketKey is the FNV-1a (32-bit) hash of the envelope's
// event.payload.repository.id, Origin's repository ids being strings
// ("r_01…"): the text of a string, the digits of a number. A body that is
// not a JSON object, or names no repository, has none.
func cursorOriginBucketKey(body []byte) (int64, bool) {
	env, err := cursorOriginEnvelopes.parse(body)
	if err != nil {
		return 0, false
	}
	var id string
	switch r := env.member(cursorOriginRepositoryID); r.Type {
	case gjson.String:
		id = r.Str
	case gjson.Number:
		id = r.Raw
	}
	if id == "" {
		return 0, false
	}
	h := fnv.New32a()
	h.Write([]byte(id))
	return int64(h.Sum32()), true
}
