package mailbox

import (
	"strings"
	"testing"
	"time"
)

func TestName(t *testing.T) {
	cases := []struct {
		provider, region, subject string
		bucket                    int64
		eventType                 string
		want                      string
	}{
		{"github", "us", "123", -1, "", "github:us:123"},
		{"gitlab", "de", "7", 42, "", "gitlab:de:7:42"},
		{"plugins", "us", "1", -1, "", "plugins:us:1"},
		{"bitbucket", "de", "2", 0, "", "bitbucket:de:2:0"},
		// Sentry's newest form: the event type last, after the bucket.
		{"github", "us", "123", 77, "push", "github:us:123:77:push"},
		{"github", "us", "123", -1, "issues", "github:us:123:issues"},
		{"gitlab", "de", "7", 0, "merge_request", "gitlab:de:7:0:merge_request"},
	}
	for _, c := range cases {
		got := EventName(c.provider, c.region, c.subject, c.bucket, c.eventType)
		if got != c.want {
			t.Errorf("EventName(%q,%q,%q,%d,%q) = %q, want %q", c.provider, c.region, c.subject, c.bucket, c.eventType, got, c.want)
		}
		if c.eventType == "" {
			if n := Name(c.provider, c.region, c.subject, c.bucket); n != got {
				t.Errorf("Name(%q,%q,%q,%d) = %q, want %q", c.provider, c.region, c.subject, c.bucket, n, got)
			}
		}
		p, ok := Parse(got)
		if !ok || p != (Parsed{Provider: c.provider, Region: c.region, Subject: c.subject, Bucket: c.bucket, EventType: c.eventType}) {
			t.Errorf("Parse(%q) = %+v, %v", got, p, ok)
		}
	}
	for _, bad := range []string{"", "github", "github:us", "a:b:c:d:e", "a::c", "a:b:c:-1"} {
		if _, ok := Parse(bad); ok {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestBucketOf(t *testing.T) {
	for _, tc := range []struct{ key, want int64 }{
		{35129377, 77}, {123, 23}, {0, 0}, {100, 0}, {-1234, 34},
	} {
		if got := BucketOf(tc.key); got != tc.want {
			t.Errorf("BucketOf(%d) = %d, want %d", tc.key, got, tc.want)
		}
	}
}

// Parse reads every name the product builds, Sentry's event-type suffix,
// and refuses the rest without panicking, still naming the provider.
func TestParse(t *testing.T) {
	tests := []struct {
		name string
		want Parsed
		ok   bool
	}{
		// Name's forms.
		{"github:us:123", Parsed{Provider: "github", Region: "us", Subject: "123", Bucket: -1}, true},
		{"gitlab:de:7:42", Parsed{Provider: "gitlab", Region: "de", Subject: "7", Bucket: 42}, true},
		{"bitbucket:de:2:0", Parsed{Provider: "bitbucket", Region: "de", Subject: "2", Bucket: 0}, true},
		// Callback mailboxes (drain's callbackMailbox).
		{"slack:us:callback-4711", Parsed{Provider: "slack", Region: "us", Subject: "callback-4711", Bucket: -1}, true},
		// Sentry's event-type suffix, with and without a bucket.
		{"github:us:123:17:push", Parsed{Provider: "github", Region: "us", Subject: "123", Bucket: 17, EventType: "push"}, true},
		{"github:us:123:pull_request", Parsed{Provider: "github", Region: "us", Subject: "123", Bucket: -1, EventType: "pull_request"}, true},
		{"a:b:c:x", Parsed{Provider: "a", Region: "b", Subject: "c", Bucket: -1, EventType: "x"}, true},
		// Sentry's legacy provider:identifier: no region.
		{"github:123", Parsed{Provider: "github", Bucket: -1}, false},
		{"plugins:4", Parsed{Provider: "plugins", Bucket: -1}, false},
		// Names nobody builds.
		{"", Parsed{Bucket: -1}, false},
		{"github", Parsed{Provider: "github", Bucket: -1}, false},
		{"github:us", Parsed{Provider: "github", Bucket: -1}, false},
		{":us:1", Parsed{Bucket: -1}, false},
		{"a::c", Parsed{Provider: "a", Bucket: -1}, false},
		{"a:b:", Parsed{Provider: "a", Bucket: -1}, false},
		{"a:b:c:", Parsed{Provider: "a", Bucket: -1}, false},
		{"a:b:c:d:e", Parsed{Provider: "a", Bucket: -1}, false},
		{"a:b:c:-1", Parsed{Provider: "a", Bucket: -1}, false},
		{"a:b:c:+1", Parsed{Provider: "a", Bucket: -1}, false},
		{"a:b:c:push:1", Parsed{Provider: "a", Bucket: -1}, false},
		{"a:b:c:1:2", Parsed{Provider: "a", Bucket: -1}, false},
		{"a:b:c:1:push:x", Parsed{Provider: "a", Bucket: -1}, false},
		{"a:b:c:99999999999999999999", Parsed{Provider: "a", Bucket: -1}, false},
		{"a:b:c:d:e:f:g:h", Parsed{Provider: "a", Bucket: -1}, false},
		{":::", Parsed{Bucket: -1}, false},
	}
	for _, tc := range tests {
		got, ok := Parse(tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Parse(%q) = %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
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

// Whatever the name, Parse does not panic; what it accepts it reads back
// the same way once rebuilt, and what it refuses still names its provider.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"github:us:123", "gitlab:de:7:42", "slack:us:callback-1", "github:us:1:2:push",
		"github:123", "", ":", "a:b:c:007", "a:b:c:1:x:y", "github:us:1:check_suite", "gitlab:de:7:0:merge_request"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		p, ok := Parse(name)
		if !ok {
			if provider, _, _ := strings.Cut(name, ":"); p.Provider != provider {
				t.Fatalf("Parse(%q) refused with provider %q, want %q", name, p.Provider, provider)
			}
			return
		}
		rebuilt := EventName(p.Provider, p.Region, p.Subject, p.Bucket, p.EventType)
		if again, ok := Parse(rebuilt); !ok || again != p {
			t.Fatalf("Parse(%q) = %+v, but its rebuilt name %q reads %+v, %v", name, p, rebuilt, again, ok)
		}
	})
}
