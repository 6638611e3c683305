package webhooks

import (
	"crypto/ed25519"
	"crypto/sha256"
	"strconv"
	"testing"
	"time"
)

// FuzzSignatures feeds arbitrary headers and bodies to the edge checks
// (Slack v0, Discord Ed25519, GitHub X-Hub-Signature-256, Jira's HS256):
// none may panic, and none may accept a forgery, i.e. anything but the
// signature made with the secret for exactly this body.
func FuzzSignatures(f *testing.F) {
	f.Add([]byte(`{"type":"url_verification"}`), "1700000000", "v0=00", "sha256=00", "00")
	f.Add([]byte{0xff, 0x00}, "", "", "", "")
	f.Add([]byte("x"), "-1", "v0=zz", "sha256=", "eyJhbGciOiJIUzI1NiJ9.e30.")
	secret := []byte("fuzz-secret")
	seed := sha256.Sum256([]byte("fuzz-ed25519"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	pub := priv.Public().(ed25519.PublicKey)
	now := time.Unix(1700000000, 0)
	f.Fuzz(func(t *testing.T, body []byte, ts, slackSig, hubSig, other string) {
		slack := map[string][]string{"X-Slack-Request-Timestamp": {ts}, "X-Slack-Signature": {slackSig}}
		if verifySlack(secret, slack, body, now) && slackSig != SignSlack(secret, ts, body) {
			t.Fatalf("Slack accepted a forged signature %q", slackSig)
		}
		discord := map[string][]string{"X-Signature-Timestamp": {ts}, "X-Signature-Ed25519": {other}}
		_ = verifyDiscord(pub, discord, body) // an Ed25519 forgery is out of a fuzzer's reach; it must not panic
		github := map[string][]string{"X-Hub-Signature-256": {hubSig}}
		if verifyGitHub(secret, github, body) {
			t.Fatalf("GitHub check accepted %q for a body it never signed", hubSig)
		}
		_ = verifyHS256(other, secret)
		// The real signature is accepted inside the window.
		if ts == strconv.FormatInt(now.Unix(), 10) {
			good := map[string][]string{"X-Slack-Request-Timestamp": {ts}, "X-Slack-Signature": {SignSlack(secret, ts, body)}}
			if !verifySlack(secret, good, body, now) {
				t.Fatal("Slack refused its own signature")
			}
		}
	})
}
