package mailbox

import (
	"testing"
	"time"
)

func TestName(t *testing.T) {
	cases := []struct {
		provider, region, subject string
		bucket                    int64
		want                      string
	}{
		{"github", "us", "123", -1, "github:us:123"},
		{"gitlab", "de", "7", 42, "gitlab:de:7:42"},
		{"plugins", "us", "1", -1, "plugins:us:1"},
		{"bitbucket", "de", "2", 0, "bitbucket:de:2:0"},
	}
	for _, c := range cases {
		got := Name(c.provider, c.region, c.subject, c.bucket)
		if got != c.want {
			t.Errorf("Name(%q,%q,%q,%d) = %q, want %q", c.provider, c.region, c.subject, c.bucket, got, c.want)
		}
		p, ok := Parse(got)
		if !ok || p.Provider != c.provider || p.Region != c.region || p.Subject != c.subject || p.Bucket != c.bucket {
			t.Errorf("Parse(%q) = %+v, %v", got, p, ok)
		}
	}
	for _, bad := range []string{"", "github", "github:us", "a:b:c:d:e", "a::c", "a:b:c:x", "a:b:c:-1"} {
		if _, ok := Parse(bad); ok {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestBucketer(t *testing.T) {
	now := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	b := NewBucketer(3, func() time.Time { return now })
	for i := 0; i < 3; i++ {
		if got := b.Bucket("gitlab", 7, 1234, true); got != -1 {
			t.Fatalf("hook %d bucketed (%d) below the threshold", i+1, got)
		}
	}
	// The 4th hook of the hour passes the threshold (case 42).
	if got := b.Bucket("gitlab", 7, 1234, true); got != 34 {
		t.Fatalf("over threshold: bucket %d, want 34", got)
	}
	// Other integrations are not affected.
	if got := b.Bucket("gitlab", 8, 1234, true); got != -1 {
		t.Fatalf("other integration bucketed: %d", got)
	}
	// No bucket key: counted, never bucketed.
	if got := b.Bucket("gitlab", 7, 0, false); got != -1 {
		t.Fatalf("keyless: %d", got)
	}
	// Next hour: the count restarts but bucketing sticks for 24h.
	now = now.Add(time.Hour)
	if got := b.Bucket("gitlab", 7, 5, true); got != 5 {
		t.Fatalf("sticky bucketing lost: %d", got)
	}
	now = now.Add(25 * time.Hour)
	if got := b.Bucket("gitlab", 7, 5, true); got != -1 {
		t.Fatalf("bucketing outlived 24h: %d", got)
	}
	// No integration (bitbucket, plugins): never bucketed.
	if got := b.Bucket("bitbucket", 0, 5, true); got != -1 {
		t.Fatalf("integration 0: %d", got)
	}
	if got := NewBucketer(1, func() time.Time { return now }); got.threshold != 1 {
		t.Fatal("threshold not kept")
	}
	if NewBucketer(0, nil).threshold != DefaultBucketThreshold {
		t.Fatal("default threshold")
	}
}
