package upstream

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures"
)

// The prober's idle connections close before Jetty's do, whatever
// --health-interval is.
func TestProbeIdleBelowJettys(t *testing.T) {
	for _, interval := range []time.Duration{time.Second, 5 * time.Second, 10 * time.Second, time.Minute} {
		if got := probeIdle(interval); got <= 0 || got > fixtures.JettyIdleTimeout-5*time.Second {
			t.Errorf("--health-interval %v: probe idle timeout %v, want below Jetty's %v less 5s", interval, got, fixtures.JettyIdleTimeout)
		}
	}
}

// ReadyzWait is how long /readyz can take with a lone node that accepts
// and never answers: the deploy manifests' readiness probe timeout is
// checked against it (TestManifestReadinessProbeOutlastsReadyz).
func TestReadableWithOneNodeWaitsReadyzWaitAtMost(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	s := mustSet(t, srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Start(ctx, DefaultHealthInterval)
	start := time.Now()
	ok, _ := s.Readable(false)
	took := time.Since(start)
	if ok {
		t.Fatal("a node that never answers is readable")
	}
	// Each round waits out its own probeTimeout, begun after start: agree
	// rounds take ReadyzWait at least, and one round more (or one round's
	// wait longer by probeTimeout) at least probeTimeout more than that,
	// however slow the machine. Short of it, the time over ReadyzWait is
	// only the machine's (a wait longer by less is not caught).
	if took < ReadyzWait-100*time.Millisecond || took >= ReadyzWait+probeTimeout {
		t.Errorf("Readable took %v with a silent lone node, want about ReadyzWait (%v), less than another probe's %v over it", took.Round(time.Millisecond), ReadyzWait, probeTimeout)
	}
}
