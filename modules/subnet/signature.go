package subnet

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// signaturePrefix marks version 0, the only version Sentry has.
const signaturePrefix = "v0="

// Sign returns the v0 signature ("v0=<hex>") of a proxied call: an
// HMAC-SHA256 keyed with the subnet secret over
// "v0|" + baseURL without trailing "/" + "|" + path without leading "/" +
// "|" + orgIntegrationID + "|" + body. There is no timestamp, so a
// signature never expires; the proxy is meant for a private network.
// An empty secret signs nothing and returns "".
func Sign(secret, baseURL, path, orgIntegrationID string, body []byte) string {
	if secret == "" {
		return ""
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("v0|"))
	mac.Write([]byte(strings.TrimRight(baseURL, "/")))
	mac.Write([]byte("|"))
	mac.Write([]byte(strings.TrimLeft(path, "/")))
	mac.Write([]byte("|"))
	mac.Write([]byte(orgIntegrationID))
	mac.Write([]byte("|"))
	mac.Write(body)
	var sum [sha256.Size]byte
	out := make([]byte, len(signaturePrefix)+hex.EncodedLen(sha256.Size))
	copy(out, signaturePrefix)
	hex.Encode(out[len(signaturePrefix):], mac.Sum(sum[:0]))
	return string(out)
}

// Verify reports whether signature is the v0 signature of the call, in
// constant time. It is always false when secret is empty, as in Sentry.
func Verify(secret, baseURL, path, orgIntegrationID string, body []byte, signature string) bool {
	if secret == "" || signature == "" {
		return false
	}
	want := Sign(secret, baseURL, path, orgIntegrationID, body)
	return hmac.Equal([]byte(want), []byte(signature))
}
