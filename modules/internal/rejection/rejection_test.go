package rejection

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestReject(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	counter := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "test_rejections_total"}, []string{"provider", "reason"})
	l := New(zap.New(core), "request rejected", counter)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }

	for _, step := range []struct {
		provider, reason string
		advance          time.Duration
		wantLines        int
	}{
		{"github", "no_integration", 0, 1},
		{"github", "no_integration", 100 * time.Millisecond, 1}, // within Every: counted, not logged
		{"github", "no_integration", 100 * time.Millisecond, 1},
		{"slack", "bad_signature", 0, 2},             // another reason has its own line
		{"github", "no_integration", time.Second, 3}, // Every later: logged, with the two skipped
	} {
		now = now.Add(step.advance)
		l.Reject(step.provider, step.reason, zap.Int64("integration", 7))
		if n := logs.Len(); n != step.wantLines {
			t.Fatalf("after %s/%s: %d lines, want %d", step.provider, step.reason, n, step.wantLines)
		}
	}
	last := logs.All()[2]
	fields := last.ContextMap()
	if last.Level != zap.InfoLevel || fields["reason"] != "no_integration" || fields["provider"] != "github" ||
		fields["not_logged_since_last"] != int64(2) || fields["integration"] != int64(7) {
		t.Fatalf("line %v %v", last.Message, fields)
	}
	if got := testutil.ToFloat64(counter.WithLabelValues("github", "no_integration")); got != 4 {
		t.Fatalf("counted %v github no_integration rejections, want 4", got)
	}
}
