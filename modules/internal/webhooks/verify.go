package webhooks

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"strconv"
	"strings"
	"time"
)

// SlackWindow is how far X-Slack-Request-Timestamp may be from now.
const SlackWindow = 5 * time.Minute

// verifySlack checks Slack's v0 signature: hex HMAC-SHA256 over
// "v0:<timestamp>:<body>" with the signing secret, sent as "v0=<hex>", with
// a timestamp no more than five minutes away from now.
func verifySlack(secret []byte, header map[string][]string, body []byte, now time.Time) bool {
	ts := first(header, "X-Slack-Request-Timestamp")
	sig := first(header, "X-Slack-Signature")
	if ts == "" || !strings.HasPrefix(sig, "v0=") {
		return false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	if d := now.Unix() - sec; math.Abs(float64(d)) > SlackWindow.Seconds() {
		return false
	}
	got, err := hex.DecodeString(sig[3:])
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("v0:"))
	mac.Write([]byte(ts))
	mac.Write([]byte(":"))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// SignSlack returns the X-Slack-Signature value for a body (tests, bench).
func SignSlack(secret []byte, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("v0:" + timestamp + ":"))
	mac.Write(body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// verifyDiscord checks Discord's Ed25519 signature over timestamp+body.
func verifyDiscord(key ed25519.PublicKey, header map[string][]string, body []byte) bool {
	sig, err := hex.DecodeString(first(header, "X-Signature-Ed25519"))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return false
	}
	ts := first(header, "X-Signature-Timestamp")
	if ts == "" {
		return false
	}
	msg := make([]byte, 0, len(ts)+len(body))
	msg = append(msg, ts...)
	msg = append(msg, body...)
	return ed25519.Verify(key, msg, sig)
}

// verifyGitHub checks X-Hub-Signature-256: "sha256=<hex HMAC-SHA256>".
func verifyGitHub(secret []byte, header map[string][]string, body []byte) bool {
	sig := first(header, "X-Hub-Signature-256")
	if !strings.HasPrefix(sig, "sha256=") {
		return false
	}
	got, err := hex.DecodeString(sig[len("sha256="):])
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// SignGitHub returns the X-Hub-Signature-256 value for a body.
func SignGitHub(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// first returns the first value of a canonical header key.
func first(h map[string][]string, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}
