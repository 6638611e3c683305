package main

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// captureBody renders a GitHub push of a realistic size (~1.3 KB) for
// repository seq and installation inst.
func captureBody(dst []byte, seq uint64, inst int) []byte {
	dst = append(dst, `{"ref":"refs/heads/main","before":"0000","after":"1111","repository":{"id":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"full_name":"acme/app"},"installation":{"id":`...)
	dst = strconv.AppendInt(dst, int64(inst), 10)
	dst = append(dst, `},"head_commit":{"message":"`...)
	dst = append(dst, capturePad...)
	return append(dst, `"}}`...)
}

var capturePad = strings.Repeat("x", 1100)

// captureHeaders are a GitHub delivery's headers but the delivery id.
const captureHeaders = "Content-Type: application/json\r\n" +
	"User-Agent: GitHub-Hookshot/abc123\r\n" +
	"X-GitHub-Event: push\r\n" +
	"X-GitHub-Hook-ID: 123456\r\n" +
	"X-Hub-Signature: sha1=0123456789abcdef0123456789abcdef01234567\r\n" +
	"X-Hub-Signature-256: sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n"

type captureTarget struct {
	client *rawClient
	host   string
	path   string // default /extensions/github/webhook/
	want   int    // default 202
	seq    atomic.Uint64
	prefix string
	// repeat sends every delivery twice, back to back from two workers:
	// half the requests are a provider's retry of a delivery that is
	// still in flight or pending (Slack resends after 3 s, GitHub on a
	// timeout), to the same mailbox with the same body.
	repeat bool
	bufs   sync.Pool
}

// captureBuffers are one request's scratch space, reused across requests.
type captureBuffers struct{ body, req []byte }

func newCaptureTarget(base, prefix string, maxConns int) *captureTarget {
	host := strings.TrimPrefix(base, "http://")
	return &captureTarget{client: newRawClient(host, maxConns), host: host, prefix: prefix}
}

// send posts one push for installation 5001..5100 with a fresh delivery id
// (or, with repeat, the previous request's) and wants its 202.
func (t *captureTarget) send(ctx context.Context) error {
	i := t.seq.Add(1)
	if t.repeat {
		i = (i + 1) / 2
	}
	inst := 5001 + int(i%captureIntegrations)
	b, _ := t.bufs.Get().(*captureBuffers)
	if b == nil {
		b = new(captureBuffers)
	}
	defer t.bufs.Put(b)
	b.body = captureBody(b.body[:0], i, inst)
	path, want := t.path, t.want
	if path == "" {
		path, want = "/extensions/github/webhook/", http.StatusAccepted
	}
	req := append(b.req[:0], "POST "...)
	req = append(req, path...)
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, t.host...)
	req = append(req, "\r\n"+captureHeaders+"X-GitHub-Delivery: "...)
	req = append(req, t.prefix...)
	req = strconv.AppendUint(req, i, 10)
	req = append(req, "\r\nContent-Length: "...)
	req = strconv.AppendInt(req, int64(len(b.body)), 10)
	req = append(req, "\r\n\r\n"...)
	req = append(req, b.body...)
	b.req = req
	return t.client.do(ctx, req, want)
}
